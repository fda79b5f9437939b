"""The eval runner (`rag eval`) on the fakes: report files, the baseline and invalid-citation gates, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.gates import DEFAULT_GATES as GATES
from eval.gates import baseline_path, load_config
from eval.run import QUESTIONS, SETS, load_questions, main, select
from rag.llm import FakeLLM

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def env(settings, monkeypatch, tmp_path) -> Path:
    """Fakes for model and embedder; store, home and answer cache under tmp_path. Returns the tmp folder."""
    for key, value in {"RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store,
                       "RAG_HOME": str(settings.home), "RAG_LLM": "fake", "RAG_EMBEDDER": "fake"}.items():
        monkeypatch.setenv(key, value)
    return tmp_path


def run(tmp: Path, name: str, *extra: str) -> tuple[int, dict]:
    out = tmp / name
    code = main(["--limit", "6", "--out", str(out), "--baseline", str(tmp / "baseline.json"), "-q", *extra])
    return code, json.loads((out / "report.json").read_text(encoding="utf-8"))


def gate(report: dict, name: str) -> dict:
    return next(g for g in report["gates"] if g["name"] == name)


def test_limit_mixes_answerable_unanswerable_and_followups():
    questions = load_questions(QUESTIONS)
    picked = select(questions, limit=6)
    assert len(picked) == 6
    assert any(not q["answerable"] for q in picked) and any(q["history"] for q in picked)
    assert sum(q["answerable"] and not q["history"] for q in picked) >= 2
    assert [q["id"] for q in select(questions, ids="q003,q001")] == ["q001", "q003"]


def test_subset_run_writes_markdown_json_and_charts(env, capsys):
    code, report = run(env, "r1")
    out = env / "r1"
    assert code == 0, capsys.readouterr().out
    assert len(report["questions"]) == 6 and report["summary"]["n_answerable"] == 4
    assert {g["name"]: g["status"] for g in report["gates"]} == {"baseline": "skipped", "invalid_citations": "pass"}
    assert report["summary"]["hit@k"] == pytest.approx(1.0) and report["summary"]["invalid_citations"] == 0
    for png in ("metrics.png", "questions.png"):
        assert (out / png).read_bytes()[:8] == PNG
    assert len((out / "answers.jsonl").read_text().splitlines()) == 6
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Verdict: PASS" in md and "## Gaps to targets" in md and "abstention_recall" in md
    # the fake model answers the unanswerable q078: it is listed with its answer, citations and the gold side
    failing = md.split("## Failing questions")[1]
    assert "### q078: What is Anthropic's current stock price?" in failing
    assert "`000_91c71732e04b514a`" in failing and "should abstain" in failing
    printed = capsys.readouterr().out
    assert "abstention_recall 0.500 (target >= 0.90): short by 0.400" in printed and "result: PASS" in printed


def _set_baseline(tmp: Path, outcome: str, value: float, ids: list[str]) -> None:
    path = tmp / "baseline.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for qid in ids:
        data["questions"][qid]["outcomes"][outcome] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def test_baseline_gate_fails_on_many_regressed_questions_and_passes_one(env, capsys):
    code, report = run(env, "base", "--refresh-baseline", "--limit", "24")
    assert code == 0 and (env / "baseline.json").is_file()
    saved = json.loads((env / "baseline.json").read_text())
    assert len(saved["questions"]) == 24 and saved["machine"]["cores"] >= 1
    answerable = [q["id"] for q in report["questions"] if q["answerable"]]
    answered = [q["id"] for q in report["questions"] if q["answerable"] and not q["abstained"]]
    assert len(answerable) >= 5 and len(answered) >= 6

    # Say the baseline had every fact of one question more than now: one question flipping is noise
    _set_baseline(env, "facts_present", 2.0, answerable[:1])
    code, report = run(env, "one", "--cached", "--limit", "24")
    assert code == 0 and gate(report, "baseline")["status"] == "pass"
    assert any(f"1 regressed ({answerable[0]})" in d for d in gate(report, "baseline")["details"])

    _set_baseline(env, "facts_present", 2.0, answerable[:5])
    capsys.readouterr()
    code, report = run(env, "five", "--cached", "--limit", "24")
    assert code == 1 and gate(report, "baseline")["status"] == "fail"
    printed = capsys.readouterr().out
    assert "FAIL    baseline: facts_present: 5 regressed" in printed and "result: FAIL (baseline)" in printed

    # the same gate on another outcome
    _set_baseline(env, "facts_present", 0.0, answerable[:5])
    _set_baseline(env, "citation_recall", 2.0, answered[:6])
    code, report = run(env, "recall", "--cached", "--limit", "24")
    assert code == 1 and "citation_recall: 6 regressed" in gate(report, "baseline")["summary"]
    assert "facts_present: 0 regressed" in " ".join(gate(report, "baseline")["details"])


def test_baseline_of_another_scope_is_skipped_not_compared(env):
    run(env, "base", "--refresh-baseline")
    data = json.loads((env / "baseline.json").read_text())
    data["scope"]["llm"] = "llamacpp:default"
    (env / "baseline.json").write_text(json.dumps(data))
    code, report = run(env, "other", "--cached")
    assert code == 0 and gate(report, "baseline")["status"] == "skipped"
    assert "'llamacpp:default' -> 'fake'" in gate(report, "baseline")["summary"]


def _cached_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "home" / "eval-cache").glob("*.json"))


@pytest.mark.parametrize("answerable", [True, False])
def test_a_tampered_citation_fails_the_invalid_citation_gate(env, capsys, answerable):
    code, _ = run(env, "fresh")
    assert code == 0
    kind = {q["question"]: q["answerable"] for q in load_questions(QUESTIONS)}
    tampered = None
    for path in _cached_files(env):
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry["answer"]["citations"] and kind[entry["question"]] == answerable:
            entry["answer"]["citations"][0]["char_start"] += 1
            path.write_text(json.dumps(entry), encoding="utf-8")
            tampered = entry["question"]
            break
    assert tampered is not None
    capsys.readouterr()
    code, report = run(env, "tampered", "--cached")
    assert code == 1
    invalid = gate(report, "invalid_citations")
    assert invalid["status"] == "fail" and invalid["summary"].startswith("1 invalid citation(s), 1 over the maximum")
    qid = next(q["id"] for q in report["questions"] if q["invalid_citations"])
    assert "invalid" in next(q for q in report["questions"] if q["id"] == qid)["failed"]
    assert "FAIL    invalid_citations" in capsys.readouterr().out
    # a refresh refuses to enshrine a run with invalid citations
    code, report = run(env, "refresh", "--cached", "--refresh-baseline")
    assert code == 1 and not (env / "baseline.json").exists()
    # by default answers are generated fresh, so the tampered cache entry is not used
    code, report = run(env, "fresh-again")
    assert code == 0 and gate(report, "invalid_citations")["status"] == "pass"


def test_cached_answers_are_identical_and_need_no_model(env, monkeypatch):
    assert run(env, "first")[0] == 0
    assert len(_cached_files(env)) == 6

    def no_model(*args, **kwargs):
        raise RuntimeError("the model was called")

    monkeypatch.setattr(FakeLLM, "stream", no_model)
    with pytest.raises(RuntimeError, match="the model was called"):
        run(env, "fresh")  # without --cached the model is asked again
    code, report = run(env, "second", "--cached")
    assert code == 0 and report["answers_source"] == "all from the cache"
    first = (env / "first" / "answers.jsonl").read_text(encoding="utf-8")
    assert (env / "second" / "answers.jsonl").read_text(encoding="utf-8") == first


def test_bad_arguments_exit_2_with_a_message(env, capsys):
    assert main(["--ids", "q999", "--out", str(env / "x")]) == 2
    assert "unknown question id(s): q999" in capsys.readouterr().err
    assert main(["--no-such-flag"]) == 2
    gates = env / "gates.toml"  # the gates file names the baseline; a test must never touch eval/baseline.json
    gates.write_text(GATES.read_text().replace('file = "baseline.json"', 'file = "committed.json"'))
    assert main(["--limit", "3", "--refresh-baseline", "--gates", str(gates), "--out", str(env / "y")]) == 2
    assert not (env / "committed.json").exists()
    assert "the committed baseline is for every gold question" in capsys.readouterr().err


def test_gitdocs_set_uses_its_corpus_store_and_baseline_and_reports_each_split(env, capsys):
    """The env points RAG_CORPUS at the news articles and RAG_STORE elsewhere: a set brings its own corpus and
    store; its baseline is named after the gates file's (here committed.json -> committed-gitdocs.json)."""
    gates = env / "gates.toml"
    gates.write_text(GATES.read_text().replace('file = "baseline.json"', 'file = "committed.json"'))
    out = env / "git-test"
    code = main(["--set", "gitdocs", "--split", "test", "--limit", "6", "--gates", str(gates), "--out", str(out),
                 "-q"])
    assert code == 0, capsys.readouterr()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["set"] == "gitdocs" and report["split"] == "test"
    assert len(report["questions"]) == 6 and all(q["id"].startswith("g") for q in report["questions"])
    gitdocs = {q["id"]: q for q in load_questions(SETS["gitdocs"].questions)}
    assert {gitdocs[q["id"]]["split"] for q in report["questions"]} == {"test"}
    assert list(report["summary_by_split"]) == ["test"]
    assert report["summary_by_split"]["test"]["n_questions"] == 6
    assert report["baseline"]["path"] == str(env / "committed-gitdocs.json")
    assert gate(report, "baseline")["status"] == "skipped" and not (env / "committed-gitdocs.json").exists()
    # the gold spans were found in the HTML pages' text: retrieval was scored against data/gitdocs
    assert report["summary"]["hit@k"] is not None and report["summary"]["invalid_citations"] == 0
    assert (env / "home" / "eval-store" / "gitdocs").is_dir() and not (env / "store").exists()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Gold set `gitdocs`, split `test`" in md and "## Metrics by split" in md
    assert "rag eval: gitdocs set, 6 questions" in capsys.readouterr().out

    # --split all (the default): dev and test summarised side by side (same env: the set's store is reused)
    code, report = run(env, "both", "--set", "gitdocs")
    assert code == 0
    by_split = report["summary_by_split"]
    assert list(by_split) == ["dev", "test"]
    gitdocs = {q["id"]: q for q in load_questions(SETS["gitdocs"].questions)}
    for split, summary in by_split.items():
        rows = [q for q in report["questions"] if gitdocs[q["id"]]["split"] == split]
        assert summary["n_questions"] == len(rows) > 0
        assert summary["n_answerable"] == sum(r["answerable"] for r in rows)
    assert by_split["dev"]["n_questions"] + by_split["test"]["n_questions"] == report["summary"]["n_questions"]
    md = (env / "both" / "report.md").read_text(encoding="utf-8")
    table = md.split("## Metrics by split")[1].split("\n\n![metrics]")[0]
    assert "| metric | dev | test |" in table and "| hit@k |" in table
    assert f"| questions | {int(by_split['dev']['n_questions'])} | {int(by_split['test']['n_questions'])} |" in table


def test_split_selects_that_splits_questions_only():
    questions = load_questions(QUESTIONS)
    dev = select(questions, split="dev")
    test = select(questions, split="test")
    assert dev and test and len(dev) + len(test) == len(questions)
    assert {q["split"] for q in dev} == {"dev"} and {q["split"] for q in test} == {"test"}
    assert {q["split"] for q in select(questions, limit=6, split="test")} == {"test"}


def test_the_default_set_keeps_its_baseline_and_another_set_gets_its_own():
    config = load_config(GATES)
    assert baseline_path(config) == GATES.parent / "baseline.json"
    assert baseline_path(config, gold_set="gitdocs") == GATES.parent / "baseline-gitdocs.json"
    assert baseline_path(config, Path("/tmp/x.json"), "gitdocs") == Path("/tmp/x.json")
