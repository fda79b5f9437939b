"""Calibration arithmetic (ROC-AUC, logistic refit, grouped folds), the LLM judge, and `rag eval --calibrate`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.judge import LLMJudge, accuracy, auc, calibrate
from eval.run import PAIRS, main
from rag.support import FEATURES, MeaningJudge


def test_auc_and_accuracy():
    assert auc([True, True, False, False], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert auc([True, True, False, False], [0.8, 0.5, 0.5, 0.9]) == pytest.approx(0.375)
    assert np.isnan(auc([True, True], [0.1, 0.2]))
    assert accuracy([True, False, True], [0.9, 0.6, 0.2], 0.5) == pytest.approx(1 / 3)


class Graded:
    """A model that gives logits: P(yes) is high when the sentence's words are all in the passage."""

    name = "graded"

    def __init__(self):
        self.calls = 0

    def yes_probability(self, messages):
        self.calls += 1
        text = messages[-1]["content"]
        source, claim = text.split("Source: ", 1)[1].split("\n\nClaim: ", 1)
        claim = claim.split("\n\n", 1)[0]
        return 0.99 if set(claim.lower().split()) <= set(source.lower().split()) else 0.6


def test_the_meaning_judge_is_calibrated_and_remembers():
    llm = Graded()
    judge = MeaningJudge(llm, "system")
    assert judge.supports("bitcoin slid", ["bitcoin slid to $66,000"]) is True
    assert judge.supports("ethereum slid", ["bitcoin slid to $66,000"]) is False  # 0.6 raw is below the calibration
    assert judge.supports("bitcoin slid", ["bitcoin slid to $66,000"]) is True and llm.calls == 2


def test_calibrate_fits_the_meaning_judge_on_dev_and_scores_it_on_test():
    pairs = [{"sentence": f"w{i}" if i % 2 else f"x{i}", "passage": f"w{i} more words", "supported": bool(i % 2),
              "kind": "k", "split": "dev" if i < 20 else "test"} for i in range(40)]

    def features(batch):
        return [(0.5,) * len(FEATURES) for _ in batch]

    result = calibrate(pairs, features, llm_judge=MeaningJudge(Graded(), "system"))
    m = result["llm"]
    assert m["dev"] == 20 and m["test"] == 20 and m["test_accuracy"] == 1.0 and m["test_auc"] == 1.0
    assert m["weights"]["logit_yes"] > 0


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


