"""The API overhead harness (eval/bench/api.py) runs on the fakes and reports paired figures; no figure is judged."""

from __future__ import annotations

import pytest

pytest.importorskip("openai")


def test_api_overhead_bench_pairs_each_question(settings):
    from eval.bench.api import api_overhead_bench

    questions = ["How far did bitcoin fall after the leak?", {"id": "q2", "question": "What is Capybara?"}]
    result = api_overhead_bench(questions, settings)
    assert result["n"] == 2 and [r["id"] for r in result["questions"]] == [questions[0], "q2"]
    assert result["same_text"] == 2  # the API answered exactly what the pipeline answers in-process
    assert [r["api_first"] for r in result["questions"]] == [False, True]
    for r in result["questions"]:
        assert r["ask_s"] > 0 and r["api_s"] > 0
        assert r["overhead_ms"] == pytest.approx((r["api_s"] - r["ask_s"]) * 1000)
    assert result["overhead_p50_ms"] == result["overhead_ms"]["p50"]
    assert "meets_target" not in result  # the goal lives in eval/bench/targets.py only
