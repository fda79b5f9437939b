"""The chunk store: Chroma, local (a folder) or remote (`http://host:port`), always with our own embeddings.

One store holds named collections, each mirroring one folder. Per collection and embedder, three Chroma
collections: `chunks_<embedder>[__<name>]` holds chunk texts, vectors (cosine space) and metadata;
`sents_<embedder>[__<name>]` the vector and offsets of every sentence in a chunk, so that a question can be
answered from the few sentences it needs rather than whole chunks; `docs_<embedder>[__<name>]` one record per
document (its full text, title, hash, chunk count). The default collection has no suffix. A registry
(`collections_<embedder>`) records, per collection, the folder it mirrors, the embedding model's fingerprint and
dimension, the last ingest and a generation number that every write bumps, so that a reader in another process
knows its in-memory index is stale.

Chunk ids carry the document's content hash, so a changed document's new chunks are written beside the old ones,
which are dropped only when all the new ones are in; a write that fails (a full disk) leaves the old version
answering. A new document's record is marked `pending` before its chunks are written and completed after them;
`is_current` tells a reader which chunks belong to a whole, current version, so neither a pending document's nor
an old version's chunks are ever served, even when the cleanup after a failed write failed too.
Writers take a file lock (`writing()`): for a local store it sits in the store folder; for a server it is a file
on this machine, so it serialises the writers of one machine only (Chroma itself has no lock to offer).
Chroma telemetry is off and Chroma's default embedding function (which downloads a model) is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ingest.errors import SetupError, UserError

log = logging.getLogger(__name__)

# The docs collection needs a vector per record; documents are never searched by vector.
_DOC_VECTOR = [1.0]
DEFAULT_COLLECTION = "default"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
# How many candidates Chroma's HNSW looks at per search (its default is 100). On clustered vectors like MiniLM's,
# recall@10 against exact search at 200k synthetic chunks on `chroma run` went 0.916 -> 0.990 at 400 (p50 4.0 -> 4.7
# ms), and at 1M chunks the default gave 0.735-0.776 (`rag bench --only server`). It is fixed when a collection is
# made: Chroma's local engine ignores a later `modify`, so a store made before keeps the one it was made with.
EF_SEARCH = 800
LOCK_WAIT_S = 600.0  # how long a writer waits for another one before it gives up and says which file to check


def check_collection_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError(f"collection name {name!r} is not allowed: use 1-48 lowercase letters, digits, '-' or '_', "
                        "starting with a letter or digit")
    return name


def collection_slug(folder: Path | str) -> str:
    """A collection name from a folder's name ("My News" -> "my-news")."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", Path(folder).name.lower()).strip("-_")[:48]
    return slug if slug and slug[0].isalnum() else DEFAULT_COLLECTION


def is_current(chunk_id: str, record: DocRecord | None) -> bool:
    """Does this chunk belong to its document's whole, current version (not pending, not an old version)?"""
    if record is None or record.pending:
        return False
    parts = chunk_id.rsplit("::", 2)
    return len(parts) == 2 or parts[1] == record.content_hash[:12]


@dataclass(frozen=True)
class CollectionInfo:
    """What the registry keeps of a collection; n_docs and n_chunks are counted when it is read."""

    name: str
    folder: str  # the folder it mirrors ("" until the first ingest)
    fingerprint: str  # the embedding model's, when it was embedded
    dim: int
    generation: int  # bumped by every write
    ingested_at: float
    excluded: tuple[str, ...] = ()  # documents removed by hand: ingest leaves them out while the file stays
    n_docs: int = 0
    n_chunks: int = 0


@dataclass(frozen=True)
class DocRecord:
    doc_id: str
    path: str
    title: str
    author: str
    date: str
    content_hash: str
    n_chunks: int
    ingested_at: float
    text: str
    pending: bool
    format: str = ""  # txt, md, html, pdf, docx, epub
    pages: int = 0  # a PDF's page count (0 for other formats)


