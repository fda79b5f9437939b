"""Bring a store in line with a folder of articles: embed what is new or changed, drop what is gone.

Idempotent by a content hash per document: an unchanged corpus costs one read of each file and no embedding
(the embedding model is not even loaded). A changed document's new chunks (their ids carry the new hash) are
written beside the old ones, which go only when the new version is whole; a failed write takes out what got in, so
the old version keeps answering. A new document is marked `pending` until its chunks are in; a run that was
killed half-way is repaired by the next, which rewrites the same ids, so the store never holds duplicates.
Unreadable files are skipped with a warning that names them, and everything else is ingested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import Chunk, chunk_document, sentence_spans
from ingest.embed import Embedder
from ingest.errors import SetupError, UserError
from ingest.loaders import Document, UnreadableFile, find_files, load_document
from ingest.store import ChunkStore, DocRecord

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (chunks done, chunks to do, document id)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable file
    chunks_embedded: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.changed)} changed", f"{len(self.removed)} removed",
                 f"{len(self.unchanged)} unchanged"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return f"{', '.join(parts)}; {self.chunks_embedded} chunks embedded in {self.seconds:.2f}s"


def load_folder(folder: Path, report: IngestReport) -> list[Document]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"corpus folder {folder} does not exist: pass a folder of .txt, .md or .html articles")
    docs, seen = [], set()
    for path in find_files(folder):
        try:
            doc = load_document(path)
        except UnreadableFile as e:
            log.warning("%s", e)
            report.skipped.append(str(e))
            continue
        except OSError as e:
            log.warning("%s: cannot be read (%s), skipped", path.name, e.strerror)
            report.skipped.append(f"{path.name}: cannot be read ({e.strerror}), skipped")
            continue
        if doc.doc_id in seen:
            report.skipped.append(f"{path.name}: another file has the id {doc.doc_id!r}, skipped")
            continue
        seen.add(doc.doc_id)
        docs.append(doc)
    if not docs:
        raise UserError(f"corpus folder {folder} holds no readable .txt, .md or .html article")
    return docs


def _write_batch(store: ChunkStore, embedder: Embedder, doc: Document, batch: list[Chunk]) -> None:
    """Embed a batch of chunks and their sentences in one call (the encoder sorts by length), and store both."""
    sents = [(c, i, a, b) for c in batch for i, (a, b) in enumerate(sentence_spans(doc.text, c.start, c.end))]
    vectors = embedder.embed([c.text for c in batch] + [doc.text[a:b] for _, _, a, b in sents])
    store.add_chunks(ids=[c.chunk_id for c in batch], vectors=vectors[: len(batch)], texts=[c.text for c in batch],
                     metas=[{"doc_id": doc.doc_id, "title": doc.title, "start": c.start, "end": c.end,
                             "index": c.index} for c in batch])
    store.add_sentences(ids=[f"{c.chunk_id}::{i}" for c, i, _, _ in sents], vectors=vectors[len(batch) :],
                        metas=[{"doc_id": doc.doc_id, "chunk_id": c.chunk_id, "start": a, "end": b}
                               for c, _, a, b in sents])


def _drop_partial(store: ChunkStore, doc: Document, chunks: list[Chunk], fresh: bool) -> None:
    """After a failed write, take out what of the document's new version got in (best effort): a changed document
    keeps answering from its old version, and a new one is not half-present."""
    try:
        if fresh:
            store.delete_doc(doc.doc_id)
        else:
            store.delete_ids([c.chunk_id for c in chunks])
    except Exception as e:  # the store that refused the write may refuse this too; the next run cleans up
        log.warning("%s: could not remove its half-written chunks (%s); the next `rag ingest` will", doc.doc_id, e)


def sync(folder: Path, store: ChunkStore, embedder: Embedder, progress: Progress | None = None) -> IngestReport:
    """Make `store` hold exactly the chunks of the articles in `folder`."""
    t0 = time.perf_counter()
    report = IngestReport()
    docs = load_folder(folder, report)
    try:
        existing = store.doc_records()
    except Exception as e:
        raise SetupError(f"cannot read the store at {store.location}: {e}") from None

    todo: list[Document] = []
    for doc in docs:
        rec = existing.get(doc.doc_id)
        if rec is not None and not rec.pending and rec.content_hash == doc.content_hash:
            report.unchanged.append(doc.doc_id)
        else:
            (report.changed if rec is not None and not rec.pending else report.added).append(doc.doc_id)
            todo.append(doc)
    wanted = {d.doc_id for d in docs}
    gone = sorted(set(existing) - wanted)

    try:
        for doc_id in gone:
            store.delete_doc(doc_id)
            report.removed.append(doc_id)
        plans = [(doc, chunk_document(doc)) for doc in todo]
        total = sum(len(chunks) for _, chunks in plans)
        done = 0
        for doc, chunks in plans:
            fresh = doc.doc_id in report.added
            if fresh:  # no old version to keep answering from: a record that says "half-written"
                store.mark_pending(doc.doc_id)
            try:
                for i in range(0, len(chunks), 64):
                    _write_batch(store, embedder, doc, chunks[i : i + 64])
                    done += len(chunks[i : i + 64])
                    if progress:
                        progress(done, total, doc.doc_id)
            except BaseException:
                _drop_partial(store, doc, chunks, fresh)
                raise
            # The old version goes only now that the new one is whole; the record follows, so a kill between the
            # two leaves the old hash on record, and the next run rewrites the document (its ids are the same).
            store.delete_chunks(doc.doc_id, keep=[c.chunk_id for c in chunks])
            store.put_doc(DocRecord(doc_id=doc.doc_id, path=doc.path, title=doc.title, author=doc.author,
                                    date=doc.date, content_hash=doc.content_hash, n_chunks=len(chunks),
                                    ingested_at=time.time(), text=doc.text, pending=False))
            report.chunks_embedded += len(chunks)
    except (UserError, SetupError):
        raise
    except Exception as e:  # a read-only folder, a full disk, a server gone: the old records stay readable
        raise SetupError(f"writing to the store at {store.location} failed ({e.__class__.__name__}: {e}); "
                         "free disk space or fix permissions, then run `rag ingest` again") from None
    report.seconds = time.perf_counter() - t0
    return report

