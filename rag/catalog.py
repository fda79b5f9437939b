"""Compact in-memory tables the retriever keeps per chunk and per document (issue 15: a 1M-chunk collection must be
served under 2.5 GB).

`WordSet` is every word of every document, for `Retriever.knows`: words are interned to ids once, each document
holds a numpy array of its word ids, and the counts are numpy arrays, instead of a Python set of strings per
document and Counters keyed by string. Left out: anything that needs the words in order or their frequencies (BM25
has its own index, rag/lexical.py).

`ChunkCatalog` is the metadata of the chunks served, in columns (numpy arrays; titles, sections and document ids
interned into one string table) instead of a dict per chunk; it reads as a mapping of chunk id to the metadata dict
the store returned, built on demand. Left out: the chunks' texts, which stay in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

PREFIX = 4  # a word of PREFIX + 1 letters or more is known when a known word starts with the same PREFIX letters


def packed(arrays: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A dict of 1-d arrays as (keys, the arrays end to end, where each ends), for pickling: one array instead
    of one per key is smaller on disk and quicker to read. `unpacked` turns it back."""
    ends = np.cumsum([len(a) for a in arrays.values()], dtype=np.int64)
    first = next(iter(arrays.values()), np.zeros(0, dtype=np.int32))
    flat = np.concatenate(list(arrays.values())) if arrays else first
    return list(arrays), flat.astype(first.dtype, copy=False), ends


