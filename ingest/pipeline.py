"""Bring a store in line with a folder of articles: embed what is new or changed, drop what is gone.

Idempotent by a content hash per document: an unchanged corpus costs one read of each file and no embedding
(the embedding model is not even loaded). A changed document's new chunks (their ids carry the new hash) are
written beside the old ones, which go only when the new version is whole; a failed write takes out what got in, so
the old version keeps answering. A new document is marked `pending` until its chunks are in; a run that was
killed half-way is repaired by the next, which rewrites the same ids, so the store never holds duplicates.
Unreadable files (binary, corrupt, encrypted, scanned, too large, unreadable by permissions) are skipped with one
line each in the report, and everything else is ingested; an indexed document whose file turns unreadable keeps its
last good version (it is not "deleted"). Each chunk and sentence records the page (PDF) and the section it starts in.

A collection mirrors one folder, recorded in the store's registry: syncing another folder into it is refused unless
asked for (`repoint`), and `remove=False` (what a question's first use does) adds and updates but never deletes.
Writes hold the store's writer lock, and the registry's generation is bumped after each, so readers in other
processes rebuild their in-memory index. A store error is reported by its cause (a full disk, permissions, another
writer, an embedding of another dimension); any other error is raised as it is, after the cleanup.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.chunking import Chunk, chunk_document, sentence_spans
from ingest.embed import Embedder
from ingest.errors import OtherFolder, RagError, SetupError, UnreadableFile, UserError
from ingest.loaders import Document, find_files, load_document
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
    kept: list[str] = field(default_factory=list)  # indexed documents whose file is unreadable now: last good version
    reembedded: bool = False  # the embedding model changed, so every document was embedded again
    chunks_embedded: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.changed)} changed", f"{len(self.removed)} removed",
                 f"{len(self.unchanged)} unchanged"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.kept:
            parts.append(f"{len(self.kept)} kept at their last good version")
        return f"{', '.join(parts)}; {self.chunks_embedded} chunks embedded in {self.seconds:.2f}s"


@dataclass(frozen=True)
class Seen:
    """A file as an earlier load in this process found it: its document's id and content hash. A sync reads the
    file again only if the store's record of it disagrees (`_loaded`)."""

    path: Path
    doc_id: str
    content_hash: str


SETTLED_S = 2.0  # a file changed this recently may change again within its timestamps' resolution: not trusted


class KnownFiles:
    """The files earlier syncs loaded, by path and stat: a file whose size, inode, mtime and ctime are unchanged is
    not read and parsed again only to learn that it is unchanged, so one new article in a folder of 10,000 costs a
    stat of each of the others, not a load. A Pipeline (rag.answer) keeps one per collection, in a file under the
    app's home when given `path`, so that a fresh `rag ask` does not parse a large folder either; without one, every
    sync loads every file. The file is our own and only a hint: an entry counts only while the file's stat is the
    one recorded, and only for the same ingest code (`code_version`), since another parser reads other text."""

    def __init__(self, path: Path | None = None) -> None:
        self._seen: dict[str, tuple[tuple[int, ...], Seen]] = {}
        self._lock = threading.Lock()
        self._path = path
        self._dirty = False
        if path is not None:
            self._read(path)

    def _read(self, path: Path) -> None:
        try:
            kept = json.loads(path.read_text(encoding="utf-8"))
            if kept.get("format") != KNOWN_FORMAT or kept.get("code") != code_version():
                return
            for name, (stat, doc_id, content_hash) in kept["files"].items():
                self._seen[name] = (tuple(int(x) for x in stat), Seen(Path(name), str(doc_id), str(content_hash)))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # half-written or foreign: start over
            log.info("ignoring the kept file list %s (%s)", path, e)
            self._seen.clear()

    def save(self) -> None:
        """Keep what changed since the last save (written whole or not at all); a failure only costs the next
        process the loads."""
        if self._path is None or not self._dirty:
            return
        with self._lock:
            files = {name: [list(stat), seen.doc_id, seen.content_hash] for name, (stat, seen) in self._seen.items()}
            self._dirty = False
        tmp = self._path.with_name(f"{self._path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": KNOWN_FORMAT, "code": code_version(), "files": files}),
                           encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.info("could not keep the file list in %s (%s)", self._path, e)

    @staticmethod
    def _stat(path: Path) -> tuple[int, ...] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def get(self, path: Path) -> Seen | None:
        key = self._stat(path)
        with self._lock:
            got = self._seen.get(str(path))
        return got[1] if got is not None and key is not None and got[0] == key else None

    def put(self, path: Path, doc: Document, stat: tuple[int, ...] | None) -> None:
        """Remember `doc` as the content of `path` at `stat` (taken before it was read), if that stat still holds
        and is old enough to trust."""
        if stat is None or self._stat(path) != stat or time.time_ns() - max(stat[3], stat[4]) < SETTLED_S * 1e9:
            return
        with self._lock:
            self._seen[str(path)] = (stat, Seen(path, doc.doc_id, doc.content_hash))
            self._dirty = True