def _client(location: str):
    """A Chroma client for a folder or a server URL. For a server, RAG_STORE_TOKEN (when set) is sent as Chroma's
    token auth (`Authorization: Bearer <token>`; CHROMA_AUTH_TOKEN_TRANSPORT_HEADER=X-Chroma-Token for the other
    header). It is read here, not in Settings, so that a secret is never part of the settings that are shown."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from chromadb.errors import ChromaAuthError

    settings = ChromaSettings(anonymized_telemetry=False)
    if location.startswith(("http://", "https://")):
        url = urlparse(location)
        if not url.hostname:
            raise UserError(f"store URL {location!r} has no host: use http://HOST:PORT")
        token = os.environ.get("RAG_STORE_TOKEN", "")
        if token:
            settings = ChromaSettings(anonymized_telemetry=False, chroma_client_auth_credentials=token,
                                      chroma_client_auth_provider="chromadb.auth.token_authn.TokenAuthClientProvider")
        try:
            client = chromadb.HttpClient(host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https",
                                         settings=settings)
            client.heartbeat()
        except ChromaAuthError as e:
            said = "refused the token in RAG_STORE_TOKEN" if token else "needs a token"
            raise SetupError(f"the Chroma server at {location} {said} ({e}): set RAG_STORE_TOKEN to the token it was "
                             "started with (CHROMA_SERVER_AUTHN_CREDENTIALS)") from None
        except Exception as e:  # chromadb raises several types for a host that is down
            raise SetupError(f"cannot reach the Chroma server at {location} ({e.__class__.__name__}): "
                             "start it with `chroma run --path DIR --host HOST --port PORT`") from None
        return client
    path = Path(location).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return _open_local(path, settings)
    except Exception as e:
        raise SetupError(f"cannot open the store at {path} ({e}): check the folder exists and is writable, "
                         "or pass another with --store") from None


def _among(documents: list[str] | None) -> dict | None:
    """Chroma's `where` for chunks or sentences of these documents (None: all of them)."""
    if documents is None:
        return None
    return {"doc_id": documents[0]} if len(documents) == 1 else {"doc_id": {"$in": list(documents)}}


def _suffix(collection: str) -> str:
    return "" if collection == DEFAULT_COLLECTION else f"__{collection}"


def _info(name: str, meta: dict) -> CollectionInfo:
    return CollectionInfo(name=name, folder=meta.get("folder", ""), fingerprint=meta.get("fingerprint", ""),
                          dim=int(meta.get("dim", 0)), generation=int(meta.get("generation", 0)),
                          ingested_at=float(meta.get("ingested_at", 0.0)),
                          excluded=tuple(json.loads(meta.get("excluded", "[]"))))


def list_collections(location: str, embedder_name: str) -> list[CollectionInfo]:
    """Every collection of this embedder in the store, with its document and chunk counts, by name."""
    client = _client(location)
    names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    registry = client.get_or_create_collection(f"collections_{embedder_name}", embedding_function=None)
    got = registry.get(include=["metadatas"])
    known = {n: _info(n, m or {}) for n, m in zip(got["ids"], got["metadatas"])}
    prefix = f"docs_{embedder_name}"
    for n in names:  # a store made before the registry: its default collection has no record yet
        if n == prefix and DEFAULT_COLLECTION not in known:
            known[DEFAULT_COLLECTION] = _info(DEFAULT_COLLECTION, {})
    out = []
    for name, info in sorted(known.items()):
        suffix = _suffix(name)
        if f"docs_{embedder_name}{suffix}" not in names:
            continue
        docs = client.get_collection(f"docs_{embedder_name}{suffix}", embedding_function=None).count()
        chunks = client.get_collection(f"chunks_{embedder_name}{suffix}", embedding_function=None).count()
        out.append(CollectionInfo(**{**info.__dict__, "n_docs": docs, "n_chunks": chunks}))
    return out


def _open_local(path: Path, settings):
    """A persistent client; two processes creating one store at once race in Chroma's schema set-up, so opening
    holds a lock of its own (not the writer lock: a reader must not wait for a long ingest)."""
    import chromadb
    from filelock import FileLock

    lock = FileLock(str(path / "rag-open.lock"), timeout=LOCK_WAIT_S)
    try:
        lock.acquire()
    except OSError:  # a read-only store: Chroma will say so itself
        return chromadb.PersistentClient(path=str(path), settings=settings)
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    finally:
        lock.release()