def unpacked(keys: list[str], flat: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
    """The dict `packed` was given; its arrays are views of `flat`, which they keep alive until they are replaced."""
    return dict(zip(keys, np.split(flat, ends[:-1]))) if keys else {}


def _grown(a: np.ndarray, size: int, fill: int = 0) -> np.ndarray:
    """`a` with room for `size` entries (doubling, so that interning word by word stays linear)."""
    if size <= len(a):
        return a
    out = np.full(max(size, 2 * len(a), 16), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


class WordSet:
    """The words of a collection's documents and their PREFIX-letter prefixes, counted per document: a word is
    known while some document has it, and goes with the last document that has it."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}  # word -> word id; a word keeps its id after its last document goes
        self._prefix_ids: dict[str, int] = {}
        self._docs = np.zeros(0, dtype=np.int32)  # per word id: how many documents have it
        self._prefix_of = np.zeros(0, dtype=np.int32)  # per word id: its prefix's id (-1: shorter than PREFIX)
        self._prefix_words = np.zeros(0, dtype=np.int32)  # per prefix id: how many known words start with it
        self._doc_words: dict[str, np.ndarray] = {}  # document -> the ids of its words (int32, each once)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_doc_words": packed(self._doc_words)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "_doc_words": unpacked(*state["_doc_words"])})

    def learn(self, doc_id: str, words: Iterable[str]) -> None:
        """These are the document's words (what it had before is forgotten)."""
        self.forget(doc_id)
        ids = np.fromiter((self._id(w) for w in dict.fromkeys(words)), dtype=np.int32)
        self._doc_words[doc_id] = ids
        self._docs[ids] += 1  # each id once: a plain fancy-index add is exact
        new = ids[self._docs[ids] == 1]
        prefixes = self._prefix_of[new]
        np.add.at(self._prefix_words, prefixes[prefixes >= 0], 1)

    def forget(self, doc_id: str) -> None:
        """The document's words no longer count (a document not held is ignored)."""
        ids = self._doc_words.pop(doc_id, None)
        if ids is None:
            return
        self._docs[ids] -= 1
        dead = ids[self._docs[ids] == 0]
        prefixes = self._prefix_of[dead]
        np.subtract.at(self._prefix_words, prefixes[prefixes >= 0], 1)

    def knows(self, word: str) -> bool:
        """Does a document have this word, or (for a word longer than PREFIX) one that starts the same?"""
        i = self._ids.get(word)
        if i is not None and self._docs[i] > 0:
            return True
        p = self._prefix_ids.get(word[:PREFIX]) if len(word) > PREFIX else None
        return p is not None and bool(self._prefix_words[p] > 0)

    def words(self) -> set[str]:
        """Every word some document has."""
        return {w for w, i in self._ids.items() if self._docs[i] > 0}

    def prefixes(self) -> set[str]:
        """The prefixes of those words (of the ones at least PREFIX letters long)."""
        return {p for p, i in self._prefix_ids.items() if self._prefix_words[i] > 0}

    def documents(self) -> set[str]:
        return set(self._doc_words)

    def _id(self, word: str) -> int:
        i = self._ids.get(word)
        if i is None:
            i = self._ids[word] = len(self._ids)
            self._docs = _grown(self._docs, i + 1)
            self._prefix_of = _grown(self._prefix_of, i + 1, fill=-1)
            if len(word) >= PREFIX:
                p = self._prefix_ids.setdefault(word[:PREFIX], len(self._prefix_ids))
                self._prefix_words = _grown(self._prefix_words, p + 1)
                self._prefix_of[i] = p
        return i


# The keys of chunk metadata (ingest/pipeline.py) that get a column: ints and interned strings. Another key, or a
# value of another type, is kept as it is in a per-chunk dict of extras (there are none in what ingest writes).
INT_KEYS = ("start", "end", "index", "page")
STR_KEYS = ("doc_id", "title", "section")
_NO_INT = np.iinfo(np.int64).min  # the chunk has no such key (or its value is held among the extras)
_NO_STR = -1


class ChunkCatalog(Mapping[str, dict]):
    """Chunk id -> metadata of the chunks served, grouped by document: `put` a document's chunks, `remove` it.
    `catalog[cid]` is a new dict equal to the one stored; `doc_id`, `start` and `value` read one field without
    building it."""

    def __init__(self) -> None:
        self._row: dict[str, int] = {}  # chunk id -> row
        self._ints = np.full((0, len(INT_KEYS)), _NO_INT, dtype=np.int64)
        self._strs = np.full((0, len(STR_KEYS)), _NO_STR, dtype=np.int32)
        self._strings: list[str] = []  # string id -> string; kept while unused (titles rarely change)
        self._string_ids: dict[str, int] = {}
        self._extras: dict[int, dict] = {}  # row -> the keys the columns cannot hold
        self._free: list[int] = []
        self._doc_rows: dict[str, np.ndarray] = {}  # document -> its chunks' rows, in the order put (int32)
        self._row_chunk: list[str | None] = []  # row -> chunk id (None: a free row)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_doc_rows": packed(self._doc_rows)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "_doc_rows": unpacked(*state["_doc_rows"])})

    # --- Mapping --------------------------------------------------------------------------------------------
    def __getitem__(self, chunk_id: str) -> dict:
        row = self._row[chunk_id]
        meta: dict = {}
        for key, s in zip(STR_KEYS, self._strs[row].tolist()):
            if s != _NO_STR:
                meta[key] = self._strings[s]
        for key, v in zip(INT_KEYS, self._ints[row].tolist()):
            if v != _NO_INT:
                meta[key] = v
        meta.update(self._extras.get(row, {}))
        return meta

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._row

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    # --- one field ------------------------------------------------------------------------------------------
    def value(self, chunk_id: str, key: str, default=None):
        """`self[chunk_id].get(key, default)`, without building the dict."""
        row = self._row[chunk_id]
        if key in STR_KEYS:
            s = int(self._strs[row, STR_KEYS.index(key)])
            if s != _NO_STR:
                return self._strings[s]
        elif key in INT_KEYS:
            v = int(self._ints[row, INT_KEYS.index(key)])
            if v != _NO_INT:
                return v
        return self._extras.get(row, {}).get(key, default)

    def doc_id(self, chunk_id: str):
        """`self[chunk_id]["doc_id"]` (KeyError for a chunk not held, or one without a doc_id)."""
        got = self.value(chunk_id, "doc_id", KeyError)
        if got is KeyError:
            raise KeyError(f"{chunk_id}: doc_id")
        return got

    def start(self, chunk_id: str) -> int:
        """`self[chunk_id]["start"]`."""
        got = self.value(chunk_id, "start", KeyError)
        if got is KeyError:
            raise KeyError(f"{chunk_id}: start")
        return got

    def documents(self) -> set[str]:
        return set(self._doc_rows)

    def chunk_ids(self, doc_id: str) -> list[str]:
        """The document's chunks, in the order they were put."""
        rows = self._doc_rows.get(doc_id)
        return [] if rows is None else [str(self._row_chunk[r]) for r in rows.tolist()]

    # --- changes --------------------------------------------------------------------------------------------
    def put(self, doc_id: str, chunk_ids: list[str], metas: list[dict]) -> None:
        """These are the document's chunks (what it had before goes); no chunks: the document is not held."""
        self.remove(doc_id)
        if not chunk_ids:
            return
        rows = np.fromiter((self._put_row(cid, meta) for cid, meta in zip(chunk_ids, metas, strict=True)),
                           dtype=np.int32)
        self._doc_rows[doc_id] = rows

    def remove(self, doc_id: str) -> None:
        """Take the document's chunks out (a document not held is ignored)."""
        rows = self._doc_rows.pop(doc_id, None)
        if rows is None:
            return
        for row in rows.tolist():
            del self._row[str(self._row_chunk[row])]
            self._row_chunk[row] = None
            self._ints[row] = _NO_INT
            self._strs[row] = _NO_STR
            self._extras.pop(row, None)
            self._free.append(row)

    def _put_row(self, chunk_id: str, meta: dict) -> int:
        if chunk_id in self._row:
            raise ValueError(f"{chunk_id}: already held (by another document?)")
        row = self._take_row()
        self._row[chunk_id] = row
        self._row_chunk[row] = chunk_id
        extras = {}
        for key, value in meta.items():
            if key in INT_KEYS and type(value) is int and _NO_INT < value <= np.iinfo(np.int64).max:
                self._ints[row, INT_KEYS.index(key)] = value
            elif key in STR_KEYS and type(value) is str:
                self._strs[row, STR_KEYS.index(key)] = self._string_id(value)
            else:
                extras[key] = value
        if extras:
            self._extras[row] = extras
        return row

    def _take_row(self) -> int:
        if self._free:
            return self._free.pop()
        row = len(self._row_chunk)
        self._row_chunk.append(None)
        if row >= len(self._ints):  # grow by doubling: putting chunk by chunk stays linear
            more = max(16, len(self._ints))
            self._ints = np.concatenate((self._ints, np.full((more, len(INT_KEYS)), _NO_INT, dtype=np.int64)))
            self._strs = np.concatenate((self._strs, np.full((more, len(STR_KEYS)), _NO_STR, dtype=np.int32)))
        return row

    def _string_id(self, s: str) -> int:
        i = self._string_ids.get(s)
        if i is None:
            i = self._string_ids[s] = len(self._strings)
            self._strings.append(s)
        return i
