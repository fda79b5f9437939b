"""Calibration arithmetic (ROC-AUC, logistic refit, grouped folds), the LLM judge, and `rag eval --calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.judge import FEATURES, LLMJudge, calibrate, fit_logistic, group_folds, roc_auc
from eval.run import PAIRS, main


def test_roc_auc_by_hand():
    assert roc_auc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([True, True, False, False], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # pairs (pos, neg): (0.8, 0.5) win, (0.8, 0.9) lose, (0.5, 0.5) tie, (0.5, 0.9) lose -> 1.5 / 4
    assert roc_auc([True, True, False, False], [0.8, 0.5, 0.5, 0.9]) == pytest.approx(0.375)
    assert np.isnan(roc_auc([True, True], [0.1, 0.2]))


def test_fit_logistic_recovers_the_generating_weights():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(4000, 3))
    true = np.array([-3.0, 2.0, 4.0, -1.0])
    p = 1 / (1 + np.exp(-(true[0] + x @ true[1:])))
    y = (rng.uniform(size=len(p)) < p).astype(float)
    assert fit_logistic(x, y, l2=0.0) == pytest.approx(true, abs=0.35)


def test_ridge_keeps_separable_data_finite():
    x = np.array([[0.0], [0.1], [0.9], [1.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    w = fit_logistic(x, y, l2=1.0)
    assert np.all(np.isfinite(w)) and 0 < w[1] < 20


def test_group_folds_keep_groups_together_and_balance():
    groups = [f"g{i // 3}" for i in range(30)]  # ten groups of three
    folds = group_folds(groups, k=5)
    for g in set(groups):
        assert len({folds[i] for i, name in enumerate(groups) if name == g}) == 1
    assert sorted(np.bincount(folds)) == [6, 6, 6, 6, 6]


class Scripted:
    name = "scripted"

    def __init__(self, reply: str):
        self.reply, self.calls = reply, 0

    def stream(self, messages, *, max_tokens, temperature, seed):
        assert max_tokens == 3 and temperature == 0.0 and seed == 0
        assert messages[-1]["content"].endswith("Does the passage support the sentence? Answer yes or no.")
        self.calls += 1
        yield from self.reply


@pytest.mark.parametrize("reply,expected", [("Yes.", True), (" yes", True), ("No", False), ("Maybe", False)])
def test_llm_judge_reads_yes_or_no_and_remembers(reply, expected):
    llm = Scripted(reply)
    judge = LLMJudge(llm)
    assert judge.supports("Bitcoin slid.", ["Bitcoin slid to $66,000."]) is expected
    assert judge.supports("Bitcoin slid.", ["Bitcoin slid to $66,000."]) is expected
    assert llm.calls == 1 and judge.supports("Bitcoin slid.", []) is False


def test_calibrate_command_reports_figures_and_weights(settings, monkeypatch, tmp_path, capsys):
    for key, value in {"RAG_STORE": settings.store, "RAG_HOME": str(settings.home), "RAG_LLM": "fake",
                       "RAG_EMBEDDER": "fake"}.items():
        monkeypatch.setenv(key, value)
    assert main(["--calibrate", "--out", str(tmp_path / "cal")]) == 0
    printed = capsys.readouterr().out
    n_pairs = len([line for line in PAIRS.read_text().splitlines() if line.strip()])
    assert f"support judge calibration on {n_pairs} labelled pairs" in printed
    assert "5-fold cross-validation, folds grouped by passage" in printed
    weights = printed.split("WEIGHTS = ", 1)[1].split("\n\n")[0]
    assert '"bias": ' in weights and all(f'"{name}": ' in weights for name in FEATURES)
    result = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert 0.5 <= result["shipped"]["auc"] <= 1 and 0 <= result["refit"]["cv_accuracy"] <= 1
    assert list(result["refit"]["weights"]) == ["bias", *FEATURES]


def test_calibrate_compares_the_llm_judge_on_evenly_spaced_pairs():
    pairs = [{"sentence": f"s{i}", "passage": f"p{i // 2}", "supported": i % 3 != 0, "kind": "k"} for i in range(40)]

    def features(batch):
        return [(1.0 if int(s[1:]) % 3 else 0.2, 1.0, 0.5) + (0.0,) * (len(FEATURES) - 3) for s, _ in batch]

    llm = Scripted("yes")
    result = calibrate(pairs, features, llm_judge=LLMJudge(llm), llm_pairs=10)
    chosen = [pairs[i] for i in range(0, 40, 4)]
    assert result["llm"]["pairs"] == 10 == llm.calls and result["llm"]["said_yes"] == 1.0
    assert result["llm"]["accuracy"] == pytest.approx(sum(p["supported"] for p in chosen) / 10)
    assert result["refit"]["cv_accuracy"] == 1.0  # the first feature separates the classes
