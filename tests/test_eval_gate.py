"""The eval gate: the full gold set answered fresh by the embedded model must pass against eval/baseline.json.

Slow (about 10-15 minutes on two CPU cores): every gold question goes through the real pipeline. The model cache in
the default home (~/.cache/rag-news/models) is reused; the store, the answer cache and the report go to tmp_path.
"""

from __future__ import annotations

import json

import pytest

from eval.run import QUESTIONS, load_questions, main


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a hang guard, not a speed requirement
def test_full_eval_passes_the_gates(tmp_path, monkeypatch):
    for var in ("RAG_LLM", "RAG_EMBEDDER", "RAG_CORPUS", "RAG_STORE", "RAG_TOP_K"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    code = main(["--llm", "llamacpp:default", "--store", str(tmp_path / "store"), "--cache", str(tmp_path / "cache"),
                 "--no-second-judge",  # a reported figure, not a gate: it would add about a second a citation
                 "--out", str(out)])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    gates = {g["name"]: g for g in report["gates"]}
    assert report["answers_source"] == "generated fresh"
    assert report["scope"]["questions"] == len(load_questions(QUESTIONS))
    # "skipped" would mean eval/baseline.json is missing or was measured on other questions or another model
    assert gates["baseline"]["status"] == "pass", gates["baseline"]["summary"]
    assert gates["invalid_citations"]["status"] == "pass", gates["invalid_citations"]["summary"]
    assert code == 0
    assert (out / "report.md").is_file() and (out / "metrics.png").is_file() and (out / "questions.png").is_file()
