"""Nothing lost: collections side by side, questions that never delete, unreadable files that keep their last good
version, a failed ingest that leaves no stale index, one writer at a time across processes, errors by their cause,
chunks of pending or old versions never served, and a changed embedding model noticed.

All with the fake embedder and the fake model; the two racing ingests and the second reader are real processes.
Faults are simulated by patching Chroma's `Collection.upsert` / `delete` to raise the exception a full disk, a
locked database or a dimension mismatch raises.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from chromadb.api.models.Collection import Collection

from ingest import ChunkStore, FakeEmbedder, SetupError, UserError, sync
from ingest.errors import OtherFolder
from ingest.store import is_current, list_collections
from rag import Pipeline, Settings
from rag.retrieve import Retriever

from .conftest import CORPUS, ROOT

BITCOIN = "How far did bitcoin fall after the leak?"
ZEBRA = "# Zebra news\n\nThe zebra count at the city zoo reached 4,242 in May, keepers said.\n"


def _state(store: ChunkStore) -> tuple:
    """What a collection holds: its chunk ids and its records' hashes."""
    ids, _, _ = store.all_chunks()
    return sorted(ids), sorted((r.doc_id, r.content_hash, r.n_chunks) for r in store.doc_records().values())


def _consistent(store: ChunkStore) -> None:
    """Every record is whole and matches its stored chunks; no chunk is orphaned, pending or of an old version."""
    records = store.doc_records()
    ids, _, metas = store.all_chunks()
    for rec in records.values():
        assert not rec.pending, rec.doc_id
        mine = [cid for cid, m in zip(ids, metas) if m["doc_id"] == rec.doc_id]
        assert len(mine) == rec.n_chunks, (rec.doc_id, len(mine), rec.n_chunks)
        assert all(is_current(cid, rec) for cid in mine), rec.doc_id
    assert {m["doc_id"] for m in metas} <= set(records)


@pytest.fixture
def news(tmp_path: Path) -> Path:
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "zebra.md").write_text(ZEBRA)
    return folder


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake", embedder="fake", **kw)


# --- 1. one folder's index is never wiped by work on another --------------------------------------------------------
def test_a_question_about_the_default_collection_leaves_another_folder_alone(tmp_path, news, corpus):
    mine = Pipeline(_settings(tmp_path, corpus=news))
    assert mine.ingest().added == ["zebra"]
    assert mine.store.collection == "news"
    before = _state(mine.store)
    default = Pipeline(_settings(tmp_path, corpus=corpus, collection="default"))
    assert not default.ask(BITCOIN).abstained  # first use ingests the default collection
    again = Pipeline(_settings(tmp_path, corpus=news)).ingest()
    assert (again.added, again.changed, again.removed) == ([], [], [])  # was "1 added, 0 changed, 3 removed"
    assert _state(mine.store) == before
    names = {c.name: c for c in list_collections(str(tmp_path / "store"), "fake")}
    assert set(names) == {"news", "default"}
    assert names["news"].folder == str(news.resolve()) and names["news"].n_docs == 1
    assert names["default"].n_docs == 3 and names["default"].n_chunks > 0


def test_ingesting_one_collection_leaves_the_other_untouched(tmp_path, news, corpus):
    a = Pipeline(_settings(tmp_path, corpus=news))
    b = Pipeline(_settings(tmp_path, corpus=corpus, collection="articles"))
    a.ingest()
    b.ingest()
    before = _state(a.store)
    first = sorted(corpus.glob("*.txt"))[0]
    first.write_text(first.read_text() + "\nA late correction was added.\n")
    sorted(corpus.glob("*.txt"))[1].unlink()
    report = b.ingest()
    assert report.changed and report.removed
    assert _state(a.store) == before
    assert "zebra" not in b.documents() and set(a.documents()) == {"zebra"}
    answer = b.ask("How many zebras are at the zoo?")
    assert all(c.doc_id != "zebra" for c in answer.citations + answer.sources)


