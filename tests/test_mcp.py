"""The MCP server (`rag mcp`), driven by the official `mcp` SDK client: it starts the command over stdio and calls
its tools, as Claude Desktop and other MCP clients do. The fakes answer, on a tmp store over a copy of the corpus;
every returned span is checked against the article file itself."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from .conftest import ROOT, free_port, require

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only

mcp = pytest.importorskip("mcp")

QUESTION = "How far did bitcoin fall after the leak?"


def _params(settings, llm: str = "fake"):
    from importlib.metadata import entry_points

    require(any(ep.name == "mcp" for ep in entry_points(group="rag.commands")), "the `rag mcp` command",
            "pip install -e . (it registers the rag.commands entry points)")
    env = {"RAG_LLM": llm, "RAG_EMBEDDER": "fake", "RAG_STORE": settings.store, "RAG_CORPUS": str(settings.corpus),
           "RAG_HOME": str(settings.home), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    return mcp.StdioServerParameters(command=sys.executable, args=["-m", "rag.cli", "mcp"], env=env,
                                     cwd=str(ROOT))


def _session(settings, scenario, llm: str = "fake"):
    """Run `scenario(session)` against a fresh `rag mcp` process; returns what it returns."""

    async def main():
        with open(os.devnull, "w") as quiet:  # the server's log (stderr) stays out of the test output
            async with mcp.stdio_client(_params(settings, llm), errlog=quiet) as (read, write):
                async with mcp.ClientSession(read, write) as session:
                    await session.initialize()
                    with anyio.fail_after(120):
                        return await scenario(session)

    return anyio.run(main)


def _text_of(corpus: Path, doc_id: str) -> str:
    return (corpus / f"{doc_id}.txt").read_text(encoding="utf-8")


def _check_spans(corpus: Path, passages: list[dict]) -> None:
    assert passages
    for p in passages:
        assert set(p) >= {"doc_id", "title", "quote", "char_start", "char_end"}
        assert _text_of(corpus, p["doc_id"])[p["char_start"] : p["char_end"]] == p["quote"], p


def test_lists_two_tools_and_answers_with_exact_spans(settings):
    async def scenario(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        asked = await session.call_tool("ask", {"question": QUESTION})
        found = await session.call_tool("search", {"query": "bitcoin price after the leak", "k": 3})
        return tools, asked, found

    tools, asked, found = _session(settings, scenario)
    assert set(tools) == {"ask", "search"}
    assert tools["ask"].input_schema["required"] == ["question"]
    assert set(tools["search"].input_schema["properties"]) == {"query", "collection", "k"}
    assert tools["ask"].output_schema and tools["search"].output_schema  # structured results, with a schema

    assert not asked.is_error
    answer = asked.structured_content
    assert not answer["abstained"] and "66,000" in answer["text"] and "[1]" in answer["text"]
    _check_spans(settings.corpus, answer["citations"])
    assert any("66,000" in c["quote"] for c in answer["citations"])
    assert [c["number"] for c in answer["citations"]] == list(range(1, len(answer["citations"]) + 1))
    assert answer["sentences"] and all(s["supported"] for s in answer["sentences"])

    assert not found.is_error
    passages = found.structured_content["passages"]
    assert 1 <= len(passages) <= 3
    _check_spans(settings.corpus, passages)
    assert any("66,000" in p["quote"] for p in passages)


def test_search_calls_no_model_and_errors_are_tool_errors_with_the_cli_message(settings):
    # A model file that does not exist: `ask` fails when it needs the model, `search` never does.
    async def scenario(session):
        return [await session.call_tool(name, args) for name, args in [
            ("search", {"query": "Capybara", "k": 2}),
            ("ask", {"question": QUESTION}),
            ("ask", {"question": "   "}),
            ("search", {"query": "bitcoin", "collection": "nope"}),
            ("search", {"query": "bitcoin", "k": 0}),
        ]]

    found, no_model, empty, unknown, bad_k = _session(settings, scenario, llm="llamacpp:/nonexistent/model.gguf")
    assert not found.is_error
    _check_spans(settings.corpus, found.structured_content["passages"])
    assert any("Capybara" in p["quote"] for p in found.structured_content["passages"])
    assert no_model.is_error and "no GGUF file at /nonexistent/model.gguf" in no_model.content[0].text
    assert empty.is_error and "the question is empty: type a question about the articles" in empty.content[0].text
    assert unknown.is_error and "unknown collection 'nope': use one of: corpus" in unknown.content[0].text
    assert bad_k.is_error


def test_an_unanswerable_question_abstains_with_the_closest_passages(settings):
    async def scenario(session):
        return await session.call_tool("ask", {"question": "Quel temps fera-t-il demain à Lyon?"})

    result = _session(settings, scenario)
    assert not result.is_error
    answer = result.structured_content
    assert answer["abstained"] and answer["citations"] == [] and answer["text"] == "Not found in these articles."
    _check_spans(settings.corpus, answer["closest"])


def test_streamable_http_on_loopback(settings):
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    params = _params(settings)
    proc = subprocess.Popen([params.command, *params.args, "--http", str(port)], env={**os.environ, **params.env},
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # the server listens once the corpus is synced
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "rag mcp --http did not start"
            time.sleep(0.2)

        async def main():
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
                async with mcp.ClientSession(read, write) as session:
                    await session.initialize()
                    return await session.call_tool("search", {"query": "bitcoin", "k": 2})

        found = anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(20)
    assert not found.is_error
    _check_spans(settings.corpus, found.structured_content["passages"])