KNOWN_FORMAT = 1


@functools.cache
def code_version() -> str:
    """A digest of the ingest package's own source: the text a file is read as (and so its hash) is this code's."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def load_folder(folder: Path, report: IngestReport, unreadable: set[str] | None = None,
                known: KnownFiles | None = None) -> list[Document | Seen]:
    """The readable documents of a folder; each unreadable file is one line of `report.skipped`, and its would-be
    document id goes into `unreadable` (its indexed version, if any, is kept). With `known`, a file unchanged since
    an earlier load is its `Seen` (id and hash) instead of a loaded Document."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"corpus folder {folder} does not exist: pass a folder of {_KINDS} articles")
    docs: list[Document | Seen] = []
    seen: set[str] = set()
    unreadable = set() if unreadable is None else unreadable
    for path in find_files(folder):
        doc: Document | Seen | None = known.get(path) if known is not None else None
        if doc is None:
            doc = _load(path, report, unreadable, known)
            if doc is None:
                continue
        if doc.doc_id in seen:
            report.skipped.append(f"{path.name}: another file has the id {doc.doc_id!r}, skipped")
            continue
        seen.add(doc.doc_id)
        docs.append(doc)
    if not docs:
        raise UserError(f"corpus folder {folder} holds no readable {_KINDS} article"
                        + (f" ({len(report.skipped)} skipped: {report.skipped[0]})" if report.skipped else ""))
    return docs


_KINDS = ".txt, .md, .html, .pdf, .docx or .epub"


def _load(path: Path, report: IngestReport, unreadable: set[str], known: KnownFiles | None) -> Document | None:
    """The file's document, or None (and a line in `report.skipped`) when it cannot be read."""
    stat = KnownFiles._stat(path) if known is not None else None
    try:
        doc = load_document(path)
    except UnreadableFile as e:
        log.info("%s", e)  # the report carries it: `rag ingest` and the UI show each skipped file once
        report.skipped.append(str(e))
        unreadable.add(path.stem)
        return None
    except OSError as e:
        log.info("%s: cannot be read (%s), skipped", path.name, e.strerror)
        report.skipped.append(f"{path.name}: cannot be read ({e.strerror}), skipped")
        unreadable.add(path.stem)
        return None
    if known is not None:
        known.put(path, doc, stat)
    return doc


def _where(doc: Document, start: int) -> dict:
    """Chunk / sentence metadata for where `start` is: its page (PDF) and section, when the document has them."""
    meta: dict = {}
    page = doc.page_at(start)
    if page is not None:
        meta["page"] = page
    section = doc.section_at(start)
    if section:
        meta["section"] = section
    return meta


CHUNKS_PER_WRITE = 64  # chunks (with their sentences) of one document per unit of work
TEXTS_PER_ENCODE = 512  # texts per encoder call: sorted by length inside it, so batches pad little


@dataclass
class _Unit:
    """Up to CHUNKS_PER_WRITE chunks of one document and their sentences: what one write stores."""

    doc: Document
    chunks: list[Chunk]  # all of the document's chunks
    batch: list[Chunk]
    sents: list[tuple[Chunk, int, int, int]]  # (chunk, index in chunk, start, end)
    last: bool  # the document is whole once this is written

    def texts(self) -> list[str]:
        return [c.text for c in self.batch] + [self.doc.text[a:b] for _, _, a, b in self.sents]


def _units(plans: list[tuple[Document, list[Chunk]]]) -> list[_Unit]:
    units = []
    for doc, chunks in plans:
        for i in range(0, max(len(chunks), 1), CHUNKS_PER_WRITE):
            batch = chunks[i : i + CHUNKS_PER_WRITE]
            sents = [(c, j, a, b) for c in batch for j, (a, b) in enumerate(sentence_spans(doc.text, c.start, c.end))]
            units.append(_Unit(doc, chunks, batch, sents, last=i + CHUNKS_PER_WRITE >= len(chunks)))
    return units


def _groups(units: list[_Unit]) -> list[list[_Unit]]:
    """Consecutive units whose texts make one encoder call: bare `encode` speed needs calls of many texts (one
    short document's chunks and sentences in a call of their own would be padded to its longest chunk)."""
    groups: list[list[_Unit]] = []
    size = 0
    for unit in units:
        n = len(unit.batch) + len(unit.sents)
        if groups and size + n <= TEXTS_PER_ENCODE:
            groups[-1].append(unit)
            size += n
        else:
            groups.append([unit])
            size = n
    return groups


