"""Bring a store in line with a folder of articles: embed what is new or changed, drop what is gone.

Idempotent by a content hash per document: an unchanged corpus costs one read of each file and no embedding
(the embedding model is not even loaded). A run that was killed half-way left its document marked `pending`;
this run replaces that document's chunks, so the store never holds duplicates. Unreadable files are skipped with
a warning that names them, and everything else is ingested.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import chunk_document, sentence_spans
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
            store.mark_pending(doc.doc_id)
            store.delete_chunks(doc.doc_id)
            for i in range(0, len(chunks), 64):
                batch = chunks[i : i + 64]
                vectors = embedder.embed([c.text for c in batch])
                store.add_chunks(
                    ids=[c.chunk_id for c in batch], vectors=vectors, texts=[c.text for c in batch],
                    metas=[{"doc_id": doc.doc_id, "title": doc.title, "start": c.start, "end": c.end,
                            "index": c.index} for c in batch],
                )
                sents = [(c, i, a, b) for c in batch
                         for i, (a, b) in enumerate(sentence_spans(doc.text, c.start, c.end))]
                store.add_sentences(
                    ids=[f"{c.chunk_id}::{i}" for c, i, _, _ in sents],
                    vectors=embedder.embed([doc.text[a:b] for _, _, a, b in sents]),
                    metas=[{"doc_id": doc.doc_id, "chunk_id": c.chunk_id, "start": a, "end": b}
                           for c, _, a, b in sents],
                )
                done += len(batch)
                if progress:
                    progress(done, total, doc.doc_id)
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

