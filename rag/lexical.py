"""The lexical (BM25) chunk index, updated document by document: adding an article to a large collection costs
about what that article weighs, not a rebuild.

It scores exactly as bm25s's default does (method "lucene", k1 1.5, b 0.75, float32 scores): for each query token
(repeats count again), idf(t) * tf / (tf + k1 * (1 - b + b * len / avg_len)) with
idf(t) = log(1 + (N - df + 0.5) / (df + 0.5)), N the number of chunks and avg_len their mean token count. N, df and
avg_len change with every document, so nothing is precomputed per posting: each query term's postings (chunk slot,
term frequency) are scored when asked. A removed document's postings go at once, so its chunks cannot be scored.
Tokenizing is not done here: callers pass `rag.tokens.bm25_tokens` output. Left out: phrase and fuzzy matching. Kept
on disk with the rest of the retriever's state (rag/retrieve.py `Retriever.save` / `open`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from rag.catalog import packed, unpacked

# bm25s.BM25()'s defaults, which the index built from scratch used (bm25s/__init__.py BM25.__init__).
K1 = 1.5
B = 0.75
TF_MAX = np.iinfo(np.uint16).max  # term frequencies are kept as uint16


class LexicalIndex:
    """BM25 postings over chunks, grouped by document: `add` a document's chunks, `remove` a document, `search`."""

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}  # term -> term id; a term stays (with df 0) after its last chunk goes
        self._terms: list[str] = []
        self._rows: list[np.ndarray] = []  # per term id: the slots of the chunks that have it (int32)
        self._tfs: list[np.ndarray] = []  # per term id: its frequency in each of those chunks (uint16)
        self._df: list[int] = []  # per term id: how many chunks have it
        self._len = np.zeros(0, dtype=np.float64)  # per slot: the chunk's token count
        self._slot_chunk: list[str | None] = []  # per slot: its chunk's id (None: a free slot)
        self._free: list[int] = []
        # Per document: its chunks' slots, in order, and the ids of the terms they have (each once), both int32:
        # one array each per document, not a list of ints or an array per chunk (issue 15, memory).
        self._doc_slots: dict[str, np.ndarray] = {}
        self._doc_terms: dict[str, np.ndarray] = {}
        self._n = 0  # chunks held
        self._total_len = 0  # their tokens, in all

    # --- kept on disk (pickled with the retriever) ------------------------------------------------------------
    def __getstate__(self) -> dict:
        """Postings and per-document arrays end to end, one array each, not hundreds of thousands of small ones: a
        smaller file, read faster, and held in fewer pieces once read. The vocabulary is rebuilt from `_terms`."""
        state = {k: v for k, v in self.__dict__.items() if k != "_vocab"}
        ends = np.cumsum([len(r) for r in self._rows], dtype=np.int64)
        rows = np.concatenate(self._rows) if self._rows else np.zeros(0, dtype=np.int32)
        tfs = np.concatenate(self._tfs) if self._tfs else np.zeros(0, dtype=np.uint16)
        return {**state, "_rows": (rows, ends), "_tfs": tfs, "_df": np.asarray(self._df, dtype=np.int64),
                "_doc_slots": packed(self._doc_slots), "_doc_terms": packed(self._doc_terms)}

    def __setstate__(self, state: dict) -> None:
        rows, ends = state["_rows"]
        cuts = ends[:-1] if len(ends) else []
        self.__dict__.update({**state, "_vocab": {t: i for i, t in enumerate(state["_terms"])},
                              "_rows": np.split(rows, cuts) if len(ends) else [],
                              "_tfs": np.split(state["_tfs"], cuts) if len(ends) else [],
                              "_df": state["_df"].tolist(),
                              "_doc_slots": unpacked(*state["_doc_slots"]),
                              "_doc_terms": unpacked(*state["_doc_terms"])})

    # --- what it holds ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def documents(self) -> set[str]:
        return set(self._doc_slots)

    def chunk_ids(self, doc_id: str) -> list[str]:
        slots = self._doc_slots.get(doc_id)
        return [] if slots is None else [str(self._slot_chunk[s]) for s in slots.tolist()]

    def df(self, term: str) -> int:
        """How many chunks have this term (0 for a term no chunk has)."""
        t = self._vocab.get(term)
        return 0 if t is None else self._df[t]

    def terms(self) -> Iterator[str]:
        """Every term some chunk has."""
        return (w for w, d in zip(self._terms, self._df) if d > 0)

    # --- changes ---------------------------------------------------------------------------------------------
    def add(self, doc_id: str, chunk_ids: list[str], token_lists: list[list[str]]) -> None:
        """Index a document's chunks (a document already held is replaced)."""
        self.add_many([(doc_id, chunk_ids, token_lists)])

    def add_many(self, docs: Iterable[tuple[str, list[str], list[list[str]]]]) -> None:
        """Index several documents at once: each term's postings grow once per call, not once per document (a
        build from scratch is one call)."""
        docs = list(docs)
        self.remove_many([d for d, _, _ in docs if d in self._doc_slots])
        post_terms: list[int] = []
        post_slots: list[int] = []
        post_tfs: list[int] = []
        for doc_id, chunk_ids, token_lists in docs:
            if len(chunk_ids) != len(token_lists):
                raise ValueError(f"{doc_id}: {len(chunk_ids)} chunk ids for {len(token_lists)} token lists")
            slots: list[int] = []
            doc_terms: list[int] = []
            for cid, tokens in zip(chunk_ids, token_lists):
                slot = self._take_slot()
                counts = Counter(tokens)
                ids = [self._term_id(w) for w in counts]
                doc_terms += ids
                self._slot_chunk[slot] = cid
                self._len[slot] = len(tokens)
                self._n += 1
                self._total_len += len(tokens)
                slots.append(slot)
                post_terms += ids
                post_slots += [slot] * len(ids)
                post_tfs += counts.values()
            # (a document named twice in one call keeps the chunks of both, as adding them one by one would)
            self._doc_slots[doc_id] = np.concatenate((self._doc_slots.get(doc_id, np.zeros(0, dtype=np.int32)),
                                                      np.asarray(slots, dtype=np.int32)))
            self._doc_terms[doc_id] = np.union1d(self._doc_terms.get(doc_id, np.zeros(0, dtype=np.int32)),
                                                 np.asarray(doc_terms, dtype=np.int32)).astype(np.int32)
        if not post_terms:
            return
        terms = np.asarray(post_terms, dtype=np.int64)
        order = np.argsort(terms, kind="stable")
        terms, slots_a = terms[order], np.asarray(post_slots, dtype=np.int32)[order]
        # uint16: half a float32, and exact; the scoring divides in float64 as it did (a term more than 65,535 times
        # in one chunk counts 65,535 times)
        tfs_a = np.minimum(np.asarray(post_tfs, dtype=np.int64), TF_MAX).astype(np.uint16)[order]
        cuts = np.flatnonzero(np.diff(terms)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(terms)]))
        for a, z in zip(starts.tolist(), ends.tolist()):
            t = int(terms[a])
            self._rows[t] = np.concatenate((self._rows[t], slots_a[a:z]))
            self._tfs[t] = np.concatenate((self._tfs[t], tfs_a[a:z]))
            self._df[t] += z - a

    def remove(self, doc_id: str) -> None:
        """Take a document's chunks out (a document not held is ignored); they cannot be found from now on."""
        self.remove_many([doc_id])

    def remove_many(self, doc_ids: Iterable[str]) -> None:
        slot_arrays: list[np.ndarray] = []
        term_arrays: list[np.ndarray] = []
        for doc_id in doc_ids:
            if doc_id in self._doc_slots:
                slot_arrays.append(self._doc_slots.pop(doc_id))
                term_arrays.append(self._doc_terms.pop(doc_id))
        dead = np.concatenate(slot_arrays) if slot_arrays else np.zeros(0, dtype=np.int32)
        if not len(dead):
            return
        gone = dead.tolist()
        for slot in gone:
            self._n -= 1
            self._total_len -= int(self._len[slot])
        for t in np.unique(np.concatenate(term_arrays)).tolist():
            keep = ~np.isin(self._rows[t], dead)
            self._df[t] -= int(len(keep) - keep.sum())
            self._rows[t], self._tfs[t] = self._rows[t][keep], self._tfs[t][keep]
        for slot in gone:  # free only now: no posting names these slots any more
            self._slot_chunk[slot] = None
            self._len[slot] = 0.0
            self._free.append(slot)

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop()
        slot = len(self._slot_chunk)
        self._slot_chunk.append(None)
        if slot >= len(self._len):  # grow by doubling: adding chunk by chunk stays linear
            self._len = np.concatenate((self._len, np.zeros(max(16, len(self._len)), dtype=np.float64)))
        return slot

    def _term_id(self, term: str) -> int:
        t = self._vocab.get(term)
        if t is None:
            t = self._vocab[term] = len(self._terms)
            self._terms.append(term)
            self._rows.append(np.zeros(0, dtype=np.int32))
            self._tfs.append(np.zeros(0, dtype=np.uint16))
            self._df.append(0)
        return t

    # --- search ----------------------------------------------------------------------------------------------
    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """The BM25 score of every slot (free slots score 0), as bm25s computes it, float32."""
        out = np.zeros(len(self._slot_chunk), dtype=np.float32)
        if not self._n:
            return out
        n, avg = self._n, self._total_len / self._n
        for w in query_tokens:  # in order, repeats included, summed in float32: bm25s's get_scores
            t = self._vocab.get(w)
            if t is None or not self._df[t]:
                continue
            df = self._df[t]
            idf = np.float32(math.log(1 + (n - df + 0.5) / (df + 0.5)))
            rows, tf = self._rows[t], self._tfs[t]
            tfc = tf / (K1 * ((1 - B) + B * self._len[rows] / avg) + tf)
            out[rows] += (np.float64(idf) * tfc).astype(np.float32)
        return out

    def search(self, query_tokens: list[str], k: int,
               documents: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The k best chunks (chunk id, score) with a score above 0, best first, ties by chunk id; `documents`
        keeps the search to those documents' chunks."""
        scores = self.scores(query_tokens)
        if documents is not None:
            rows = [self._doc_slots[d] for d in documents if d in self._doc_slots]
            scope = np.zeros(len(scores), dtype=bool)
            if rows:
                scope[np.concatenate(rows)] = True
            scores[~scope] = 0.0
        hits = np.flatnonzero(scores > 0)
        if k <= 0 or not len(hits):
            return []
        if len(hits) > k:  # the k best, and any that tie with the k-th (the tie-break below decides among them)
            kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
            hits = hits[scores[hits] >= kth]
        ranked = sorted((-float(scores[s]), str(self._slot_chunk[s])) for s in hits.tolist())[:k]
        return [(cid, -neg) for neg, cid in ranked]


class IDF(Mapping[str, float]):
    """The chunk-level IDF table the sentence scorer weighs words by, log(1 + N / df), read from the index as it
    stands (N and df change with every document, so nothing is stored)."""

    def __init__(self, index: LexicalIndex) -> None:
        self._index = index

    def __getitem__(self, word: str) -> float:
        df = self._index.df(word)
        if not df:
            raise KeyError(word)
        return math.log(1 + max(1, len(self._index)) / df)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._index.df(word) > 0

    def __iter__(self) -> Iterator[str]:
        return self._index.terms()

    def __len__(self) -> int:
        return sum(1 for _ in self._index.terms())