def _write(store: ChunkStore, embedder: Embedder, plans: list[tuple[Document, list[Chunk]]], fresh: set[str],
           progress: Progress | None) -> int:
    """Embed and store the planned documents; returns the number of chunks embedded.

    A new document is marked pending before its first chunk is written. A changed document's new chunks go in
    beside its old ones; once the new version is whole its record is written, and then the old chunks are deleted,
    so a kill between the two leaves chunks of no current version behind, which are never served.
    On an error, what got in of each unfinished document is taken out again; if that fails too, what is left is of
    no current version, so it is never served, and the next run sweeps it (`ChunkStore.sweep`).
    The writes go by encoder call, not by document: one write marks the call's new documents pending, one stores
    its chunks, one their sentences, one the records of the documents it finished (a Chroma server takes some
    25 ms a write, whatever its size, so a write per document made ingest into a server four times slower)."""
    total = sum(len(chunks) for _, chunks in plans)
    done = embedded = 0
    started: dict[str, _Unit] = {}
    try:
        for group in _groups(_units(plans)):
            vectors = embedder.embed([text for unit in group for text in unit.texts()])
            new = [started.setdefault(unit.doc.doc_id, unit) for unit in group if unit.doc.doc_id not in started]
            # no old version to keep answering from: marked half-written
            store.mark_pending([unit.doc.doc_id for unit in new if unit.doc.doc_id in fresh])
            chunk_rows, sent_rows = [], []
            offset = 0
            for unit in group:
                doc, n = unit.doc, len(unit.batch)
                chunk_rows += [(c.chunk_id, vectors[offset + i], c.text,
                                {"doc_id": doc.doc_id, "title": doc.title, "start": c.start, "end": c.end,
                                 "index": c.index, **_where(doc, c.start)}) for i, c in enumerate(unit.batch)]
                sent_rows += [(f"{c.chunk_id}::{j}", vectors[offset + n + i],
                               {"doc_id": doc.doc_id, "chunk_id": c.chunk_id, "start": a, "end": b, **_where(doc, a)})
                              for i, (c, j, a, b) in enumerate(unit.sents)]
                offset += n + len(unit.sents)
            if chunk_rows:
                ids, vecs, texts, metas = zip(*chunk_rows)
                store.add_chunks(ids=list(ids), vectors=np.stack(vecs), texts=list(texts), metas=list(metas))
            if sent_rows:
                ids, vecs, metas = zip(*sent_rows)
                store.add_sentences(ids=list(ids), vectors=np.stack(vecs), metas=list(metas))
            whole = [unit for unit in group if unit.last]
            # the new versions are whole: on record first, then the old ones' chunks go
            store.put_docs([DocRecord(doc_id=u.doc.doc_id, path=u.doc.path, title=u.doc.title, author=u.doc.author,
                                      date=u.doc.date, content_hash=u.doc.content_hash, n_chunks=len(u.chunks),
                                      ingested_at=time.time(), text=u.doc.text, pending=False,
                                      format=u.doc.format, pages=len(u.doc.pages or ())) for u in whole])
            for unit in group:
                done += len(unit.batch)
                if progress:
                    progress(done, total, unit.doc.doc_id)
            for unit in whole:
                doc = unit.doc
                embedded += len(unit.chunks)
                del started[doc.doc_id]
                if doc.doc_id in fresh:
                    continue  # no old version
                try:
                    store.delete_chunks(doc.doc_id, keep=[c.chunk_id for c in unit.chunks])
                except Exception as e:  # they are of an old version now: never served, swept by the next run
                    log.warning("%s: its old version's chunks could not be removed yet (%s)", doc.doc_id, e)
    except BaseException:
        for unit in started.values():
            _drop_partial(store, unit.doc, unit.chunks, unit.doc.doc_id in fresh)
        raise
    return embedded


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


