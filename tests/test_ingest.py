"""Ingest: metadata, exact offsets, residue, idempotency, repair after a crash, bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest import ChunkStore, FakeEmbedder, UserError, chunk_document, load_document, sentence_spans, sync
from ingest.loaders import html_to_text

from .conftest import CORPUS, ROOT


def _store(tmp_path: Path) -> ChunkStore:
    return ChunkStore(str(tmp_path / "store"), "fake")


def test_metadata_and_derived_titles():
    doc = load_document(CORPUS / "004_7e67ca4c9a9558fc.txt")
    assert doc.title.startswith("When AI Labs Leak Their Own Future")
    assert doc.author == "Martin von Wysiecki"
    untitled = load_document(CORPUS / "000_91c71732e04b514a.txt")
    assert untitled.title and len(untitled.title) <= 81 and untitled.title != untitled.doc_id


def test_a_last_paragraph_that_starts_with_the_title_is_text_not_a_signature(tmp_path):
    # A scraped page's closing "<title> — <Name>" line is residue; a paragraph that only begins with the title's
    # words is the document's text (it was dropped, and a one-paragraph page had no chunk at all).
    (tmp_path / "wombats.md").write_text("# Wombats\n\nWombats dig deep burrows in the dry hills.\n", encoding="utf-8")
    doc = load_document(tmp_path / "wombats.md")
    assert [c.text for c in chunk_document(doc)] == ["Wombats dig deep burrows in the dry hills."]
    signed = load_document(CORPUS / "004_7e67ca4c9a9558fc.txt")
    last = signed.text.rstrip().rsplit("\n", 1)[1]
    assert last.endswith("— Martin von Wysiecki") and not any(last in c.text for c in chunk_document(signed))


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.stem)
def test_chunks_are_exact_spans_without_residue(path: Path):
    doc = load_document(path)
    assert doc.text == path.read_text(encoding="utf-8")  # offsets are into the original file
    chunks = chunk_document(doc)
    assert chunks
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        for a, b in doc.skip:
            assert b <= c.start or a >= c.end, f"residue {doc.text[a:b]!r} inside chunk {c.index}"
    joined = " ".join(c.text for c in chunks)
    for residue in ("3 min read", "Published:", "aianthropiccybersecurityindustry-trends"):
        assert residue not in joined


def test_sentence_spans_keep_numbers_and_abbreviations_together():
    text = "Bitcoin slid to $66,000, and the ETF fell 2.5%. GPT-5.4 shipped, e.g. with a big window. Done"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["Bitcoin slid to $66,000, and the ETF fell 2.5%.",
                     "GPT-5.4 shipped, e.g. with a big window.", "Done"]


def test_punkt_loads_without_the_scientific_stack_which_still_imports_afterwards():
    """NLTK imports scipy and scikit-learn for features Punkt never uses; a fresh process that splits sentences
    does not pay for them, and code that wants them later still gets them."""
    code = ("import sys\n"
            "from ingest.chunking import sentence_spans\n"
            "text = 'Dr. Smith left the U.S. at 3 p.m. on Monday. He came back.'\n"
            "assert [text[a:b] for a, b in sentence_spans(text)] == [text[:44], 'He came back.']\n"
            "assert 'scipy' not in sys.modules and 'sklearn' not in sys.modules, 'loaded with NLTK'\n"
            "import scipy.stats, sklearn.feature_extraction\n"
            "print(scipy.stats.norm.cdf(0))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "0.5", run.stderr


def test_html_scripts_styles_and_hidden_text_are_dropped():
    text, title = html_to_text(
        "<html><head><title>T</title><style>p{}</style></head><body><h1>Head</h1><p>Visible <b>text</b>.</p>"
        "<script>alert(1)</script><div hidden>secret</div><p style='display:none'>gone</p></body></html>"
    )
    assert title == "T"
    assert "Visible text." in text and "Head" in text
    for bad in ("alert", "secret", "gone", "p{}"):
        assert bad not in text


def test_sync_is_idempotent_and_tracks_changes(tmp_path: Path, corpus: Path):
    store, emb = _store(tmp_path), FakeEmbedder()
    first = sync(corpus, store, emb)
    assert len(first.added) == 3 and first.chunks_embedded == store.count() > 0
    n = store.count()

    again = sync(corpus, store, emb)
    assert again.chunks_embedded == 0 and len(again.unchanged) == 3 and store.count() == n

    target = corpus / "004_7e67ca4c9a9558fc.txt"
    target.write_text("A short replacement article.\n\nIt has two paragraphs about bitcoin.\n", encoding="utf-8")
    (corpus / "002_8e1c4ef02a64e4d0.txt").unlink()
    changed = sync(corpus, store, emb)
    assert changed.changed == ["004_7e67ca4c9a9558fc"] and changed.removed == ["002_8e1c4ef02a64e4d0"]
    ids, texts, metas = store.all_chunks()
    assert len(ids) == len(set(ids)) == store.count()
    assert {m["doc_id"] for m in metas} == {"000_91c71732e04b514a", "004_7e67ca4c9a9558fc"}
    assert not any("Claude Mythos" in t for t, m in zip(texts, metas) if m["doc_id"] == "004_7e67ca4c9a9558fc")


class _Crash(Exception):
    pass


class _CrashingEmbedder(FakeEmbedder):
    """Fails on its n-th call, like a process killed half-way through embedding."""

    def __init__(self, fail_on: int):
        self.calls, self.fail_on = 0, fail_on

    def embed(self, texts):
        self.calls += 1
        if self.calls == self.fail_on:
            raise _Crash("killed")
        return super().embed(texts)


def test_interrupted_ingest_is_repaired_without_duplicates(tmp_path: Path, corpus: Path, monkeypatch):
    monkeypatch.setattr("ingest.pipeline.TEXTS_PER_ENCODE", 1)  # one encoder call per document
    clean = ChunkStore(str(tmp_path / "clean"), "fake")
    sync(corpus, clean, FakeEmbedder())

    store = _store(tmp_path)
    with pytest.raises(_Crash):  # not a store error: raised as it is (a bug must not read as a full disk)
        sync(corpus, store, _CrashingEmbedder(fail_on=2))  # dies inside the second document
    assert 0 < store.count() < clean.count()
    report = sync(corpus, store, FakeEmbedder())
    assert report.chunks_embedded > 0
    ids, _, _ = store.all_chunks()
    assert sorted(ids) == sorted(clean.all_chunks()[0])


def test_writes_go_by_encoder_call_not_by_document(tmp_path: Path, monkeypatch):
    # A Chroma server takes some 25 ms a write, whatever its size: twelve short new documents that one encoder call
    # embeds are stored in one write of chunks, one of sentences and two of records (pending, then whole), not
    # four writes each. What ends up in the store is the same as when each document has a call of its own.
    from chromadb.api.models.Collection import Collection

    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(12):
        (folder / f"note{i:02d}.txt").write_text(f"Note {i}\n\nThe tide rose {i} metres on day {i}. Boats waited.\n")
    writes: dict[str, int] = {}
    real = Collection.upsert

    def counted(self, *a, **kw):
        kind = self.name.split("_", 1)[0]
        writes[kind] = writes.get(kind, 0) + 1
        return real(self, *a, **kw)

    monkeypatch.setattr(Collection, "upsert", counted)
    store = ChunkStore(str(tmp_path / "store"), "fake")
    report = sync(folder, store, FakeEmbedder())
    writes.pop("collections", None)  # the collection's registry entry
    assert len(report.added) == 12 and writes == {"chunks": 1, "sents": 1, "docs": 2}
    monkeypatch.setattr("ingest.pipeline.TEXTS_PER_ENCODE", 1)  # one encoder call per document
    alone = ChunkStore(str(tmp_path / "alone"), "fake")
    sync(folder, alone, FakeEmbedder())
    assert sorted(store.all_chunks()[0]) == sorted(alone.all_chunks()[0])
    assert store.sentence_count() == alone.sentence_count() > 12
    assert {d: r.n_chunks for d, r in store.doc_records().items()} == {
        d: r.n_chunks for d, r in alone.doc_records().items()}
    assert not any(r.pending for r in store.doc_records().values())


def test_new_collections_search_wider_than_chromas_default(tmp_path: Path):
    # Chroma's HNSW looks at 100 candidates by default: recall@10 fell to 0.74-0.78 at 1M clustered vectors. Chunks
    # and sentences are made with EF_SEARCH, which Chroma fixes when a collection is made.
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from ingest.store import EF_SEARCH

    ChunkStore(str(tmp_path / "store"), "fake")
    client = chromadb.PersistentClient(path=str(tmp_path / "store"),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    for name in ("chunks_fake", "sents_fake"):
        hnsw = client.get_collection(name).configuration["hnsw"]
        assert hnsw["ef_search"] == EF_SEARCH > 100 and hnsw["space"] == "cosine", (name, hnsw)


def test_bad_files_are_skipped_with_a_warning(tmp_path: Path, corpus: Path):
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02garbage")
    (corpus / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    report = sync(corpus, _store(tmp_path), FakeEmbedder())
    assert len(report.added) == 3
    assert any("binary.txt" in m for m in report.skipped) and any("latin1.txt" in m for m in report.skipped)


def test_missing_or_empty_folder_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="does not exist"):
        sync(tmp_path / "nope", _store(tmp_path), FakeEmbedder())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no readable"):
        sync(tmp_path / "empty", _store(tmp_path), FakeEmbedder())


def test_symlink_out_of_the_corpus_is_not_followed(tmp_path: Path, corpus: Path):
    outside = tmp_path / "secret.txt"
    outside.write_text("The secret password is hunter2.\n", encoding="utf-8")
    (corpus / "link.txt").symlink_to(outside)
    store = _store(tmp_path)
    sync(corpus, store, FakeEmbedder())
    assert not any("hunter2" in t for t in store.all_chunks()[1])


def test_fake_embedder_is_deterministic_and_normalised():
    a = FakeEmbedder().embed(["bitcoin fell", "bitcoin fell", "something else entirely"])
    assert np.allclose(a[0], a[1]) and np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert float(a[0] @ a[2]) < 0.9


def test_ingest_embeds_in_few_large_encoder_calls(tmp_path: Path, corpus: Path):
    # Bare-encode speed needs many texts per call (the encoder sorts them by length, so batches pad little); one
    # call per document would pad each short sentence to the document's longest chunk.
    calls = []

    class Counting(FakeEmbedder):
        def embed(self, texts):
            calls.append(len(texts))
            return super().embed(texts)

    report = sync(corpus, _store(tmp_path), Counting())
    assert report.chunks_embedded > 30 and len(report.added) == 3
    assert len(calls) == 1 and calls[0] > report.chunks_embedded, calls


# --- a serving process's re-syncs: files unchanged since it loaded them are not loaded again -------------------
@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """The files ingest.pipeline reads and parses, by name."""
    import ingest.pipeline

    seen: list[str] = []
    real = ingest.pipeline.load_document

    def counting(path, *a, **kw):
        seen.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(ingest.pipeline, "load_document", counting)
    return seen


def test_a_resync_with_known_files_loads_only_the_new_and_the_changed(tmp_path, corpus, loads, monkeypatch):
    import os

    import ingest.pipeline
    from ingest.pipeline import KnownFiles

    monkeypatch.setattr(ingest.pipeline, "SETTLED_S", 0.0)  # the copied files are seconds old
    store, emb, known = _store(tmp_path), FakeEmbedder(), KnownFiles()
    names = sorted(p.name for p in corpus.iterdir())
    first = sync(corpus, store, emb, known=known)
    assert sorted(loads) == names and len(first.added) == len(names)
    loads.clear()
    assert sync(corpus, store, emb, known=known).unchanged and loads == []  # nothing read again
    assert len(sync(corpus, store, emb).unchanged) == len(names) and sorted(loads) == names  # without: all read
    loads.clear()

    (corpus / "zebra.md").write_text("# Zebra\n\nThe zoo counted 4,242 zebras.\n", encoding="utf-8")
    edited = corpus / names[0]
    st = edited.stat()
    text = edited.read_text(encoding="utf-8")
    edited.write_text(text.replace("the", "teh", 1), encoding="utf-8")  # same size, and the same mtime put back
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = sync(corpus, store, emb, known=known)
    assert sorted(loads) == sorted(["zebra.md", names[0]])  # its ctime moved: read again, and found changed
    assert report.added == ["zebra"] and report.changed == [load_document(edited).doc_id]
    loads.clear()

    store.delete_doc("zebra")  # unchanged on disk, but the store lost it (another writer, a repair)
    report = sync(corpus, store, emb, known=known)
    assert report.added == ["zebra"] and loads == ["zebra.md"]


def test_a_file_changed_within_the_settling_time_is_never_taken_as_known(tmp_path, corpus, loads):
    from ingest.pipeline import KnownFiles

    store, emb, known = _store(tmp_path), FakeEmbedder(), KnownFiles()
    sync(corpus, store, emb, known=known)  # the copies are fresh: not trusted yet
    loads.clear()
    sync(corpus, store, emb, known=known)
    assert len(loads) == len(list(corpus.iterdir()))


def test_a_fresh_pipeline_does_not_parse_the_files_an_earlier_process_loaded(settings, loads, monkeypatch):
    """The file list is kept under the home (a fresh `rag ask` on a large folder must not parse all of it), but only
    for the same ingest code, and a list that cannot be read is ignored."""
    import ingest.pipeline
    from rag.answer import Pipeline

    monkeypatch.setattr(ingest.pipeline, "SETTLED_S", 0.0)
    names = sorted(p.name for p in settings.corpus.iterdir())
    Pipeline(settings).ingest()
    assert sorted(loads) == names
    [kept] = (settings.home / "files").glob("*.json")
    loads.clear()
    assert Pipeline(settings).ingest().unchanged and loads == []  # "another process": nothing parsed
    assert Pipeline(settings).retrieve("bitcoin").sources and loads == []  # a question's first sync neither

    monkeypatch.setattr(ingest.pipeline, "code_version", lambda: "another parser")
    Pipeline(settings).ingest()
    assert sorted(loads) == names  # the list was another code's: every file read again
    loads.clear()
    kept.write_text("{not json", encoding="utf-8")
    assert Pipeline(settings).ingest().unchanged and sorted(loads) == names
