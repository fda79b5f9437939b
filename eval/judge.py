"""Support judges for the eval, and calibration of the shipped judge against hand-labelled pairs.

Two judges answer "do these passages support this sentence?":
  - the pipeline's own `SupportJudge` (rag/support.py): a logistic model over a few features, the default;
  - `LLMJudge`: the local model asked "Does the passage support the sentence? Answer yes or no." (slow, optional).

`calibrate()` measures the shipped judge on eval/gold/support_pairs.jsonl (accuracy at its threshold, ROC-AUC), refits
the logistic weights of its features with numpy (Newton's method, a small ridge), and reports the refit's
5-fold cross-validated accuracy and AUC. The folds keep every pair of one passage together, because many pairs share
a passage and a fold that splits them would flatter the refit. The weights are printed to be pasted into
rag/support.py `WEIGHTS` by a person: nothing here changes the judge the pipeline uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from rag import support
from rag.support import WEIGHTS, probability

# The judge's feature names, in the order pair_features returns them (older judges had these three and no list).
FEATURES: tuple[str, ...] = tuple(getattr(support, "FEATURES", ("recall", "numbers", "cosine")))
LLM_JUDGE_PROMPT = "Does the passage support the sentence? Answer yes or no."


class LLMJudge:
    """The local model as a yes/no support judge; its verdicts are remembered for the run."""

    def __init__(self, llm) -> None:
        self.llm = llm
        self.name = f"llm ({getattr(llm, 'name', 'model')})"
        self._seen: dict[tuple[str, str], bool] = {}

    def messages(self, claim: str, passage: str) -> list[dict[str, str]]:
        user = f"Passage: {' '.join(passage.split())}\n\nSentence: {claim}\n\n{LLM_JUDGE_PROMPT}"
        return [{"role": "system", "content": "You check whether a passage supports a sentence."},
                {"role": "user", "content": user}]

    def verdict(self, claim: str, passage: str) -> bool:
        key = (claim, passage)
        if key not in self._seen:
            reply = "".join(self.llm.stream(self.messages(claim, passage), max_tokens=3, temperature=0.0, seed=0))
            self._seen[key] = reply.strip().lower().lstrip("\"'*").startswith("yes")
        return self._seen[key]

    def supports(self, claim: str, passages: list[str]) -> bool:
        return bool(passages) and self.verdict(claim, "\n".join(passages))


# ----------------------------------------------------------------------------- statistics
def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan without both classes."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over each run of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def accuracy(labels: ArrayLike, probs: ArrayLike, threshold: float) -> float:
    return float(np.mean((np.asarray(probs) >= threshold) == np.asarray(labels, dtype=bool)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 100) -> np.ndarray:
    """[bias, w1, ...] minimising the log-loss plus l2/2 * |w|^2 (bias not penalised), by Newton's method.

    The ridge keeps the weights finite when the labelled pairs are (nearly) separable.
    """
    a = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + penalty * w
        hess = a.T @ (a * (p * (1 - p))[:, None]) + np.diag(penalty) + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def group_folds(groups: Sequence[str], k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number per item; items of one group share a fold; groups are dealt out largest first."""
    rng = np.random.default_rng(seed)
    names = sorted(set(groups))
    rng.shuffle(names)
    sizes = {g: 0 for g in names}
    for g in groups:
        sizes[g] += 1
    load = [0] * k
    fold_of: dict[str, int] = {}
    for g in sorted(names, key=lambda g: -sizes[g]):  # stable sort keeps the shuffled order among equals
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return np.array([fold_of[g] for g in groups])


def _weights_dict(w: np.ndarray) -> dict[str, float]:
    names = ("bias", *FEATURES)
    return {name: round(float(v), 3) for name, v in zip(names, w, strict=True)}


