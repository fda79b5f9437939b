"""llama-index interop on the fakes: our retriever and query engine plugged into stock llama-index components
(RetrieverQueryEngine, CondensePlusContextChatEngine, with llama-index's MockLLM); every node they hand back must be
an exact span of its document."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rag import NOT_FOUND, Pipeline

from .conftest import ROOT

core = pytest.importorskip("llama_index.core")

from llama_index.core.chat_engine import CondensePlusContextChatEngine  # noqa: E402
from llama_index.core.llms import ChatMessage, MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402

from rag.llamaindex import HybridRetriever, VerifiedQueryEngine  # noqa: E402

QUESTION = "How far did bitcoin fall after the leak?"


@pytest.fixture
def pipe(settings) -> Pipeline:
    p = Pipeline(settings)
    p.ingest()
    return p


def _check_nodes(pipe: Pipeline, nodes) -> None:
    assert nodes
    docs = pipe.documents()
    for n in nodes:
        node = n.node
        doc = docs[node.metadata["doc_id"]]
        assert doc.text[node.start_char_idx : node.end_char_idx] == node.text
        assert node.metadata["title"] == doc.title and node.ref_doc_id == doc.doc_id


def test_the_retriever_returns_the_pipelines_sources_as_exact_nodes(pipe):
    nodes = HybridRetriever(pipe).retrieve(QUESTION)
    sources = pipe.retrieve(QUESTION).sources
    assert [(n.node.metadata["doc_id"], n.node.start_char_idx, n.node.end_char_idx, n.score) for n in nodes] == [
        (s.doc_id, s.start, s.end, s.score) for s in sources]
    _check_nodes(pipe, nodes)
    assert len(HybridRetriever(pipe, k=1).retrieve(QUESTION)) == 1


def test_a_stock_retriever_query_engine_gets_our_passages(pipe):
    engine = RetrieverQueryEngine.from_args(HybridRetriever(pipe), llm=MockLLM())
    response = engine.query(QUESTION)
    _check_nodes(pipe, response.source_nodes)
    assert any("66,000" in n.node.text for n in response.source_nodes)
    # MockLLM echoes its prompt: the passages (with their titles, without our ids) reached the synthesizer.
    assert "66,000" in str(response) and "title: " in str(response) and "doc_id" not in str(response)


def test_a_stock_chat_engine_retrieves_through_ours_with_history(pipe):
    history = [ChatMessage(role="user", content="How did bitcoin react to the Mythos leak?"),
               ChatMessage(role="assistant", content="It slid to $66,000 [1].")]
    engine = CondensePlusContextChatEngine.from_defaults(HybridRetriever(pipe), llm=MockLLM(), chat_history=history)
    response = engine.chat("and how much did it fall?")
    _check_nodes(pipe, response.source_nodes)
    assert any("66,000" in n.node.text for n in response.source_nodes)


def test_the_verified_query_engine_is_ask(pipe):
    expected = pipe.ask(QUESTION)
    response = VerifiedQueryEngine(pipeline=pipe).query(QUESTION)
    assert response.response == expected.text and "66,000" in response.response
    assert [(n.node.start_char_idx, n.node.end_char_idx, n.node.metadata["number"]) for n in response.source_nodes] == [
        (c.char_start, c.char_end, c.number) for c in expected.citations]
    _check_nodes(pipe, response.source_nodes)
    rag = response.metadata["rag"]
    assert not rag["abstained"] and [c["number"] for c in rag["citations"]] == [c.number for c in expected.citations]
    assert all(s["supported"] for s in rag["sentences"])


def test_the_verified_query_engine_abstains_with_no_source_nodes(pipe):
    response = VerifiedQueryEngine(pipeline=pipe).query("Quel temps fera-t-il demain à Lyon?")
    assert response.response == NOT_FOUND and response.source_nodes == []
    assert response.metadata["rag"]["abstained"] and response.metadata["rag"]["closest"]


def test_importing_rag_does_not_import_llama_index():
    code = "import sys, rag, rag.extras; assert 'llama_index' not in sys.modules, 'llama_index imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
