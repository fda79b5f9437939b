"""Crashes and faults: SIGKILL during ingest, a full or read-only store, Ollama dying mid-answer, a corrupt model.

What is real and what is simulated:
  - SIGKILL: real. A `rag ingest` subprocess (fake embedder) is killed with SIGKILL in the middle of a document.
  - Full disk: simulated. Chroma's `Collection.upsert` raises OSError(ENOSPC), as a write to a full disk does; the
    files on disk are not filled.
  - Read-only store: real where possible. We run as root, so chmod 0555 would not stop a single write; instead the
    store is made immutable with `chattr +i` (which binds root too, on ext4 and similar). Where chattr cannot be
    used the test is skipped rather than faked. A store path that is a regular file is a real unusable folder.
  - Ollama: the stand-in server (tests/ollama_standin.py) that closes the connection after two chunks.
  - Corrupt model: a small stand-in model of two part files, with the real assembly and checksum code.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.chunking import chunk_document, sentence_spans
from ingest.loaders import find_files, load_document
from rag import Pipeline, Settings, SetupError, model_files
from rag import llm as llm_module
from ui import handlers

from .conftest import ROOT
from .ollama_standin import OllamaStandIn

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only

BITCOIN = "How far did bitcoin fall after the leak?"
WORDS = "market leak model zebra bitcoin stock price analyst security report chip server cloud team launch".split()


def _fingerprint(answer) -> tuple:
    return (answer.text, answer.abstained, [(c.doc_id, c.char_start, c.char_end) for c in answer.citations])


# --- SIGKILL during ingest ------------------------------------------------------------------------------------------
def _paragraph(seed: int) -> str:
    words = [WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(60)]
    return " ".join(" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, 60, 12))


def _generated_corpus(folder: Path) -> None:
    """Small articles before and after a long one (250 chunks, four embedding batches)."""
    folder.mkdir()
    for i in range(12):
        (folder / f"a{i:03d}.txt").write_text(f"Article {i}\n\n{_paragraph(i)}\n\n{_paragraph(i + 1)}\n")
    big = "\n\n".join(f"Part {i}. {_paragraph(i)}" for i in range(250))
    (folder / "b_long.txt").write_text(f"A long report\n\n{big}\n")
    for i in range(8):
        (folder / f"c{i:03d}.txt").write_text(f"Later article {i}\n\n{_paragraph(i + 50)}\n")


def test_sigkill_during_ingest_then_rerun_gives_a_clean_store(tmp_path):
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    _generated_corpus(corpus)
    env = {**os.environ, "RAG_EMBEDDER": "fake", "RAG_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(corpus), "--store", str(store)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = bytearray()

    def read():
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 4096):
            progress.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    # tqdm's postfix names the document of the batch just stored: once the long one shows, it is half-way.
    while b"b_long" not in progress and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    reader.join(10)
    assert proc.returncode == -signal.SIGKILL, progress.decode(errors="replace")[-500:]

    docs = [load_document(p) for p in find_files(corpus)]
    plans = {d.doc_id: (d, chunk_document(d)) for d in docs}
    want_ids = sorted(c.chunk_id for _, chunks in plans.values() for c in chunks)
    want_sentences = sum(len(sentence_spans(d.text, c.start, c.end)) for d, chunks in plans.values() for c in chunks)

    settings = Settings(corpus=corpus, store=str(store), home=tmp_path / "home", llm="fake", embedder="fake")
    pipe = Pipeline(settings)
    records = pipe.store.doc_records()
    assert records["b_long"].pending, "the kill was meant to land inside the long document"
    assert 0 < pipe.store.count() < len(want_ids)

    report = pipe.ingest()  # the rerun
    assert "b_long" in report.added and not report.changed and not report.removed
    ids = pipe.store.all_chunks()[0]
    assert len(ids) == len(set(ids)), "duplicate chunk ids"
    assert sorted(ids) == want_ids and pipe.store.count() == len(want_ids)
    assert pipe.store._sents.count() == want_sentences
    records = pipe.store.doc_records()
    assert set(records) == set(plans) and not any(r.pending for r in records.values())
    assert all(r.n_chunks == len(plans[r.doc_id][1]) for r in records.values())
    assert pipe.ingest().chunks_embedded == 0  # and a third run finds nothing to do


# --- a full disk, a read-only store -------------------------------------------------------------------------------
def test_full_disk_is_a_clear_error_and_the_old_index_still_answers(settings, corpus, monkeypatch, caplog):
    from chromadb.api.models.Collection import Collection

    pipe = Pipeline(settings)
    before = _fingerprint(pipe.ask(BITCOIN))
    (corpus / "zebra.md").write_text("# Zebra news\n\nThe zebra count at the zoo reached 4,242 in May.\n")

    def disk_full(self, *args, **kwargs):  # simulated: what a write to a full disk raises
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Collection, "upsert", disk_full)
    with pytest.raises(SetupError, match=r"No space left on device.*free disk space.*rag ingest") as failed:
        pipe.ingest()
    assert "Traceback" not in str(failed.value)
    assert _fingerprint(pipe.ask(BITCOIN)) == before

    # A new process (every `rag ask` is one) still answers from the index it finds, and says why it is stale.
    with caplog.at_level(logging.WARNING, logger="rag.answer"):
        assert _fingerprint(Pipeline(settings).ask(BITCOIN)) == before
    assert "No space left on device" in caplog.text and "answering from the index as it was" in caplog.text

    _, status = handlers.reingest(settings)  # the UI's button shows the error and what to do
    assert 'role="alert"' in status and "free disk space" in status

    monkeypatch.undo()  # space freed: the same pipeline catches up
    assert pipe.ingest().added == ["zebra"]


def test_full_disk_while_a_changed_article_is_rewritten_keeps_its_old_version(settings, corpus, monkeypatch):
    from chromadb.api.models.Collection import Collection

    pipe = Pipeline(settings)
    before = _fingerprint(pipe.ask(BITCOIN))
    old_ids = sorted(pipe.store.all_chunks()[0])
    doc_id = "000_91c71732e04b514a"
    old_hash = pipe.store.doc_records()[doc_id].content_hash
    path = corpus / f"{doc_id}.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\n\nA late update: the price recovered by Friday.\n",
                    encoding="utf-8")
    real_upsert, written = Collection.upsert, []

    def fills_up(self, *args, **kwargs):  # the new chunks go in, then the disk is full for their sentences
        if self.name.startswith("sents_"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(self.name)
        return real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "upsert", fills_up)
    with pytest.raises(SetupError, match="No space left on device"):
        pipe.ingest()
    assert any(name.startswith("chunks_") for name in written), "part of the new version was written"
    assert sorted(pipe.store.all_chunks()[0]) == old_ids, "the old version is whole and nothing of the new is left"
    record = pipe.store.doc_records()[doc_id]
    assert record.content_hash == old_hash and not record.pending
    assert _fingerprint(pipe.ask(BITCOIN)) == before

    monkeypatch.undo()  # space freed: the new version replaces the old one
    assert pipe.ingest().changed == [doc_id]
    new_ids = {c.chunk_id for c in chunk_document(load_document(path))}
    ids = pipe.store.all_chunks()[0]
    assert new_ids <= set(ids) and not (set(old_ids) & new_ids) and len(ids) == len(set(ids))
    assert [i for i in ids if i.startswith(doc_id) and i not in new_ids] == [], "the old version is gone"
    assert pipe.store.doc_records()[doc_id].content_hash != old_hash


def _chattr(flag: str, path: Path) -> bool:
    try:
        return subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def test_read_only_store_is_a_clear_error_and_the_old_index_still_answers(settings, corpus, tmp_path):
    pipe = Pipeline(settings)
    before = _fingerprint(pipe.ask(BITCOIN))
    (corpus / "zebra.md").write_text("# Zebra news\n\nThe zebra count at the zoo reached 4,242 in May.\n")
    store = Path(settings.store_location)
    if not _chattr("+i", store):
        pytest.skip("chattr +i is not available here (needs root and ext4 or similar); chmod does not bind root")
    try:
        probe = store / "probe"
        with pytest.raises(PermissionError):
            probe.write_text("x")  # really read-only, for root too
        with pytest.raises(SetupError, match=r"writing to the store at .* failed .*fix permissions.*rag ingest"):
            pipe.ingest()
        assert _fingerprint(pipe.ask(BITCOIN)) == before
        assert _fingerprint(Pipeline(settings).ask(BITCOIN)) == before
        # A new process cannot open it at all: Chroma writes to its database when it opens it. The CLI says so in
        # one line that names the fix, instead of a traceback.
        env = {**os.environ, "RAG_EMBEDDER": "fake", "RAG_LLM": "fake", "RAG_CORPUS": str(corpus),
               "RAG_STORE": str(store), "RAG_HOME": str(tmp_path / "home")}
        run = subprocess.run([sys.executable, "-m", "rag.cli", "ask", BITCOIN], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert re.fullmatch(r"error: cannot open the store at .*readonly.*writable.*--store\n", run.stderr), run.stderr
    finally:
        _chattr("-i", store)
    assert pipe.ingest().added == ["zebra"]


def test_after_a_read_only_failure_the_next_ingest_opens_the_database_again(settings, corpus, monkeypatch):
    """SQLite opens a file it may not write read-only, and Chroma keeps a pool of connections: one opened while the
    store was read-only stays read-only after the folder is fixed (seen in CI as "attempt to write a readonly
    database" on the ingest after chattr -i). A failed write for want of permission makes the next write reopen."""
    from chromadb import Collection

    pipe = Pipeline(settings)
    before = _fingerprint(pipe.ask(BITCOIN))
    (corpus / "zebra.md").write_text("# Zebra news\n\nThe zebra count at the zoo reached 4,242 in May.\n")
    real_upsert = Collection.upsert

    def read_only(self, *args, **kwargs):  # what a connection opened while the store was read-only answers
        raise RuntimeError("Query error: Database error: error returned from database: (code: 8) attempt to write "
                           "a readonly database")

    monkeypatch.setattr(Collection, "upsert", read_only)
    with pytest.raises(SetupError, match=r"fix permissions"):
        pipe.ingest()
    assert _fingerprint(pipe.ask(BITCOIN)) == before  # asking does not reopen, so a still read-only store answers
    client = pipe.store._client
    monkeypatch.setattr(Collection, "upsert", real_upsert)
    assert pipe.ingest().added == ["zebra"]
    assert pipe.store._client is not client, "the write after the failure opened the database again"
    assert "4,242" in pipe.ask("What did the zebra count at the zoo reach?").text


def test_a_store_path_that_is_not_a_folder_says_what_to_do(settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    with pytest.raises(SetupError, match="cannot open the store at .*writable.*--store"):
        Pipeline(settings.model_copy(update={"store": str(blocker / "store")}))
    (view,) = list(handlers.ask(settings.model_copy(update={"store": str(blocker / "store")}), BITCOIN, []))
    assert 'role="alert"' in view.status and "cannot open the store" in view.status


# --- Ollama stops mid-answer ----------------------------------------------------------------------------------------
def test_ollama_dying_mid_answer_leaves_the_ui_usable(settings, monkeypatch):
    s = settings.model_copy(update={"llm": "ollama:qwen2.5:1.5b"})
    with OllamaStandIn(die_after_chunks=2) as server:  # a stand-in: no Ollama can be installed here
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        views = list(handlers.ask(s, BITCOIN, []))
        assert "rag-draft" in views[-2].chat[-1]["content"], "part of the answer had streamed"
        failed = views[-1]
        assert 'role="alert"' in failed.status and "stopped answering mid-reply" in failed.status
        assert "ask again" in failed.status and failed.chat == [] and failed.turns is None

        server.die_after_chunks = None  # the server is back
        answered = list(handlers.ask(s, BITCOIN, []))[-1]
        assert answered.turns and not answered.turns[0].answer.abstained
        assert "66,000" in answered.turns[0].answer.citations[0].quote and 'role="alert"' not in answered.status
        follow_up = list(handlers.ask(s, "And what is Claude Mythos?", answered.turns))[-1]
        assert follow_up.turns and len(follow_up.turns) == 2
    assert handlers._line.size() == 0, "a failed request left a ticket in the line"


# --- errors we did not foresee: one line in the CLI, a message in the page ---------------------------------------
def _cli_env(settings) -> dict:
    return {"RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store, "RAG_HOME": str(settings.home),
            "RAG_LLM": "fake", "RAG_EMBEDDER": "fake"}


def _one_line_error(result, starts: str) -> str:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.output)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.output
    return lines[0]


def _wrong_dimension_store(settings) -> None:
    """A store whose chunk collection holds 3-dimensional vectors, as another embedder would have left it (real)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=settings.store, settings=ChromaSettings(anonymized_telemetry=False))
    chunks = client.get_or_create_collection(f"chunks_fake__{settings.collection_name}",
                                             configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    chunks.upsert(ids=["x::h::0"], embeddings=[[1.0, 0.0, 0.0]], documents=["Bitcoin slid to $66,000 after the leak."],
                  metadatas=[{"doc_id": "x", "start": 0, "end": 1}])


def test_unexpected_errors_are_one_line_in_the_cli_and_a_traceback_only_with_v(settings, monkeypatch):
    from click.testing import CliRunner

    from rag.cli import main

    runner = CliRunner()
    _wrong_dimension_store(settings)
    line = _one_line_error(runner.invoke(main, ["ask", BITCOIN], env=_cli_env(settings)), "error: ")
    assert "dimension" in line and "rag ingest --rebuild" in line, line  # a store error, by its cause

    # A collection that went away under us (chromadb's own error type).
    from chromadb.errors import NotFoundError

    from ingest.store import ChunkStore

    def gone(self):
        raise NotFoundError("Collection [chunks_fake] does not exist")

    monkeypatch.setattr(ChunkStore, "count", gone)
    asked = runner.invoke(main, ["ask", "--store", settings.store + "-2", BITCOIN], env=_cli_env(settings))
    _one_line_error(asked, "error: unexpected NotFoundError: Collection [chunks_fake] does not exist (run with -v")
    verbose = runner.invoke(main, ["-v", "ask", "--store", settings.store + "-2", BITCOIN], env=_cli_env(settings))
    assert verbose.exit_code == 1 and isinstance(verbose.exception, SystemExit)
    assert "Traceback (most recent call last)" in verbose.output and "does not exist" in verbose.output.splitlines()[-1]


@pytest.mark.parametrize("host", ["ftp://127.0.0.1:1", "http://127.0.0.1:99999"])
def test_a_bad_ollama_address_is_one_line(settings, host):
    from click.testing import CliRunner

    from rag.cli import main

    env = {**_cli_env(settings), "RAG_LLM": "ollama:qwen2.5:1.5b", "OLLAMA_HOST": host}
    line = _one_line_error(CliRunner().invoke(main, ["ask", BITCOIN], env=env), "error: ")
    assert "Ollama" in line or "unexpected" in line, line


# --- a corrupt model file -------------------------------------------------------------------------------------------
class _PartsInFolder(model_files.EmbeddedModel):
    def part_path(self, i: int) -> Path:
        return Path(self.package) / f"part{i:02d}.bin"


def test_a_corrupt_model_file_never_reaches_llama_cpp(tmp_path, monkeypatch):
    parts = tmp_path / "parts"
    parts.mkdir()
    blobs = [b"GGUF" + bytes(range(256)) * 4, b"tail" * 200]
    for i, blob in enumerate(blobs, start=1):
        (parts / f"part{i:02d}.bin").write_bytes(blob)
    whole = b"".join(blobs)
    model = _PartsInFolder("tiny", "tiny.gguf", str(parts), 2, len(whole), hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(model_files.MODELS, "tiny", model)
    monkeypatch.setattr(model_files, "_verified", set())
    monkeypatch.setattr(llm_module, "_cache", {})
    loaded: list[Path] = []

    class Spy:
        def __init__(self, path: Path, n_ctx: int = 2048, **_) -> None:
            loaded.append(path)
            self.name = "spy"

    monkeypatch.setattr(llm_module, "LlamaCppLLM", Spy)
    cache = tmp_path / "models"
    cached = model_files.ensure_model("tiny", cache)
    data = bytearray(cached.read_bytes())
    data[100] ^= 0x01  # one bit: same size, different checksum
    cached.write_bytes(bytes(data))
    model_files._verified.clear()  # a new process: nothing verified yet

    with pytest.raises(SetupError, match="corrupt.*delete it"):
        llm_module.get_llm("llamacpp:tiny", cache)
    assert loaded == [], "the corrupt file was handed to llama.cpp"

    cached.unlink()  # what the message says to do
    llm_module.get_llm("llamacpp:tiny", cache)
    assert loaded == [cached] and cached.read_bytes() == whole