def test_a_collection_refuses_another_folder_unless_repointed(tmp_path, news, corpus):
    pipe = Pipeline(_settings(tmp_path, corpus=corpus, collection="mine"))
    pipe.ingest()
    before = _state(pipe.store)
    other = Pipeline(_settings(tmp_path, corpus=news, collection="mine"))
    with pytest.raises(OtherFolder, match=r"mirrors .*--collection NAME.*--repoint"):
        other.ingest()
    with pytest.raises(OtherFolder):
        other.ask(BITCOIN)  # a question never re-points a collection either
    assert _state(pipe.store) == before
    report = other.ingest(repoint=True)
    assert report.added == ["zebra"] and len(report.removed) == 3
    assert Pipeline(_settings(tmp_path, collection="mine")).folder() == news.resolve()


def test_a_question_adds_new_files_but_never_deletes(tmp_path, corpus):
    settings = _settings(tmp_path, corpus=corpus)
    Pipeline(settings).ingest()
    gone = sorted(corpus.glob("*.txt"))[0]
    gone.unlink()
    (corpus / "zebra.md").write_text(ZEBRA)
    fresh = Pipeline(settings)  # a new process's first question
    fresh.ask(BITCOIN)
    assert gone.stem in fresh.documents() and "zebra" in fresh.documents()
    assert fresh.last_ingest.added == ["zebra"] and fresh.last_ingest.removed == []
    assert Pipeline(settings).ingest().removed == [gone.stem]  # only an explicit ingest of the folder deletes


def test_a_named_collection_answers_from_its_own_folder(tmp_path, news):
    Pipeline(_settings(tmp_path, corpus=news, collection="zoo")).ingest()
    answer = Pipeline(_settings(tmp_path, collection="zoo")).ask("How many zebras are at the zoo?")
    assert [c.doc_id for c in answer.citations] == ["zebra"]
    with pytest.raises(UserError, match=r"collection 'nope' does not exist yet.*--collection nope"):
        Pipeline(_settings(tmp_path, collection="nope")).ask(BITCOIN)
    with pytest.raises(ValueError, match="collection name"):
        _settings(tmp_path, collection="../etc")


# --- 2. a skipped file keeps its last good version -------------------------------------------------------------------
@pytest.mark.parametrize("spoil", ["cp1252", "binary", "unreadable"])
def test_an_indexed_file_that_turns_unreadable_keeps_its_last_good_version(tmp_path, corpus, spoil, monkeypatch):
    settings = _settings(tmp_path, corpus=corpus)
    pipe = Pipeline(settings)
    pipe.ingest()
    before = _state(pipe.store)
    victim = corpus / "000_91c71732e04b514a.txt"
    if spoil == "cp1252":
        saved = victim.read_text() + "\nCaf\u00e9 \u2014 \u20ac5"
        victim.write_bytes(saved.encode("cp1252", errors="replace"))
    elif spoil == "binary":
        victim.write_bytes(b"\x00\x01\x02" * 400)  # half-written by an editor: NUL bytes
    else:
        real_open = Path.read_bytes

        def denied(path: Path):  # chmod 000 does not bind root, so the permission error is simulated
            if path.name == victim.name:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path)

        monkeypatch.setattr(Path, "read_bytes", denied)
    report = pipe.ingest()
    assert report.kept == [victim.stem] and report.removed == [] and report.skipped
    assert "kept at their last good version" in report.summary()
    assert _state(pipe.store) == before
    answer = Pipeline(settings).ask(BITCOIN)
    assert victim.stem in {c.doc_id for c in answer.sources}