class ChunkStore:
    """Upsert, query and delete the chunks and document records of one collection in Chroma."""

    def __init__(self, location: str, embedder_name: str, collection: str = DEFAULT_COLLECTION) -> None:
        self.location = location
        self.collection = check_collection_name(collection)
        self._embedder_name = embedder_name
        self._client = _client(location)
        self._open()
        self._seen = self.generation()
        self._reopen = False  # a write failed for want of permission: the next one opens the database again
        self.wrote = False  # this process changed the collection (a `rag ask` that did exits the usual way)

    def refresh(self, reopen: bool = False) -> bool:
        """Catch up with writes made by other processes since this store was opened or last refreshed: a local
        Chroma client keeps its vector indexes in memory and does not see them. True when it reopened (`reopen`:
        open the database again in any case)."""
        generation = self.generation()
        if generation == self._seen and not reopen:
            return False
        if not self.location.startswith(("http://", "https://")):
            from chromadb.api.client import SharedSystemClient

            SharedSystemClient.clear_system_cache()  # the next client loads the indexes from disk again
            self._client = _client(self.location)
            self._open()
        self._seen, self._reopen = self.generation(), False
        return True

    def _open(self) -> None:
        suffix, emb = _suffix(self.collection), self._embedder_name
        cosine = {"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}}
        self._chunks = self._collection(f"chunks_{emb}{suffix}", cosine)
        self._sents = self._collection(f"sents_{emb}{suffix}", cosine)
        self._docs = self._collection(f"docs_{emb}{suffix}")
        self._registry = self._collection(f"collections_{emb}")

    def _collection(self, name: str, configuration: dict | None = None):
        """Open a collection, creating it only when it is missing: Chroma's get-or-create always writes to the
        database, so a store that may only be read could not even be opened for answering."""
        from chromadb.errors import NotFoundError

        try:
            return self._client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            return self._client.get_or_create_collection(name, configuration=configuration, embedding_function=None)

    # --- the registry ----------------------------------------------------------------------------------------
    def info(self) -> CollectionInfo:
        """The registry's record of this collection (empty fields before its first ingest)."""
        got = self._registry.get(ids=[self.collection], include=["metadatas"])
        return _info(self.collection, (got["metadatas"] or [{}])[0] or {})

    def generation(self) -> int:
        """Bumped by every write: a reader whose index was built at another generation rebuilds it."""
        return self.info().generation

    def record(self, **fields) -> CollectionInfo:
        """Update this collection's registry record (folder, fingerprint, dim, excluded); bumps the generation.
        Call it while holding `writing()`."""
        info = self.info()
        meta: dict = {"folder": info.folder, "fingerprint": info.fingerprint, "dim": info.dim,
                "generation": info.generation + 1, "ingested_at": info.ingested_at,
                "excluded": json.dumps(list(info.excluded))}
        if "excluded" in fields:
            fields["excluded"] = json.dumps(sorted(set(fields["excluded"])))
        meta.update(fields)
        self._registry.upsert(ids=[self.collection], embeddings=[_DOC_VECTOR], documents=[""], metadatas=[meta])
        self._seen = info.generation + 1
        return self.info()

    def reset(self) -> None:
        """Drop this collection's chunks, sentences and records (a new embedding model: everything is re-embedded).
        Call it while holding `writing()`."""
        self._delete_collections()
        self._open()

    def drop(self) -> None:
        """Delete this collection: its chunks, records and registry entry. Call it while holding `writing()`."""
        self._delete_collections()
        self._registry.delete(ids=[self.collection])

    def _delete_collections(self) -> None:
        suffix, emb = _suffix(self.collection), self._embedder_name
        names = {c if isinstance(c, str) else c.name for c in self._client.list_collections()}
        for kind in ("chunks", "sents", "docs"):
            if f"{kind}_{emb}{suffix}" in names:
                self._client.delete_collection(f"{kind}_{emb}{suffix}")

    def lock_path(self) -> Path:
        if self.location.startswith(("http://", "https://")):
            tag = hashlib.sha256(self.location.encode()).hexdigest()[:16]
            return Path(tempfile.gettempdir()) / f"rag-store-{tag}.lock"
        return Path(self.location).expanduser() / "rag-writer.lock"

    @contextmanager
    def writing(self, wait: float = LOCK_WAIT_S):
        """Hold the store's writer lock: one writer at a time, in any process of this machine."""
        from filelock import FileLock, Timeout

        path = self.lock_path()
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0.05)
        except Timeout:
            log.warning("another process is writing to the store (lock %s); waiting for it", path)
            t0 = time.monotonic()
            try:
                lock.acquire(timeout=max(0.0, wait - (time.monotonic() - t0)))
            except Timeout:
                raise SetupError(f"another process has been writing to the store for over {wait:.0f}s (lock "
                                 f"{path}): wait for it, or delete that file if no `rag ingest` or UI is "
                                 "running") from None
        except OSError as e:  # a read-only store folder (Timeout, an OSError too, is caught above)
            self._reopen = True
            raise SetupError(f"writing to the store at {self.location} failed (cannot create the lock {path}: "
                             f"{e.strerror}): fix permissions on the store folder, then run `rag ingest` again "
                             "(the old index still answers)") from None
        try:
            # Another process wrote since: write on top of what it wrote, not of a stale view. After a failure for
            # want of permission, open the database again: SQLite opens a file it may not write read-only, and a
            # connection Chroma opened while the folder was read-only stays so after the folder is fixed.
            self.refresh(reopen=self._reopen)
            before = self.generation()
            yield
            self.wrote = self.wrote or self.generation() != before  # every write ends by bumping it (record)
        except Exception as e:
            self.wrote = True  # a write may have failed half-way
            text = str(e).lower()
            if isinstance(e, PermissionError) or "readonly" in text or "read-only" in text or "permission" in text:
                self._reopen = True
            raise
        finally:
            lock.release()

    # --- documents -------------------------------------------------------------------------------------------
    def doc_records(self, with_text: bool = False, doc_ids: list[str] | None = None) -> dict[str, DocRecord]:
        """Every document's record, or these documents' (an id with no record is left out)."""
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        if doc_ids is not None and not doc_ids:
            return {}
        got = self._docs.get(include=include) if doc_ids is None else self._docs.get(ids=list(doc_ids),
                                                                                       include=include)
        texts = got.get("documents") or [""] * len(got["ids"])
        out = {}
        for doc_id, meta, text in zip(got["ids"], got["metadatas"], texts):
            out[doc_id] = DocRecord(
                doc_id=doc_id, path=meta.get("path", ""), title=meta.get("title", doc_id),
                author=meta.get("author", ""), date=meta.get("date", ""), content_hash=meta.get("hash", ""),
                n_chunks=int(meta.get("n_chunks", 0)), ingested_at=float(meta.get("ingested_at", 0.0)),
                text=text or "", pending=bool(meta.get("pending", False)), format=meta.get("format", ""),
                pages=int(meta.get("pages", 0)),
            )
        return out

    def mark_pending(self, doc_ids: list[str]) -> None:
        """Record these new documents as half-written (one write; none: no write)."""
        if doc_ids:
            self._docs.upsert(ids=list(doc_ids), embeddings=[_DOC_VECTOR] * len(doc_ids), documents=[""] * len(doc_ids),
                              metadatas=[{"pending": True} for _ in doc_ids])

    def put_docs(self, records: list[DocRecord]) -> None:
        """Write these documents' records (one write; none: no write)."""
        if not records:
            return
        metas = [{"path": r.path, "title": r.title, "author": r.author, "date": r.date, "hash": r.content_hash,
                  "n_chunks": r.n_chunks, "ingested_at": r.ingested_at, "pending": False, "format": r.format,
                  "pages": r.pages} for r in records]
        self._docs.upsert(ids=[r.doc_id for r in records], embeddings=[_DOC_VECTOR] * len(records),
                          documents=[r.text for r in records], metadatas=metas)

    def delete_doc(self, doc_id: str) -> None:
        """Remove a document's chunks, then its record (the record goes last: see the module docstring)."""
        self.delete_chunks(doc_id)
        self._docs.delete(ids=[doc_id])

    def delete_chunks(self, doc_id: str, keep: list[str] | None = None) -> None:
        """Remove a document's chunks and their sentences, except the chunks whose ids are in `keep`."""
        if not keep:
            self._sents.delete(where={"doc_id": doc_id})
            self._chunks.delete(where={"doc_id": doc_id})
            return
        self.delete_ids(sorted(set(self._chunks.get(where={"doc_id": doc_id}, include=[])["ids"]) - set(keep)))

    def delete_ids(self, chunk_ids: list[str]) -> None:
        """Remove these chunks and their sentences (ids that are not there are ignored)."""
        if chunk_ids:
            self._sents.delete(where={"chunk_id": {"$in": list(chunk_ids)}})
            self._chunks.delete(ids=list(chunk_ids))

    def sweep(self, records: dict[str, DocRecord]) -> int:
        """Delete the chunks of no current version (a cleanup that failed, a kill between two writes); cheap when
        there are none: the chunk count is compared with the records' first. Returns how many went."""
        if self.count() == sum(r.n_chunks for r in records.values() if not r.pending):
            return 0
        ids: list[str] = []
        offset = 0
        while True:
            got = self._chunks.get(include=["metadatas"], limit=5000, offset=offset)
            if not got["ids"]:
                break
            ids += [cid for cid, m in zip(got["ids"], got["metadatas"])
                    if not is_current(cid, records.get(m["doc_id"]))]
            offset += len(got["ids"])
        self.delete_ids(ids)
        for doc_id, rec in records.items():
            if rec.pending:  # a new document whose ingest never finished: its record goes too
                self._docs.delete(ids=[doc_id])
        return len(ids)

    # --- chunks ----------------------------------------------------------------------------------------------
    def add_chunks(self, ids: list[str], vectors: np.ndarray, texts: list[str], metas: list[dict]) -> None:
        self._chunks.upsert(ids=ids, embeddings=vectors.tolist(), documents=texts, metadatas=metas)

    def add_sentences(self, ids: list[str], vectors: np.ndarray, metas: list[dict]) -> None:
        self._sents.upsert(ids=ids, embeddings=vectors.tolist(), metadatas=metas)

    def sentences_of(self, chunk_ids: list[str]) -> tuple[list[dict], np.ndarray]:
        """Metadata (chunk_id, doc_id, start, end) and vectors of every sentence in these chunks."""
        if not chunk_ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        got = self._sents.get(where={"chunk_id": {"$in": list(chunk_ids)}}, include=["metadatas", "embeddings"])
        return got["metadatas"], np.asarray(got["embeddings"], dtype=np.float32)

    def query(self, vector: np.ndarray, k: int, documents: list[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest chunks (of these documents, when given)."""
        n = self.count()
        if n == 0 or documents is not None and not documents:
            return []
        got = self._chunks.query(query_embeddings=[vector.tolist()], n_results=min(k, n), include=["distances"],
                                 where=_among(documents))
        return [(cid, 1.0 - float(d)) for cid, d in zip(got["ids"][0], got["distances"][0])]

    def query_sentences(self, vector: np.ndarray, k: int,
                        documents: list[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the chunks holding the k sentences nearest the vector, best first."""
        n = self._sents.count()
        if n == 0 or documents is not None and not documents:
            return []
        got = self._sents.query(query_embeddings=[vector.tolist()], n_results=min(k, n),
                                include=["metadatas", "distances"], where=_among(documents))
        return [(m["chunk_id"], 1.0 - float(d)) for m, d in zip(got["metadatas"][0], got["distances"][0])]

    def texts_of(self, chunk_ids: list[str]) -> dict[str, str]:
        """chunk id -> text, of those of these chunks the store holds (a chunk deleted meanwhile is left out)."""
        if not chunk_ids:
            return {}
        got = self._chunks.get(ids=list(dict.fromkeys(chunk_ids)), include=["documents"])
        return {cid: text for cid, text in zip(got["ids"], got["documents"]) if text is not None}

    def all_chunks(self, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        """Every chunk's id, text and metadata (for the lexical index), read in pages."""
        return self.chunks_of(None, page)

    def chunks_of(self, documents: list[str] | None, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        """The id, text and metadata of these documents' chunks (None: every chunk), read in pages; all versions
        that are stored (`is_current` tells which to serve)."""
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict] = []
        if documents is not None and not documents:
            return ids, texts, metas
        offset = 0
        while True:
            got = self._chunks.get(include=["documents", "metadatas"], where=_among(documents), limit=page,
                                   offset=offset)
            if not got["ids"]:
                break
            ids += got["ids"]
            texts += got["documents"]
            metas += got["metadatas"]
            offset += len(got["ids"])
        return ids, texts, metas

    def count(self) -> int:
        return self._chunks.count()

    def sentence_count(self) -> int:
        return self._sents.count()

    def vectors(self, kind: str = "chunks", page: int = 5000) -> tuple[list[str], np.ndarray]:
        """Every id and vector of the chunks (or, kind "sents", the sentences), read in pages: what `rag bench`
        compares Chroma's search with, by exact search over the same vectors."""
        col = {"chunks": self._chunks, "sents": self._sents}[kind]
        ids: list[str] = []
        vecs = []
        while True:
            got = col.get(include=["embeddings"], limit=page, offset=len(ids))
            if not got["ids"]:
                break
            ids += got["ids"]
            vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
        return ids, np.concatenate(vecs) if vecs else np.zeros((0, 0), dtype=np.float32)
