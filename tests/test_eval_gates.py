"""The baseline gate compares question by question: noise (one question flipping) passes, a regression fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.gates import check_baseline, load_config, question_outcomes, sign_test_p

SCOPE = {"llm": "fake", "embedder": "fake", "judge": "support", "k": 4}
CONFIG = load_config()
WHERE = Path("baseline.json")


def _row(qid: str, facts: float = 1.0, abstained: bool = False, answerable: bool = True) -> dict:
    row = {"id": qid, "answerable": answerable, "abstained": abstained}
    if answerable:
        row.update({"facts_present": facts, "hit@k": 1.0, "citation_recall": 1.0, "citation_precision": 1.0})
    return row


def _baseline(rows: list[dict]) -> dict:
    return {"scope": SCOPE, "metrics": {}, "questions": {r["id"]: {"gold": "g", "outcomes": question_outcomes(r)}
                                                         for r in rows}}


BASE = [_row(f"a{i}") for i in range(20)] + [_row(f"u{i}", answerable=False, abstained=True) for i in range(10)]


def _now(facts_lost: int = 0, facts_won_from: list[str] | None = None, stop_abstaining: int = 0) -> list[dict]:
    rows = [dict(r) for r in BASE]
    for r in rows[:facts_lost]:
        r["facts_present"] = 0.0
    for r in rows:
        if not r["answerable"] and stop_abstaining > 0:
            r["abstained"] = False
            stop_abstaining -= 1
    return rows


@pytest.mark.parametrize("case, now, base, status", [
    ("identical", _now(), BASE, "pass"),
    ("one question flips down", _now(facts_lost=1), BASE, "pass"),
    ("one unanswerable stops abstaining", _now(stop_abstaining=1), BASE, "pass"),
    ("three flips, still noise", _now(facts_lost=3), BASE, "pass"),
    ("five questions lose their facts", _now(facts_lost=5), BASE, "fail"),
    ("five unanswerable stop abstaining", _now(stop_abstaining=5), BASE, "fail"),
    # 6 down, 5 up (the baseline had 5 wrong that are now right): net 1, noise
    ("ups cancel downs", _now(facts_lost=6),
     [dict(r, facts_present=0.0) if r["id"] in {f"a{i}" for i in range(14, 19)} else r for r in BASE], "pass"),
])
def test_gate_fails_on_regressions_beyond_noise_only(case, now, base, status):
    fingerprints = {r["id"]: "g" for r in now}
    result = check_baseline(now, {}, SCOPE, _baseline(base), CONFIG, WHERE, fingerprints)
    assert result.status == status, (case, result.summary)


def test_gate_names_the_questions_that_changed_in_both_directions():
    base = [dict(r, facts_present=0.0) if r["id"] == "a19" else r for r in BASE]
    result = check_baseline(_now(facts_lost=2), {}, SCOPE, _baseline(base), CONFIG, WHERE)
    line = next(d for d in result.details if d.startswith("facts_present"))
    assert "2 regressed (a0, a1)" in line and "1 improved (a19)" in line and "net +1" in line


def test_questions_whose_gold_changed_are_left_out_not_compared():
    now = _now(facts_lost=6)
    fingerprints = {r["id"]: ("changed" if r["id"] in {f"a{i}" for i in range(6)} else "g") for r in now}
    result = check_baseline(now, {}, SCOPE, _baseline(BASE), CONFIG, WHERE, fingerprints)
    assert result.status == "pass" and "6 not in the baseline or changed since" in result.summary


def test_another_scope_or_an_old_baseline_is_skipped():
    other = dict(_baseline(BASE), scope=dict(SCOPE, llm="llamacpp:default"))
    assert check_baseline(BASE, {}, SCOPE, other, CONFIG, WHERE).status == "skipped"
    old = {"scope": SCOPE, "metrics": {"facts_present": 0.5}}
    assert "no per-question outcomes" in check_baseline(BASE, {}, SCOPE, old, CONFIG, WHERE).summary


@pytest.mark.parametrize("down, up, p", [(0, 0, 1.0), (1, 0, 0.5), (5, 0, 1 / 32), (3, 3, 21 / 32)])
def test_sign_test(down, up, p):
    assert sign_test_p(down, up) == pytest.approx(p)