# --- 3. a partly failed ingest leaves no stale in-memory index -------------------------------------------------------
def test_a_failed_ingest_leaves_a_retriever_that_still_answers(tmp_path, corpus, monkeypatch):
    pipe = Pipeline(_settings(tmp_path, corpus=corpus))
    pipe.ask(BITCOIN)  # the retriever is built
    for path in sorted(corpus.glob("*.txt")):
        path.write_text(path.read_text() + "\nEditors added a note at the end.\n")
    calls = {"n": 0}
    real = Collection.upsert

    def fails_later(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 5:  # the first document's new version gets in, then the disk fills
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *a, **kw)

    monkeypatch.setattr(Collection, "upsert", fails_later)
    monkeypatch.setattr("ingest.pipeline.TEXTS_PER_ENCODE", 1)  # a write per document (they go by encoder call)
    with pytest.raises(SetupError, match="free disk space"):
        pipe.ingest()
    monkeypatch.undo()
    answer = pipe.ask(BITCOIN)  # was KeyError: the chunk ids of the rewritten document were not in the index
    assert not answer.abstained and answer.citations
    _consistent(pipe.store)


# --- 4. one writer at a time; readers notice the store changed -------------------------------------------------------
def _ingest_process(corpus: Path, store: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "RAG_EMBEDDER": "fake", "RAG_LLM": "fake", "RAG_STORE": str(store), "RAG_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "rag.cli", "ingest", str(corpus)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.integration
def test_two_racing_ingests_over_an_edited_file_leave_records_that_match_their_chunks(tmp_path, corpus):
    store, home = tmp_path / "store", tmp_path / "home"
    big = corpus / "big.txt"
    body = "\n\n".join(f"Part {i}. The zebra count rose to {i} in the spring, keepers said again." for i in range(400))
    big.write_text(body)
    first = _ingest_process(corpus, store, home)
    big.write_text(body.replace("spring", "autumn"))  # edited while the first ingest runs
    second = _ingest_process(corpus, store, home)
    for proc in (first, second):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    chunks = ChunkStore(str(store), "fake", "corpus")
    _consistent(chunks)
    assert "autumn" in chunks.doc_records(with_text=True)["big"].text
    assert Path(chunks.lock_path()).parent == store


@pytest.mark.integration
def test_a_pipeline_sees_another_process_ingest_without_a_restart(tmp_path, corpus):
    settings = _settings(tmp_path, corpus=corpus)
    pipe = Pipeline(settings)
    assert "zebra" not in {c.doc_id for c in pipe.ask("How many zebras are at the zoo?").sources}
    (corpus / "zebra.md").write_text(ZEBRA)
    proc = _ingest_process(corpus, tmp_path / "store", tmp_path / "home")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    answer = pipe.ask("How many zebras are at the zoo?")
    assert "zebra" in {c.doc_id for c in answer.citations}


def test_a_writer_waits_for_the_lock_and_says_which_file(tmp_path, corpus, monkeypatch):
    from filelock import FileLock

    store = ChunkStore(str(tmp_path / "store"), "fake")
    held = FileLock(str(store.lock_path()))
    held.acquire()
    try:
        with pytest.raises(SetupError, match=r"another process .* \(lock .*rag-writer.lock\).*delete that file"):
            with store.writing(wait=0.3):
                pass
    finally:
        held.release()
    with store.writing(wait=0.3):
        pass


def test_every_write_bumps_the_generation(tmp_path, corpus):
    pipe = Pipeline(_settings(tmp_path, corpus=corpus))
    pipe.ingest()
    g = pipe.store.generation()
    assert Pipeline(_settings(tmp_path, corpus=corpus)).ingest().unchanged  # nothing to do: no bump
    assert pipe.store.generation() == g
    (corpus / "zebra.md").write_text(ZEBRA)
    pipe.ingest()
    assert pipe.store.generation() > g


# --- 5. store errors by their cause; chunks of pending or old versions never served ---------------------------------
@pytest.mark.parametrize("error, said", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), r"No space left.*free disk space"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), r"fix permissions"),
    (sqlite3.OperationalError("database is locked"), r"another program holds the store's database"),
    (ValueError("Collection expecting embedding with dimension of 1024, got 384"), r"another size.*--rebuild"),
])
def test_a_store_error_names_its_cause(tmp_path, corpus, monkeypatch, error, said):
    def fails(self, *a, **kw):
        raise error

    monkeypatch.setattr(Collection, "upsert", fails)
    with pytest.raises(SetupError, match=said) as failed:
        sync(corpus, ChunkStore(str(tmp_path / "store"), "fake"), FakeEmbedder())
    if "space" not in said:
        assert "free disk space" not in str(failed.value)