# ----------------------------------------------------------------------------- calibration
def load_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibrate(pairs: list[dict], features: Callable[[list[tuple[str, str]]], Sequence[Sequence[float]]],
              threshold: float = 0.5, folds: int = 5, llm_judge: LLMJudge | None = None, llm_pairs: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Shipped-judge accuracy/AUC, refit weights and their cross-validated accuracy/AUC, and the LLM judge's accuracy
    (on `llm_pairs` evenly spaced pairs when given, beside the shipped judge's on the same pairs)."""
    x = np.asarray(features([(p["sentence"], p["passage"]) for p in pairs]), dtype=float)
    y = np.asarray([p["supported"] for p in pairs], dtype=float)
    shipped = [probability(tuple(float(v) for v in row), WEIGHTS) for row in x]
    fold = group_folds([p["passage"] for p in pairs], folds)
    out_of_fold = np.zeros(len(pairs))
    fold_acc = []
    for f in range(folds):
        test = fold == f
        w = fit_logistic(x[~test], y[~test])
        out_of_fold[test] = 1.0 / (1.0 + np.exp(-(w[0] + x[test] @ w[1:])))
        fold_acc.append(accuracy(y[test].astype(bool), out_of_fold[test], threshold))
    refit = fit_logistic(x, y)
    in_sample = 1.0 / (1.0 + np.exp(-(refit[0] + x @ refit[1:])))
    labels = y.astype(bool)
    result = {
        "pairs": len(pairs),
        "supported_share": round(float(y.mean()), 4),
        "threshold": threshold,
        "shipped": {"weights": dict(WEIGHTS), "accuracy": accuracy(labels, shipped, threshold),
                    "auc": roc_auc(labels, shipped)},
        "refit": {"weights": _weights_dict(refit), "cv_folds": folds, "cv_grouped_by": "passage",
                  "cv_accuracy": accuracy(labels, out_of_fold, threshold),
                  "cv_accuracy_fold_sd": float(np.std(fold_acc)),
                  "cv_auc": roc_auc(labels, out_of_fold),
                  "in_sample_accuracy": accuracy(labels, in_sample, threshold),
                  "in_sample_auc": roc_auc(labels, in_sample)},
        "by_kind": _by_kind(pairs, shipped, out_of_fold, threshold),
    }
    if llm_judge is not None:
        n = len(pairs) if not llm_pairs else min(llm_pairs, len(pairs))
        chosen = sorted({round(i * len(pairs) / n) for i in range(n)})
        verdicts = []
        for done, i in enumerate(chosen, 1):
            verdicts.append(llm_judge.verdict(pairs[i]["sentence"], pairs[i]["passage"]))
            if progress is not None:
                progress(done, len(chosen))
        sub = labels[chosen]
        result["llm"] = {"judge": llm_judge.name, "pairs": len(chosen),
                         "accuracy": accuracy(sub, [float(v) for v in verdicts], 0.5),
                         "shipped_accuracy_same_pairs": accuracy(sub, [shipped[i] for i in chosen], threshold),
                         "said_yes": round(sum(verdicts) / len(verdicts), 4)}
    return result


def _by_kind(pairs: list[dict], shipped: list[float], refit: np.ndarray, threshold: float) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for kind in sorted({p["kind"] for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p["kind"] == kind]
        labels = [pairs[i]["supported"] for i in idx]
        out[kind] = {"n": len(idx), "supported": labels[0],
                     "shipped_accuracy": accuracy(labels, [shipped[i] for i in idx], threshold),
                     "refit_cv_accuracy": accuracy(labels, refit[idx], threshold)}
    return out


def calibration_text(result: dict) -> str:
    """The calibration result for people: figures, per-kind accuracy, and the WEIGHTS line to paste."""
    s, r = result["shipped"], result["refit"]
    lines = [
        f"support judge calibration on {result['pairs']} labelled pairs "
        f"({result['supported_share']:.0%} supported), threshold {result['threshold']}",
        f"  shipped weights {s['weights']}",
        f"    accuracy {s['accuracy']:.3f}   ROC-AUC {s['auc']:.3f}",
        f"  refit ({r['cv_folds']}-fold cross-validation, folds grouped by {r['cv_grouped_by']})",
        f"    CV accuracy {r['cv_accuracy']:.3f} (fold sd {r['cv_accuracy_fold_sd']:.3f})   CV ROC-AUC "
        f"{r['cv_auc']:.3f}   (in-sample: accuracy {r['in_sample_accuracy']:.3f}, AUC {r['in_sample_auc']:.3f})",
    ]
    if "llm" in result:
        m = result["llm"]
        lines.append(f"  {m['judge']} on {m['pairs']} pairs: accuracy {m['accuracy']:.3f} (says yes to "
                     f"{m['said_yes']:.0%}); shipped judge on the same pairs: {m['shipped_accuracy_same_pairs']:.3f}")
    lines.append("  accuracy by kind of pair (shipped / refit CV):")
    for kind, k in result["by_kind"].items():
        label = "supported" if k["supported"] else "unsupported"
        lines.append(f"    {kind:<14} {label:<11} n={k['n']:<3} {k['shipped_accuracy']:.2f} / "
                     f"{k['refit_cv_accuracy']:.2f}")
    lines += ["", "paste into rag/support.py (fitted on all pairs):", f"WEIGHTS = {_literal(r['weights'])}"]
    return "\n".join(lines)


def _literal(weights: dict[str, float]) -> str:
    items = [f'"{k}": {v}' for k, v in weights.items()]
    if len(", ".join(items)) <= 100:
        return "{" + ", ".join(items) + "}"
    return "{\n    " + ",\n    ".join(items) + ",\n}"

