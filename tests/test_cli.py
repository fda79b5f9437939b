"""The `rag` command in-process: output shape, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rag.cli import main


def _env(settings) -> dict:
    return {"RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store, "RAG_HOME": str(settings.home),
            "RAG_LLM": "fake", "RAG_EMBEDDER": "fake"}


def test_ingest_reports_changes_then_nothing(settings):
    runner = CliRunner()
    first = runner.invoke(main, ["ingest"], env=_env(settings))
    assert first.exit_code == 0, first.output
    assert "3 added" in first.output and "added: 000_91c71732e04b514a" in first.output
    second = runner.invoke(main, ["ingest"], env=_env(settings))
    assert "0 added, 0 changed, 0 removed, 3 unchanged; 0 chunks embedded" in second.output


def test_ask_prints_answer_and_numbered_citations(settings):
    result = CliRunner().invoke(main, ["ask", "How far did bitcoin fall after the leak?"], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "[1]" in result.output and "66,000" in result.output
    assert "(000_91c71732e04b514a, chars " in result.output


def test_ask_json_is_the_whole_answer(settings):
    result = CliRunner().invoke(main, ["ask", "--json", "How far did bitcoin fall?"], env=_env(settings))
    data = json.loads(result.stdout)
    assert set(data) >= {"text", "citations", "abstained", "sentences", "timings"}


def test_errors_are_one_line_and_exit_non_zero(settings, tmp_path):
    runner = CliRunner()
    cases = [
        (["ask", "   "], "error: the question is empty"),
        (["ask", "x" * 4001], "error: the question is 4,001 characters long"),
        (["ingest", str(tmp_path / "missing")], "error: corpus folder"),
        (["ask", "--llm", "gpt9:big", "hello?"], "error: unknown model id"),
    ]
    for args, message in cases:
        result = runner.invoke(main, args, env=_env(settings))
        assert result.exit_code == 1, (args, result.output)
        assert result.output.strip().startswith(message), result.output
        assert "Traceback" not in result.output


def test_an_ask_that_wrote_nothing_skips_the_teardown_and_one_that_ingested_does_not(settings):
    """`rag` (rag.cli:run) ends a read-only `rag ask` without the interpreter's teardown; an ask that ingested the
    folder first exits the usual way, so that Chroma closes its database. Both print the whole answer."""
    import os
    import subprocess
    import sys

    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('torn down', file=sys.stderr))\n"
              "from rag.cli import run\n"
              "sys.argv = ['rag', 'ask', '--json', 'How far did bitcoin fall?']\n"
              "run()\n")
    env = {**os.environ, **_env(settings)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert "66,000" in json.loads(r.stdout)["text"]
    assert "torn down" in runs[0].stderr, "the first ask ingested the folder: it must exit the usual way"
    assert "torn down" not in runs[1].stderr, "a read-only ask should end without the teardown"
