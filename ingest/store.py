"""The chunk store: Chroma, local (a folder) or remote (`http://host:port`), always with our own embeddings.

Three collections per embedder: `chunks_<embedder>` holds chunk texts, vectors (cosine space) and metadata;
`sents_<embedder>` the vector and offsets of every sentence in a chunk, so that a question can be answered from
the few sentences it needs rather than whole chunks;
`docs_<embedder>` holds one record per document (its full text, title, hash, chunk count). Chunk ids carry the
document's content hash, so a changed document's new chunks are written beside the old ones, which are dropped
only when all the new ones are in; a write that fails (a full disk) leaves the old version answering. A new
document's record is marked `pending` before its chunks are written and completed after them, so a store that an
interrupted ingest left behind is recognised and repaired by the next run. Chroma telemetry is off and Chroma's
default embedding function (which downloads a model) is never used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ingest.errors import SetupError, UserError

log = logging.getLogger(__name__)

# The docs collection needs a vector per record; documents are never searched by vector.
_DOC_VECTOR = [1.0]


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
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as e:
        raise SetupError(f"cannot open the store at {path} ({e}): check the folder exists and is writable, "
                         "or pass another with --store") from None


class ChunkStore:
    """Upsert, query and delete chunks and document records in Chroma."""

    def __init__(self, location: str, embedder_name: str) -> None:
        self.location = location
        client = _client(location)
        self._chunks = client.get_or_create_collection(
            f"chunks_{embedder_name}", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        self._sents = client.get_or_create_collection(
            f"sents_{embedder_name}", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        self._docs = client.get_or_create_collection(f"docs_{embedder_name}", embedding_function=None)

    # --- documents -------------------------------------------------------------------------------------------
    def doc_records(self, with_text: bool = False) -> dict[str, DocRecord]:
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        got = self._docs.get(include=include)
        texts = got.get("documents") or [""] * len(got["ids"])
        out = {}
        for doc_id, meta, text in zip(got["ids"], got["metadatas"], texts):
            out[doc_id] = DocRecord(
                doc_id=doc_id, path=meta.get("path", ""), title=meta.get("title", doc_id),
                author=meta.get("author", ""), date=meta.get("date", ""), content_hash=meta.get("hash", ""),
                n_chunks=int(meta.get("n_chunks", 0)), ingested_at=float(meta.get("ingested_at", 0.0)),
                text=text or "", pending=bool(meta.get("pending", False)),
            )
        return out

    def mark_pending(self, doc_id: str) -> None:
        self._docs.upsert(ids=[doc_id], embeddings=[_DOC_VECTOR], documents=[""], metadatas=[{"pending": True}])

    def put_doc(self, record: DocRecord) -> None:
        meta = {"path": record.path, "title": record.title, "author": record.author, "date": record.date,
                "hash": record.content_hash, "n_chunks": record.n_chunks, "ingested_at": record.ingested_at,
                "pending": False}
        self._docs.upsert(ids=[record.doc_id], embeddings=[_DOC_VECTOR], documents=[record.text], metadatas=[meta])

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

    def query(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the k nearest chunks."""
        n = self.count()
        if n == 0:
            return []
        got = self._chunks.query(query_embeddings=[vector.tolist()], n_results=min(k, n), include=["distances"])
        return [(cid, 1.0 - float(d)) for cid, d in zip(got["ids"][0], got["distances"][0])]

    def query_sentences(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the chunks holding the k sentences nearest the vector, best first."""
        n = self._sents.count()
        if n == 0:
            return []
        got = self._sents.query(query_embeddings=[vector.tolist()], n_results=min(k, n),
                                include=["metadatas", "distances"])
        return [(m["chunk_id"], 1.0 - float(d)) for m, d in zip(got["metadatas"][0], got["distances"][0])]

    def all_chunks(self, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        """Every chunk's id, text and metadata (for the lexical index), read in pages."""
        ids: list[str] = []
        texts: list[str] = []
        metas: list[dict] = []
        offset = 0
        while True:
            got = self._chunks.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if not got["ids"]:
                break
            ids += got["ids"]
            texts += got["documents"]
            metas += got["metadatas"]
            offset += len(got["ids"])
        return ids, texts, metas

    def count(self) -> int:
        return self._chunks.count()