def sync(folder: Path, store: ChunkStore, embedder: Embedder, progress: Progress | None = None, *,
         remove: bool = True, repoint: bool = False, rebuild: bool = False,
         known: KnownFiles | None = None) -> IngestReport:
    """Make the store's collection hold the chunks of the articles in `folder` (with `remove=False`: add and update
    only; nothing is deleted). A collection that mirrors another folder is refused unless `repoint`; `rebuild`
    embeds everything again from scratch. `known`: the files earlier syncs in this process loaded (see
    KnownFiles), which are not loaded again while unchanged."""
    t0 = time.perf_counter()
    report = IngestReport()
    where = str(Path(folder).expanduser().resolve())
    unreadable: set[str] = set()
    docs = load_folder(folder, report, unreadable, known)
    if known is not None:
        known.save()
    fingerprint, dim = _model_of(embedder)
    with store.writing():
        try:
            info = store.info()
            existing = store.doc_records()
        except RagError:
            raise
        except Exception as e:
            raise SetupError(f"cannot read the store at {store.location}: {e}") from None
        if info.folder and info.folder != where and not repoint:
            raise OtherFolder(f"collection {store.collection!r} mirrors {info.folder}, not {where}: ingest this folder "
                            "into a collection of its own (--collection NAME), or pass --repoint to make "
                            f"{store.collection!r} mirror it (its documents from the other folder are then removed)")
        changed_model = bool(existing) and bool(info.fingerprint) and (info.fingerprint, info.dim) != (fingerprint, dim)
        if changed_model and not remove and not rebuild:
            raise SetupError(f"collection {store.collection!r} was embedded with {info.fingerprint} ({info.dim} "
                             f"dimensions), not the current {fingerprint} ({dim}): run `rag ingest {where} "
                             f"--collection {store.collection}` to embed it again")
        excluded = set(info.excluded)
        docs = [d for d in docs if d.doc_id not in excluded]
        wrote = False
        try:
            if not changed_model and not rebuild and store.sweep(existing):
                wrote = True
            if changed_model or rebuild:
                if changed_model:
                    log.warning("collection %r was embedded with %s; embedding all of it again with %s",
                                store.collection, info.fingerprint, fingerprint)
                store.reset()
                existing, report.reembedded, wrote = {}, True, True
            todo: list[Document] = []
            failed: set[str] = set()  # files unchanged since they were loaded that cannot be read now
            for doc in docs:
                rec = existing.get(doc.doc_id)
                if rec is not None and not rec.pending and rec.content_hash == doc.content_hash:
                    report.unchanged.append(doc.doc_id)
                    continue
                if isinstance(doc, Seen):  # unchanged on disk, but not what the store holds: read it after all
                    loaded = _load(doc.path, report, unreadable, None)
                    if loaded is None:
                        failed.add(doc.doc_id)
                        continue
                    doc = loaded
                (report.changed if rec is not None and not rec.pending else report.added).append(doc.doc_id)
                todo.append(doc)
            wanted = {d.doc_id for d in docs} - failed
            report.kept = sorted((set(existing) & unreadable) - wanted)
            for doc_id in report.kept:
                log.warning("%s: its file cannot be read now; its last good version stays in the index", doc_id)
            gone = sorted(set(existing) - wanted - set(report.kept)) if remove else []
            for doc_id in gone:
                wrote = True
                store.delete_doc(doc_id)
                report.removed.append(doc_id)
            plans = [(doc, chunk_document(doc)) for doc in todo]
            wrote = wrote or bool(plans)
            report.chunks_embedded = _write(store, embedder, plans, set(report.added), progress)
        except RagError:
            raise
        except Exception as e:
            err = _store_error(store, e)
            if err is e:
                raise
            raise err from None
        finally:
            if wrote or (info.folder, info.fingerprint, info.dim) != (where, fingerprint, dim):
                try:  # readers in other processes see the new generation and rebuild their index
                    store.record(folder=where, fingerprint=fingerprint, dim=dim, ingested_at=time.time())
                except Exception as e:  # the store refused the write above too: the error that says why is raised
                    log.warning("could not record the ingest in the store's registry (%s)", e)
    report.seconds = time.perf_counter() - t0
    return report


def _model_of(embedder: Embedder) -> tuple[str, int]:
    """The embedding model's fingerprint and dimension (an embedder without them is known by its name)."""
    fingerprint = getattr(embedder, "fingerprint", None)
    return (fingerprint() if callable(fingerprint) else embedder.name), int(getattr(embedder, "dim", 0) or 0)


def _store_error(store: ChunkStore, e: Exception) -> Exception:
    """A failed write as an error that names its cause and what to do; an error of unknown cause is returned as it
    is (a bug must not read as a full disk)."""
    text = f"{e.__class__.__name__}: {e}"
    low = str(e).lower()
    at = f"writing to the store at {store.location} failed ({text})"
    code = e.errno if isinstance(e, OSError) else None
    if code in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in low or "no space left" in low:
        return SetupError(f"{at}: free disk space, then run `rag ingest` again (the old index still answers)")
    if (code in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(e, PermissionError)
            or "readonly database" in low or "read-only" in low or "permission denied" in low):
        return SetupError(f"{at}: fix permissions on the store folder, then run `rag ingest` again "
                          "(the old index still answers)")
    if "database is locked" in low or "database is busy" in low:
        return SetupError(f"{at}: another program holds the store's database; close it (or wait), then run "
                          "`rag ingest` again")
    if "dimension" in low:
        return SetupError(f"{at}: the collection holds vectors of another size than this embedding model makes; "
                          f"run `rag ingest --rebuild --collection {store.collection}` to embed it again")
    return e
