"""`--store http://HOST:PORT` against a real Chroma server: `chroma run` on a free loopback port, killed at the end.

Ingest, re-ingest and ask go through chromadb.HttpClient with no other code path changed; the fake model and
embedder keep it fast. The server's data lives under tmp_path.

Token auth: `chroma run` (the Rust server of chromadb >= 1.0) ignores CHROMA_SERVER_AUTHN_* (checked: with them set
it still answers every request without a token), so those tests run Chroma's own Python server from the same
package (`uvicorn chromadb.app:app`), which implements token authentication from those variables. That server
cannot return stored vectors in chromadb 1.5.9 (its `get` calls `.tolist()` on a list), which `ask` needs, so with
it the tests go as far as ingest, re-reading and dense search.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag import Pipeline, Settings, SetupError
from rag.cli import main

from .conftest import ROOT, free_port, require

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only


def _heartbeat(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def chroma_url(tmp_path):
    """A fresh server per test, so no test sees another's collections."""
    exe = shutil.which("chroma")
    require(exe is not None, "the `chroma` command (installed with chromadb)", 'pip install -e ".[test]"')
    port = free_port()
    data = tmp_path / "chroma" / "data"
    yield from _serve([exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)], port, tmp_path)


TOKEN = "s3cret-store-token"


@pytest.fixture
def chroma_with_token(tmp_path):
    """Chroma's Python server with token authentication on: only requests that carry TOKEN are served."""
    port = free_port()
    env = {"IS_PERSISTENT": "TRUE", "PERSIST_DIRECTORY": str(tmp_path / "chroma" / "data"),
           "CHROMA_SERVER_AUTHN_PROVIDER": "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
           "CHROMA_SERVER_AUTHN_CREDENTIALS": TOKEN}
    cmd = [sys.executable, "-m", "uvicorn", "chromadb.app:app", "--host", "127.0.0.1", "--port", str(port)]
    yield from _serve(cmd, port, tmp_path, env)


def _serve(cmd: list[str], port: int, tmp_path: Path, env: dict | None = None):
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "chroma" / "server.log"
    log.parent.mkdir(exist_ok=True)
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "ANONYMIZED_TELEMETRY": "False", **(env or {})})
    try:
        deadline = time.monotonic() + 30
        while not _heartbeat(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Chroma server did not answer its heartbeat: {log.read_text(errors='replace')[-800:]}")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _settings(corpus: Path, store: str, tmp_path: Path) -> Settings:
    return Settings(corpus=corpus, store=store, home=tmp_path / "home", llm="fake", embedder="fake")


def test_ingest_and_ask_through_the_server(chroma_url, corpus, tmp_path):
    settings = _settings(corpus, chroma_url, tmp_path)
    pipe = Pipeline(settings)
    first = pipe.ingest()
    assert sorted(first.added) == sorted(p.stem for p in corpus.iterdir())
    assert first.chunks_embedded == pipe.store.count() > 0

    # The same store read back by a fresh client: records and chunk counts come from the server, not this process.
    local = Pipeline(_settings(corpus, str(tmp_path / "local"), tmp_path))
    local.ingest()
    other = Pipeline(settings)
    assert other.store.count() == local.store.count() == first.chunks_embedded
    records = other.store.doc_records()
    assert {d: r.n_chunks for d, r in records.items()} == {d: r.n_chunks for d, r in local.store.doc_records().items()}
    assert not any(r.pending for r in records.values())

    again = other.ingest()
    assert again.chunks_embedded == 0 and len(again.unchanged) == len(first.added)

    a = other.ask("How far did bitcoin fall after the leak?")
    assert not a.abstained and a.citations and "66,000" in " ".join(c.quote for c in a.citations)
    texts = other.documents()
    for c in a.citations:
        assert texts[c.doc_id].text[c.char_start : c.char_end] == c.quote


def test_cli_store_flag_and_env_reach_the_server(chroma_url, corpus, tmp_path):
    env = {"RAG_CORPUS": str(corpus), "RAG_HOME": str(tmp_path / "home"), "RAG_LLM": "fake", "RAG_EMBEDDER": "fake"}
    runner = CliRunner()
    ingest = runner.invoke(main, ["ingest", "--store", chroma_url], env=env)
    assert ingest.exit_code == 0, ingest.output
    assert re.search(r"\b3 added, 0 changed, 0 removed, 0 unchanged; [1-9]\d* chunks embedded", ingest.output)
    question = "How far did bitcoin fall after the leak?"
    asked = runner.invoke(main, ["ask", question], env={**env, "RAG_STORE": chroma_url})
    assert asked.exit_code == 0, asked.output
    assert "[1]" in asked.output and "66,000" in asked.output
    assert not (tmp_path / "home" / "store").exists()  # nothing fell back to the local default store


def test_a_server_that_is_down_says_how_to_start_one(tmp_path, corpus):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SetupError, match="chroma run --path"):
        Pipeline(_settings(corpus, url, tmp_path))


