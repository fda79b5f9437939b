"""Compact in-memory tables the retriever keeps per chunk and per document (issue 15: a 1M-chunk collection must be
served under 2.5 GB).

`WordSet` is every word of every document, for `Retriever.knows`: words are interned to ids once, each document
holds a numpy array of its word ids, and the counts are numpy arrays, instead of a Python set of strings per
document and Counters keyed by string. Left out: anything that needs the words in order or their frequencies (BM25
has its own index, rag/lexical.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PREFIX = 4  # a word of PREFIX + 1 letters or more is known when a known word starts with the same PREFIX letters


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
