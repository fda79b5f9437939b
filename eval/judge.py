"""Support judges for the eval, and calibration of the shipped judges against hand-labelled pairs.

Two judges answer "do these passages support this sentence?":
  - the pipeline's own `SupportJudge` (rag/support.py): a logistic model over word-overlap features, the default;
  - `LLMJudge`: the local model, through rag/support.py `MeaningJudge` (a calibrated P(yes)) where the backend
    gives logits, else its generated yes/no. The eval reports citation figures by both, so an answer is never
    graded only by the judge that passed it.

`calibrate()` measures both on eval/gold/support_pairs.jsonl with scikit-learn: accuracy at the threshold and
ROC-AUC; the word-overlap weights refit with 5-fold cross-validation grouped by passage (many pairs share a
passage, and a fold that splits them would flatter the refit); the meaning judge's two weights fitted on the dev
split and scored on the held-out test split. The weights are printed to be pasted into rag/support.py by a person:
nothing here changes the judges the pipeline uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.support import FEATURES, MEANING, WEIGHTS, MeaningJudge, calibrated, probability

LLM_JUDGE_PROMPT = "Does the passage support the sentence? Answer yes or no."


class LLMJudge:
    """The eval's independent judge: the local model asked, under a system prompt of its own, whether a passage
    supports a sentence, and its generated yes or no taken as the verdict. The verifier never asks this question
    (it uses the word-overlap judge and the calibrated P(yes) of `MeaningJudge`, under the answering prompt), so
    this judge shares the model with the verifier but not its prompt or its decision rule. Verdicts are
    remembered for the run."""

    system = "You check whether a passage supports a sentence."

    def __init__(self, llm) -> None:
        self.llm = llm
        self.name = f"llm ({getattr(llm, 'name', 'model')})"
        self._seen: dict[tuple[str, str], bool] = {}

    def messages(self, claim: str, passage: str) -> list[dict[str, str]]:
        user = f"Passage: {' '.join(passage.split())}\n\nSentence: {claim}\n\n{LLM_JUDGE_PROMPT}"
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def verdict(self, claim: str, passage: str) -> bool:
        key = (claim, passage)
        if key not in self._seen:
            reply = "".join(self.llm.stream(self.messages(claim, passage), max_tokens=3, temperature=0.0, seed=0))
            self._seen[key] = reply.strip().lower().lstrip("\"'*").startswith("yes")
        return self._seen[key]

    def raw(self, claim: str, passage: str) -> float:
        return float(self.verdict(claim, passage))

    def supports(self, claim: str, passages: list[str]) -> bool:
        return bool(passages) and self.verdict(claim, "\n".join(passages))


def accuracy(labels, probs, threshold: float) -> float:
    return float(np.mean((np.asarray(probs) >= threshold) == np.asarray(labels, dtype=bool)))


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    return float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")


def _weights_dict(model) -> dict[str, float]:
    names = ("bias", *FEATURES)
    values = [float(model.intercept_[0]), *map(float, model.coef_[0])]
    return {name: round(v, 3) for name, v in zip(names, values, strict=True)}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


# ----------------------------------------------------------------------------- calibration
def load_pairs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibrate(pairs: list[dict], features: Callable[[list[tuple[str, str]]], Sequence[Sequence[float]]],
              threshold: float = 0.5, folds: int = 5, llm_judge: MeaningJudge | LLMJudge | None = None,
              llm_pairs: int | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
    """The shipped word-overlap judge, its cross-validated refit, and (with `llm_judge`) the meaning judge fitted on
    the dev split and scored on the test split (on `llm_pairs` evenly spaced pairs when given)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x = np.asarray(features([(p["sentence"], p["passage"]) for p in pairs]), dtype=float)
    y = np.asarray([p["supported"] for p in pairs], dtype=int)
    shipped = [probability(tuple(float(v) for v in row), WEIGHTS) for row in x]
    groups = [p["passage"] for p in pairs]
    model = LogisticRegression(C=1.0, max_iter=1000)
    out_of_fold = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(folds), method="predict_proba")[:, 1]
    refit = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    in_sample = refit.predict_proba(x)[:, 1]
    result = {
        "pairs": len(pairs),
        "supported_share": round(float(y.mean()), 4),
        "threshold": threshold,
        "shipped": {"weights": dict(WEIGHTS), "accuracy": accuracy(y, shipped, threshold), "auc": auc(y, shipped)},
        "refit": {"weights": _weights_dict(refit), "cv_folds": folds, "cv_grouped_by": "passage",
                  "cv_accuracy": accuracy(y, out_of_fold, threshold), "cv_auc": auc(y, out_of_fold),
                  "in_sample_accuracy": accuracy(y, in_sample, threshold), "in_sample_auc": auc(y, in_sample)},
        "by_kind": _by_kind(pairs, shipped, out_of_fold, threshold),
    }
    if llm_judge is not None:
        n = len(pairs) if not llm_pairs else min(llm_pairs, len(pairs))
        chosen = sorted({round(i * len(pairs) / n) for i in range(n)})
        raw = []
        for done, i in enumerate(chosen, 1):
            raw.append(llm_judge.raw(pairs[i]["sentence"], pairs[i]["passage"]))
            if progress is not None:
                progress(done, len(chosen))
        p_yes, sub = np.asarray(raw), y[chosen]
        split = np.asarray([pairs[i].get("split", "dev") for i in chosen])
        dev, test = split == "dev", split == "test"
        name = getattr(llm_judge, "name", f"meaning ({getattr(llm_judge.llm, 'name', 'model')})")
        meaning: dict = {"judge": name, "pairs": len(chosen), "dev": int(dev.sum()), "test": int(test.sum()),
                         "said_yes": round(float(np.mean(p_yes >= 0.5)), 4),
                         "raw_accuracy": accuracy(sub, p_yes, 0.5), "raw_auc": auc(sub, p_yes),
                         "shipped_weights": dict(MEANING)}
        shipped_meaning = np.asarray([calibrated(float(p)) for p in p_yes])
        meaning["shipped_test_accuracy"] = accuracy(sub[test], shipped_meaning[test], threshold) if test.any() \
            else float("nan")
        meaning["shipped_test_auc"] = auc(sub[test], shipped_meaning[test]) if test.any() else float("nan")
        if dev.any() and 0 < sub[dev].sum() < dev.sum():
            fit = LogisticRegression(C=1.0, max_iter=1000).fit(_logit(p_yes[dev])[:, None], sub[dev])
            fitted = fit.predict_proba(_logit(p_yes)[:, None])[:, 1]
            meaning["weights"] = {"bias": round(float(fit.intercept_[0]), 3),
                                  "logit_yes": round(float(fit.coef_[0][0]), 3)}
            meaning["test_accuracy"] = accuracy(sub[test], fitted[test], threshold) if test.any() else float("nan")
            meaning["test_auc"] = auc(sub[test], fitted[test]) if test.any() else float("nan")
        meaning["shipped_accuracy_same_pairs"] = accuracy(sub, [shipped[i] for i in chosen], threshold)
        result["llm"] = meaning
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
        f"    CV accuracy {r['cv_accuracy']:.3f}   CV ROC-AUC "
        f"{r['cv_auc']:.3f}   (in-sample: accuracy {r['in_sample_accuracy']:.3f}, AUC {r['in_sample_auc']:.3f})",
    ]
    if "llm" in result:
        m = result["llm"]
        lines.append(f"  {m['judge']} on {m['pairs']} pairs (dev {m['dev']}, test {m['test']}): raw P(yes) accuracy "
                     f"{m['raw_accuracy']:.3f} at 0.5 (says yes to {m['said_yes']:.0%}), ROC-AUC {m['raw_auc']:.3f}")
        lines.append(f"    shipped MEANING {m['shipped_weights']}: test accuracy {m['shipped_test_accuracy']:.3f}   "
                     f"test ROC-AUC {m['shipped_test_auc']:.3f}")
        if "weights" in m:
            lines.append(f"    refit on dev {m['weights']}: test accuracy {m['test_accuracy']:.3f}   test ROC-AUC "
                         f"{m['test_auc']:.3f}   (paste into rag/support.py MEANING)")
        lines.append(f"    word-overlap judge on the same pairs: accuracy {m['shipped_accuracy_same_pairs']:.3f}")
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