def test_a_server_with_token_auth_needs_the_right_token(chroma_with_token, corpus, tmp_path, monkeypatch):
    settings = _settings(corpus, chroma_with_token, tmp_path)
    monkeypatch.delenv("RAG_STORE_TOKEN", raising=False)
    with pytest.raises(SetupError, match=r"needs a token.*set RAG_STORE_TOKEN"):
        Pipeline(settings)
    monkeypatch.setenv("RAG_STORE_TOKEN", "not-the-token")
    with pytest.raises(SetupError, match=r"refused the token in RAG_STORE_TOKEN"):
        Pipeline(settings)

    env = {"RAG_CORPUS": str(corpus), "RAG_HOME": str(tmp_path / "home"), "RAG_LLM": "fake", "RAG_EMBEDDER": "fake",
           "RAG_STORE": chroma_with_token}
    runner = CliRunner()
    refused = runner.invoke(main, ["ingest"], env={**env, "RAG_STORE_TOKEN": "not-the-token"})
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit)
    (line,) = refused.output.strip().splitlines()
    assert line.startswith(f"error: the Chroma server at {chroma_with_token} refused the token"), line
    assert "not-the-token" not in line, "the error never shows the token"

    ingest = runner.invoke(main, ["ingest"], env={**env, "RAG_STORE_TOKEN": TOKEN})
    assert ingest.exit_code == 0, ingest.output
    assert re.search(r"\b3 added, 0 changed, 0 removed, 0 unchanged; [1-9]\d* chunks embedded", ingest.output)
    assert not (tmp_path / "home" / "store").exists()  # nothing fell back to the local default store

    monkeypatch.setenv("RAG_STORE_TOKEN", TOKEN)
    other = Pipeline(settings)  # a fresh client with the right token reads what the CLI wrote
    records = other.store.doc_records()
    assert sorted(records) == sorted(p.stem for p in corpus.iterdir()) and other.store.count() > 0
    again = other.ingest()
    assert again.chunks_embedded == 0 and len(again.unchanged) == 3
    query = other.embedder.embed(["How far did bitcoin fall after the leak?"])[0]
    assert other.store.query(query, 4), "dense search answers through the authenticated client"


def test_a_token_is_harmless_to_a_server_without_auth(chroma_url, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_STORE_TOKEN", TOKEN)
    pipe = Pipeline(_settings(corpus, chroma_url, tmp_path))
    assert pipe.ingest().chunks_embedded > 0


def _api_process(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        if "OpenAI-compatible API on" in line:
            return proc
    pytest.fail(f"rag serve did not start (exit {proc.wait(20)})")


def _cited(port: int, question: str) -> set[str]:
    import httpx

    body = {"model": "corpus", "messages": [{"role": "user", "content": question}]}
    reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=60).json()
    return {c["doc_id"] for c in reply["choices"][0]["message"]["rag"]["citations"]}


def test_two_api_processes_and_an_ingest_in_a_third_share_one_server(chroma_url, corpus, tmp_path):
    """Issue "scale": two `rag serve` processes on one Chroma server, and `rag ingest` in a third. Each API process
    sees an added article at its next question (the store's generation moved: its lexical index is updated for that
    article) and, once the article is removed, never serves its chunks again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CORPUS": str(corpus), "RAG_STORE": chroma_url,
           "RAG_HOME": str(tmp_path / "home"), "RAG_LLM": "fake", "RAG_EMBEDDER": "fake", "RAG_API_KEY": ""}

    def ingest() -> None:
        run = subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(corpus)], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr

    ingest()
    ports = [free_port(), free_port()]
    procs = [_api_process(port, env) for port in ports]
    try:
        question = "How many zebras did the city zoo count in May?"
        for port in ports:
            assert "zebra" not in _cited(port, question)
            assert "000_91c71732e04b514a" in _cited(port, "How far did bitcoin fall after the leak?")
        (corpus / "zebra.md").write_text("# Zebra news\n\nThe zebra count at the city zoo reached 4,242 in May, "
                                         "keepers said.\n")
        ingest()
        for port in ports:
            assert "zebra" in _cited(port, question), f"the API on port {port} did not see the new article"
        (corpus / "zebra.md").unlink()
        ingest()
        for port in ports:
            assert "zebra" not in _cited(port, question), f"the API on port {port} served a removed article"
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)


def test_chromas_hybrid_search_is_not_available_here_so_bm25_stays_ours(chroma_url, tmp_path):
    """Issue "scale" asked whether Chroma 1.x's `Search()` API (hybrid search with BM25 sparse vectors) can replace
    rag/lexical.py. In the installed chromadb it is implemented only for distributed and hosted Chroma: a local
    store raises NotImplementedError and `chroma run` answers "not implemented for local executor". When this test
    fails, the engine can do it: move lexical search into Chroma and drop rag/lexical.py."""
    import chromadb
    from chromadb import Knn, Search
    from chromadb.config import Settings as ChromaSettings

    quiet = ChromaSettings(anonymized_telemetry=False)
    for client in (chromadb.HttpClient(host="127.0.0.1", port=int(chroma_url.rsplit(":", 1)[1]), settings=quiet),
                   chromadb.PersistentClient(path=str(tmp_path / "local"), settings=quiet)):
        probe = client.get_or_create_collection("probe", embedding_function=None)
        probe.add(ids=["a"], embeddings=[[0.1, 0.2, 0.3]], documents=["zebra count"])
        with pytest.raises(Exception, match=r"(?i)not implemented"):
            probe.search(Search().rank(Knn(query=[0.1, 0.2, 0.3])).limit(1))