def test_a_bug_is_not_reported_as_a_full_disk(tmp_path, corpus, monkeypatch):
    def bug(self, *a, **kw):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(Collection, "upsert", bug)
    with pytest.raises(TypeError, match="unhashable"):
        sync(corpus, ChunkStore(str(tmp_path / "store"), "fake"), FakeEmbedder())


def test_half_written_chunks_are_never_served_even_when_the_cleanup_fails(tmp_path, corpus, monkeypatch):
    settings = _settings(tmp_path, corpus=corpus)
    Pipeline(settings).ingest()
    (corpus / "zebra.md").write_text(ZEBRA)  # new: pending while it is written
    old = corpus / "004_7e67ca4c9a9558fc.txt"
    old.write_text(old.read_text().replace("Anthropic", "Anthropic (the zebra company)"))  # changed
    real_upsert = Collection.upsert

    def upsert(self, *a, **kw):
        if self.name.startswith("docs_") and not all(m.get("pending") for m in kw["metadatas"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # pending marks and chunks get in, records cannot
        return real_upsert(self, *a, **kw)

    def delete(self, *a, **kw):
        raise OSError(errno.EIO, "the cleanup fails too")

    monkeypatch.setattr(Collection, "upsert", upsert)
    monkeypatch.setattr(Collection, "delete", delete)
    with pytest.raises(SetupError):
        Pipeline(settings).ingest()
    monkeypatch.undo()
    store = ChunkStore(settings.store_location, "fake", "corpus")
    ids, _, _ = store.all_chunks()
    records = store.doc_records()
    stale = [cid for cid in ids if not is_current(cid, records.get(cid.split("::")[0]))]
    assert stale  # the failed cleanup left chunks behind ...
    texts = store.doc_records(with_text=True)
    served = []
    for q in ("How many zebras are at the zoo?", "What is the zebra company?", BITCOIN):
        served += Retriever(store, FakeEmbedder()).retrieve(q, 8, 8, 4000).sources  # no repairing sync first
    assert served
    for src in served:  # ... and none of them is served: every source is a span of a whole document's recorded text
        rec = texts[src.doc_id]
        assert not rec.pending and rec.text[src.start : src.end] == src.text
    assert "the zebra company" not in " ".join(src.text for src in served)  # the new version never got on record


# --- 6. a changed embedding model is noticed -------------------------------------------------------------------------
class _OtherModel(FakeEmbedder):
    dim = 512

    def fingerprint(self) -> str:
        return "other-model-512"


def test_a_changed_embedding_model_is_re_embedded_by_ingest_and_named_by_a_question(tmp_path, corpus):
    store = ChunkStore(str(tmp_path / "store"), "fake")
    sync(corpus, store, FakeEmbedder())
    info = store.info()
    assert info.fingerprint == FakeEmbedder().fingerprint() and info.dim == 1024
    with pytest.raises(SetupError, match=r"embedded with fake-blake2b-1024 \(1024 dimensions\).*rag ingest"):
        sync(corpus, store, _OtherModel(), remove=False)  # what a question's first use does
    report = sync(corpus, store, _OtherModel())
    assert report.reembedded and len(report.added) == 3
    assert store.info().fingerprint == "other-model-512" and store.info().dim == 512
    _consistent(store)
    assert sync(corpus, store, _OtherModel()).chunks_embedded == 0


def test_a_store_made_before_the_registry_is_adopted_without_re_embedding(tmp_path, corpus):
    store = ChunkStore(str(tmp_path / "store"), "fake")
    sync(corpus, store, FakeEmbedder())
    store._registry.delete(ids=[store.collection])  # as a store written by the previous release
    assert store.info().folder == ""
    report = sync(corpus, store, FakeEmbedder())
    assert report.chunks_embedded == 0 and store.info().folder == str(corpus.resolve())
    assert CORPUS.exists()
