"""Hybrid retrieval: dense (Chroma) and lexical (BM25, rag/lexical.py) chunk search, fused, then sentence windows.

Prompt tokens are what the user waits for on a CPU, so the model is not given whole chunks: inside the best
chunks, each sentence is scored against the question and the best few (with a neighbour where they touch) become
the numbered sources. Each source is an exact span of its document. This module does no generation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from ingest.chunking import is_heading
from ingest.embed import Embedder
from ingest.store import ChunkStore, DocRecord, is_current
from rag.catalog import ChunkCatalog, WordSet
from rag.guard import addresses_the_model
from rag.lexical import IDF, LexicalIndex
from rag.tokens import STOPWORDS, TERM, TOKENS_VERSION, bm25_tokens, content_words, terms

log = logging.getLogger(__name__)

# What a kept index (Retriever.save) was written by; another value is never read back. 2: no chunk texts (they
# stay in the store); 3-7: compact tables (rag/catalog.py, issue 15).
SNAPSHOT_FORMAT = f"retriever-8/tokens-{TOKENS_VERSION}"  # 8: term frequencies as uint16
RRF_K = 60  # the usual reciprocal-rank-fusion constant
SENTENCE_HITS = 3  # nearest sentences searched per chunk of top_k; their chunks join the candidates
# Sentence scores: dense cosine + OVERLAP_WEIGHT * IDF-weighted share of the question's words + a prior for the
# chunk's fused rank. Chosen by hand at 06acb93 on the bundled corpus and not re-tuned since.
OVERLAP_WEIGHT = 0.3
CHUNK_PRIOR = 0.05
# A word in more than this share of the chunks (in a folder about Mythos: "mythos", "leak", "model") cannot tell
# its sentences apart, yet it pulls the question's vector towards every sentence that repeats it: "How did the
# Mythos leak happen?" ranked "The market's reaction to the Mythos leak ..." above "The leak appears to have
# originated from misconfigured API access controls". So a sentence's cosine is the mean of its cosine to the
# question and to the question without those words ("How did the happen?"). Retrieval hit@k (/work/exp/sweep.py,
# first retrieval of each question): news dev 0.838 -> 0.892, gitdocs dev 0.679 = (recall 0.595 -> 0.613); the
# same from 0.1 to 0.3 on both dev splits. Test splits, untuned: news 0.639 -> 0.722, gitdocs 0.767 -> 0.867.
# Those words are left out of the sentence's word overlap too: news dev 0.892 -> 0.919, gitdocs dev 0.679 =; test
# news 0.722 -> 0.806, gitdocs 0.867 =.
COMMON_SHARE = 0.2
MIN_SENTENCE_CHARS = 25  # shorter lines (a date, "Share") are never a source on their own
# The sentence after each of the two best picks joins them (within 240 characters in all), beyond the budget:
# added for reference pages, whose figures follow the sentence that names the thing (gitdocs dev: hit@k 0.536 ->
# 0.643, facts 0.310 -> 0.381; news dev: hit@k 0.784 -> 0.811, facts 0.649 -> 0.689).
# Then, while they fit, the sentence after that (up to three in all): "... kept for this many days. You can also use
# "1.month.ago", etc. The default is 15 days." (gitdocs dev: hit@k 0.643 -> 0.679, facts 0.488 -> 0.524, abstention
# recall 0.500 -> 0.333; news dev: facts 0.775 =, citation precision 0.784 -> 0.811).
NEIGHBOUR_SOURCES = 2
NEIGHBOUR_CHARS = 240
NEIGHBOUR_ROUNDS = 3
# A sentence that opens by pointing back ("It tells git bisect run that ...", "This makes ...", "However, ...") means
# little without the one before it, which then joins it, within BACK_CHARS, for every pick: "The special exit code
# 125 should be used ..." came with "It tells ... untestable" (gitdocs dev: facts 0.524 -> 0.560, abstention recall
# 0.333 -> 0.500, citation R/P 0.906/0.906 -> 0.865/0.865; news dev: facts 0.775 =, citation recall 0.775 -> 0.783).
_POINTS_BACK = re.compile(r"^\W*(?:it|its|this|that|these|those|they|them|their|such|he|she|his|her|however|further|"
                          r"furthermore|instead|otherwise|likewise|also|then|thus|therefore|hence)\b", re.I)
BACK_CHARS = 200
_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)]|[a-z][.)])\s")  # "- ", "1. ", "a) " opening a line
_BARE_MARKER = re.compile(r"\s*(?:[-*\u2022]|\d{1,2}[.)]|[a-z][.)])\s*")  # a "sentence" that is only "1."
# Sentences in different chunks are read as one passage only when at most this many characters (all white space)
# lie between them: a blank line between two paragraphs, not a left-out byline.
MAX_GAP = 4
# How much further than top_k each search looks, so that a document that fills a list can be held to all slots but
# one (a hostile article that repeats itself crowded out the real source).
DIVERSITY_REACH = 3


def _overlapping(meta: dict, picked: list[tuple[float, dict]]) -> bool:
    """Whether this sentence shares characters of its document with one already picked: the sentence after a best
    pick is often a pick of its own, and was then given to the model twice."""
    return any(m["doc_id"] == meta["doc_id"] and m["start"] < meta["end"] and meta["start"] < m["end"]
               for _, m in picked)


@dataclass(frozen=True)
class Source:
    """A passage given to the model: an exact span `doc_text[start:end] == text`."""

    number: int
    doc_id: str
    title: str
    text: str
    start: int
    end: int
    score: float
    page: int | None = None  # the page the passage starts on (PDF documents)
    section: str = ""  # the heading or chapter it sits under (DOCX, EPUB, HTML)


@dataclass(frozen=True)
class Retrieval:
    sources: list[Source]
    best_similarity: float  # best dense cosine between the query and any chunk or sentence considered
    best_overlap: float = 0.0  # most of the query's content words (IDF-weighted) that one sentence has


def _key(meta: dict) -> str:
    return f"{meta['chunk_id']}:{meta['start']}"


def _fingerprint(record: DocRecord) -> bytes:
    """16 bytes that differ when any field of the record but its text does (`changed` only asks whether two
    records are equal; a whole DocRecord per document, paths and hashes as strings, is what it replaces)."""
    return hashlib.blake2b(repr(replace(record, text="")).encode(), digest_size=16).digest()


class Retriever:
    """The lexical index and the word set of a collection, in memory; dense search stays in Chroma. Built once, then
    kept in step with the store document by document (`update`). Texts stay in the store: a question fetches those
    of its candidate chunks (`_windows`), so memory grows with the chunks' metadata, not with their text."""

    def __init__(self, store: ChunkStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self.metas = ChunkCatalog()  # chunk id -> metadata, of the chunks served (whole, current versions)
        self._records: dict[str, bytes] = {}  # what it was built from: each record's `_fingerprint`
        self._index = LexicalIndex()
        self._idf = IDF(self._index)
        self._lock = threading.Lock()  # searches and updates of the lexical index do not interleave
        self._warned: set[str] = set()
        # Every word of every document, bylines and titles included, and their prefixes (for knows()).
        self._words = WordSet()
        records = store.doc_records(with_text=True)
        self._apply(records, store.all_chunks(), list(records))

    # --- kept on disk ------------------------------------------------------------------------------------------
    _UNKEPT = ("store", "embedder", "_lock", "_idf")

    def save(self, path: Path) -> None:
        """Keep the index in a file (written whole or not at all), so that the next process opens it with `open`
        instead of reading and tokenizing every chunk of the collection. A failure only costs that next process
        the build."""
        state = {k: v for k, v in self.__dict__.items() if k not in self._UNKEPT}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                data = pickle.dumps({"format": SNAPSHOT_FORMAT, "state": state}, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.info("could not keep the lexical index in %s (%s); the next process builds it again", path, e)

    @classmethod
    def open(cls, store: ChunkStore, embedder: Embedder, path: Path) -> Retriever | None:
        """The index `save` kept in `path`, exactly as it was then (None when there is none, or it cannot be read):
        the caller brings it up to date with `changed` and `update`, as with one built earlier in the process.
        The file is our own (under the app's home folder), so it is read as trusted as the model files are."""
        try:
            with path.open("rb") as f:  # read as it is unpickled: the file's bytes are never held whole
                kept = pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - a half-written, truncated or foreign file: build instead
            log.info("the kept lexical index %s cannot be read (%s); building it", path, e)
            return None
        if not isinstance(kept, dict) or kept.get("format") != SNAPSHOT_FORMAT:
            return None
        self = cls.__new__(cls)
        self.__dict__.update(kept["state"])
        self.store, self.embedder, self._lock = store, embedder, threading.Lock()
        self._idf = IDF(self._index)
        return self

    @staticmethod
    def snapshot_path(folder: Path, store: ChunkStore) -> Path:
        """Where a collection's index is kept: one file per store location and collection."""
        where = store.location if store.location.startswith(("http://", "https://")) else \
            str(Path(store.location).expanduser().resolve())
        key = hashlib.sha256(f"{where}\0{store.collection}".encode()).hexdigest()[:24]
        return folder / f"{key}.pkl"

    @property
    def n_docs(self) -> int:
        """The documents it was built from (pending ones included)."""
        return len(self._records)

    def changed(self, records: dict[str, DocRecord]) -> list[str]:
        """The documents whose records (as `ChunkStore.doc_records()` reads them, without texts) differ from the
        ones this index holds: added, removed, rewritten or pending."""
        return sorted(d for d in set(records) | set(self._records)
                      if (_fingerprint(records[d]) if d in records else None) != self._records.get(d))

    def update(self, doc_ids: list[str]) -> None:
        """Bring these documents in line with the store: their current chunks and words replace what the index
        had of them (none for a document that is gone or pending); every other document is left as it is."""
        doc_ids = sorted(set(doc_ids))
        if doc_ids:
            self._apply(self.store.doc_records(with_text=True, doc_ids=doc_ids), self.store.chunks_of(doc_ids),
                        doc_ids)

    def _apply(self, records: dict[str, DocRecord], chunks: tuple[list[str], list[str], list[dict]],
               doc_ids: list[str]) -> None:
        # Only the chunks of whole, current versions: a pending document's or an old version's chunks that a failed
        # cleanup left behind are never served.
        mine: dict[str, list[int]] = {d: [] for d in doc_ids}
        ids, texts, metas = chunks
        for i, (cid, m) in enumerate(zip(ids, metas)):
            doc = str(m.get("doc_id"))
            if doc in mine and is_current(cid, records.get(doc)):
                mine[doc].append(i)
        tokens = {d: bm25_tokens([texts[i] for i in rows]) for d, rows in mine.items()}
        with self._lock:
            self._index.remove_many(doc_ids)
            self._index.add_many((d, [ids[i] for i in rows], tokens[d]) for d, rows in mine.items() if rows)
            for d, rows in mine.items():
                self.metas.put(d, [ids[i] for i in rows], [metas[i] for i in rows])
                self._words.forget(d)
                rec = records.get(d)
                if rec is None:
                    self._records.pop(d, None)
                    continue
                self._records[d] = _fingerprint(rec)
                self._words.learn(d, (t.lower() for t in terms(f"{rec.title} {rec.author} {rec.text}")))

    def knows(self, word: str) -> bool:
        """Does any article use this word, or one that starts the same ("Chinese" for "China")? Every word of
        every document counts, bylines and titles included; stopwords and very short words count as known."""
        w = word.lower().strip(".-")
        if len(w) < 3 or w in STOPWORDS:
            return True
        return self._words.knows(w)

    def _lexical(self, query: str, k: int, documents: list[str] | None = None) -> list[str]:
        """The best k chunk ids by BM25 (of these documents, when given: the same scope as the dense searches)."""
        tokens = bm25_tokens([query])[0]
        if not tokens:
            return []
        with self._lock:
            return [cid for cid, _ in self._index.search(tokens, k, documents)]

    def retrieve(self, query: str, top_k: int, max_sources: int, budget_chars: int,
                 documents: list[str] | None = None) -> Retrieval:
        """The numbered sources for a query; `documents` (doc ids) limits every search to those documents."""
        rare = self._without_common(query)
        qvec, *rest = self.embedder.embed([query, rare] if rare else [query])
        # Each search looks further than top_k so that one document cannot fill its list (see _diverse). Hits on
        # chunks this index does not hold (written by an ingest after it was built) are left out.
        dense = [d for d in self.store.query(qvec, top_k * DIVERSITY_REACH, documents) if d[0] in self.metas]
        lexical = self._diverse(self._lexical(query, top_k * DIVERSITY_REACH, documents), top_k)
        dense = [d for d in dense if d[0] in set(self._diverse([cid for cid, _ in dense], top_k))]
        # Sentences are searched too: a paraphrased question often matches one sentence of a chunk whose other
        # sentences pull the chunk's own vector away from it.
        by_sentence = list(dict.fromkeys(cid for cid, _ in self.store.query_sentences(qvec, SENTENCE_HITS * top_k,
                                                                                      documents)
                                         if cid in self.metas))
        fused: dict[str, float] = {}
        for ranking in ([cid for cid, _ in dense], lexical, by_sentence):
            for rank, cid in enumerate(ranking):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
        # Every candidate of either search goes on to sentence scoring, best fused first.
        chunk_ids = [cid for cid, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]
        best = max((sim for _, sim in dense), default=0.0)
        sources, best_sent, overlap = self._windows(qvec, rest[0] if rest else None, query, chunk_ids, fused,
                                                    max_sources, budget_chars)
        return Retrieval(sources=sources, best_similarity=max(best, best_sent), best_overlap=overlap)

    def _without_common(self, query: str) -> str:
        """The query without the words in more than COMMON_SHARE of the chunks; "" when it has none of them, or
        only them."""
        with self._lock:
            kept = TERM.sub(lambda m: "" if any(map(self._too_common, content_words(m.group()))) else m.group(),
                            query)
        kept = " ".join(kept.split())
        return kept if kept != " ".join(query.split()) and content_words(kept) else ""

    def _too_common(self, word: str) -> bool:
        """A content word in more than COMMON_SHARE of the chunks."""
        return self._index.df(word) > COMMON_SHARE * max(1, len(self._index))

    def _diverse(self, ranked: list[str], k: int) -> list[str]:
        """The best k chunk ids, at most k - 1 of them from one document while another document has one left."""
        cap = max(1, k - 1)
        taken: list[str] = []
        left: list[str] = []
        per_doc: dict[str, int] = {}
        for cid in ranked:
            doc = self.metas.doc_id(cid) if cid in self.metas else cid
            if len(taken) >= k:
                break
            if per_doc.get(doc, 0) >= cap:
                left.append(cid)
                continue
            taken.append(cid)
            per_doc[doc] = per_doc.get(doc, 0) + 1
        taken += left[: k - len(taken)]
        return [cid for cid in ranked if cid in set(taken)]

    def _windows(self, qvec, rare_vec, query, chunk_ids, fused, max_sources, budget) -> tuple[list[Source], float,
                                                                                             float]:
        texts = self.store.texts_of(chunk_ids)  # a chunk deleted since the searches has none, and is left out
        chunk_ids = [cid for cid in chunk_ids if cid in texts]
        metas, vecs = self.store.sentences_of(chunk_ids)
        if not metas:
            return [], 0.0, 0.0
        chunk_rank = {cid: r for r, cid in enumerate(chunk_ids)}
        qwords = set(content_words(query))
        all_words = {w for w in qwords if w in self._idf}  # a word no chunk has cannot tell sentences apart
        # Nor can one in most chunks (COMMON_SHARE), unless the question has no other: for "How did the Mythos leak
        # happen?" a sentence with "Mythos" and "leak" took the whole overlap, one with "leak" only half of it. The
        # policy's thresholds were set on the overlap of all the words, which is what best_overlap stays.
        qwords = {w for w in all_words if not self._too_common(w)} or all_words
        qweight = sum(self._idf[w] for w in qwords) or 1.0
        all_weight = sum(self._idf[w] for w in all_words) or 1.0
        sims = vecs @ qvec
        ranked_by = sims if rare_vec is None else (sims + vecs @ rare_vec) / 2  # see COMMON_SHARE
        scored = []
        best_overlap = 0.0
        for meta, sim in zip(metas, ranked_by):
            words = set(content_words(self._chunk_slice(texts, meta)))
            overlap = sum(self._idf[w] for w in qwords & words) / qweight
            best_overlap = max(best_overlap, sum(self._idf[w] for w in all_words & words) / all_weight)
            prior = CHUNK_PRIOR * (len(chunk_ids) - chunk_rank[meta["chunk_id"]]) / len(chunk_ids)
            scored.append((float(sim) + OVERLAP_WEIGHT * overlap + prior, float(sim), meta, overlap))
        # Ties (and float noise below 1e-9) are broken by position, not by the order Chroma returned the rows in,
        # which varies between two stores built from the same files: the same question gets the same sources.
        scored.sort(key=lambda t: (-round(t[0], 9), t[2]["doc_id"], t[2]["start"]))

        # Sentences that touch in the same chunk become one source, so the guard checks each passage as the model
        # would read it: an order split over a line break is caught once its halves are joined, and its sentences
        # make way for others.
        withheld: set[str] = set()
        while True:
            merged = self._merge(texts, self._pick(texts, scored, withheld, max_sources, budget))
            hostile = [m for m in merged if addresses_the_model(self._chunk_slice(texts, m[1]))]
            if not hostile:
                break
            for _, meta, keys in hostile:
                self._warn(meta["doc_id"])
                withheld.update(keys)
        merged.sort(key=lambda t: (-round(t[0], 9), t[1]["doc_id"], t[1]["start"]))
        sources = []
        for n, (score, meta, _) in enumerate(merged, start=1):
            sources.append(Source(number=n, doc_id=meta["doc_id"], title=self._title(meta["chunk_id"]),
                                  text=self._chunk_slice(texts, meta), start=meta["start"], end=meta["end"],
                                  score=round(score, 4), page=meta.get("page"), section=meta.get("section", "")))
        return sources, float(max(sims)), best_overlap

    def _pick(self, texts: dict[str, str], scored: list, withheld: set[str], max_sources: int,
              budget: int) -> list[tuple[float, dict]]:
        """The best sentences that fit the budget. One document takes at most all slots but one while another has
        a usable sentence, so a document that repeats itself (or an injected one) cannot crowd out the rest."""
        cap = max(1, max_sources - 1)
        picked: list[tuple[float, dict]] = []
        per_doc: dict[str, int] = {}
        capped: list[tuple[float, dict]] = []
        used = 0
        for score, _, meta, _ in scored:
            length = meta["end"] - meta["start"]
            if len(picked) >= max_sources or (picked and used + length > budget) or _key(meta) in withheld:
                continue
            text = self._chunk_slice(texts, meta)
            if length < MIN_SENTENCE_CHARS or is_heading(text):  # a bare heading says little on its own
                continue
            if addresses_the_model(text):  # an order to the model is never handed to it (rag/guard.py)
                self._warn(meta["doc_id"])
                continue
            if per_doc.get(meta["doc_id"], 0) >= cap:
                capped.append((score, meta))
                continue
            picked.append((score, meta))
            per_doc[meta["doc_id"]] = per_doc.get(meta["doc_id"], 0) + 1
            used += length
        for score, meta in capped:  # no other document had a sentence for the last slot: it goes to the best left
            length = meta["end"] - meta["start"]
            if len(picked) < max_sources and used + length <= budget:
                picked.append((score, meta))
                used += length
        metas = [t[2] for t in scored]
        picked += self._before(texts, picked, metas, withheld)
        # the two best read on, and so does any pick that leads into a list: a lead-in alone says nothing
        best = picked[:NEIGHBOUR_SOURCES] + [p for p in picked[NEIGHBOUR_SOURCES:]
                                             if self._chunk_slice(texts, p[1]).rstrip().endswith(":")]
        return picked + self._next_sentences(texts, best, metas, withheld, picked)

    def _before(self, texts: dict[str, str], picked: list[tuple[float, dict]], metas: list[dict],
                withheld: set[str]) -> list[tuple[float, dict]]:
        """For each pick that opens by pointing back (`_POINTS_BACK`), the sentence before it in its chunk, when
        only white space lies between, it is short enough and no pick has it already."""
        out: list[tuple[float, dict]] = []
        for score, meta in picked:
            if not _POINTS_BACK.match(self._chunk_slice(texts, meta)):
                continue
            before = [m for m in metas if m["chunk_id"] == meta["chunk_id"] and m["end"] <= meta["start"]]
            if not before:
                continue
            prev = max(before, key=lambda m: m["start"])
            if (prev["end"] - prev["start"] > BACK_CHARS or _key(prev) in withheld
                    or is_heading(self._chunk_slice(texts, prev))  # a title is not what "it" points back to
                    or not self._adjacent(texts, prev, meta) or _overlapping(prev, picked + out)
                    or addresses_the_model(self._chunk_slice(texts, prev))):
                continue
            out.append((score - 1e-3, prev))
        return out

    def _merge(self, texts: dict[str, str], picked: list[tuple[float, dict]]) -> list[list]:
        """[score, meta, sentence keys] per source: sentences that touch (in one chunk, or across the break
        between two) are joined, in document order."""
        picked = sorted(picked, key=lambda t: (t[1]["doc_id"], t[1]["start"]))
        merged: list[list] = []
        for score, meta in picked:
            last = merged[-1] if merged else None
            if last and last[1]["doc_id"] == meta["doc_id"] and self._adjacent(texts, last[1], meta):
                # a sentence that begins the next chunk carries the source into it
                joined = {} if meta["chunk_id"] == last[1]["chunk_id"] else {"end_chunk": meta["chunk_id"]}
                last[1] = {**last[1], "end": meta["end"], **joined}
                last[0] = max(last[0], score)
                last[2].append(_key(meta))
            else:
                merged.append([score, dict(meta), [_key(meta)]])
        return merged

    def _next_sentences(self, texts: dict[str, str], best: list[tuple[float, dict]], metas: list[dict],
                        withheld: set[str], chosen: list[tuple[float, dict]]) -> list[tuple[float, dict]]:
        """The sentences after each of the best picks (in its chunk, or first in the next one), one per pick a round
        for up to NEIGHBOUR_ROUNDS rounds, within NEIGHBOUR_CHARS in all, none a pick already (`chosen`): in
        reference pages a definition's first sentence names the thing and a later one gives the figure ("... kept
        for this many days." "You can also use ..." "The default is 15 days.").
        A pick that leads into a list ("A few technical signals stand out:") reads its items instead, within
        NEIGHBOUR_CHARS of its own: the first sentence of each line that follows (of each line with a list marker,
        when the first item has one), so the reader gets the items, not the first item's explanation."""
        taken = {(m["chunk_id"], m["start"]) for _, m in best}
        out: list[tuple[float, dict]] = []
        # what is left to read: one room shared by the picks that read on, one of its own for each list's items
        room = [NEIGHBOUR_CHARS]
        # the last sentence each pick reads on to (None: it reads no further): one more per round while there is room
        ends: list[tuple[float, dict | None]] = list(best)
        leads = [self._chunk_slice(texts, m).rstrip().endswith(":") for _, m in best]
        rooms = [[NEIGHBOUR_CHARS] if lead else room for lead in leads]
        marked: list[bool | None] = [None] * len(best)  # the list's first item has a marker ("- ", "1. ")
        for _ in range(NEIGHBOUR_ROUNDS):
            grew = False
            for i, (score, meta) in enumerate(ends):
                if meta is None:
                    continue
                ends[i] = (score, None)
                if leads[i]:
                    step = self._next_item(texts, meta, metas, marked[i])
                else:
                    after = [m for m in metas if m["chunk_id"] == meta["chunk_id"] and m["start"] >= meta["end"]]
                    nxt = min(after, key=lambda m: m["start"]) if after else self._in_next_chunk(texts, meta)
                    # a heading starts another section: reading on stops before it
                    step = [nxt] if (nxt is not None and self._adjacent(texts, meta, nxt)
                                     and not is_heading(self._chunk_slice(texts, nxt))) else []
                length = sum(m["end"] - m["start"] for m in step)
                if (not step or length > rooms[i][0] or any((m["chunk_id"], m["start"]) in taken or _key(m) in withheld
                                                     or _overlapping(m, chosen + out) for m in step)):
                    continue
                if any(addresses_the_model(self._chunk_slice(texts, m)) for m in step):
                    continue
                if leads[i] and marked[i] is None:
                    marked[i] = bool(_LIST_MARKER.match(self._chunk_slice(texts, step[0]) + " "))
                out += [(score - 1e-3, m) for m in step]
                taken.update((m["chunk_id"], m["start"]) for m in step)
                rooms[i][0] -= length
                ends[i] = (score, step[-1])
                grew = True
            if not grew:
                break
        return out

    def _next_item(self, texts: dict[str, str], meta: dict, metas: list[dict], marked: bool | None) -> list[dict]:
        """The next item of a list after this sentence: the first sentence of the next line, in its chunk or first
        in the next one (with the sentence after it when it is a bare marker, "1."); when the items have list
        markers (`marked`), of the next line with one (an item's explanation is passed over). None at a heading
        without a marker: the list has ended."""
        after = sorted((m for m in metas if m["chunk_id"] == meta["chunk_id"] and m["start"] >= meta["end"]),
                       key=lambda m: m["start"])
        lines = [m for m in after if self._starts_line(texts, m)]
        if not lines:
            nxt = self._in_next_chunk(texts, after[-1] if after else meta)
            lines = [nxt] if nxt is not None and self._starts_line(texts, nxt) else []
        for m in lines:
            text = self._chunk_slice(texts, m)
            has_marker = bool(_LIST_MARKER.match(text + " "))
            if is_heading(text) and not has_marker:
                return []
            if marked and not has_marker:
                continue
            if _BARE_MARKER.fullmatch(text):
                rest = [n for n in after if n["start"] >= m["end"]][:1]
                return [m, *rest] if rest and self._adjacent(texts, m, rest[0]) else []
            return [m]
        return []

    def _starts_line(self, texts: dict[str, str], meta: dict) -> bool:
        cid = meta["chunk_id"]
        at = meta["start"] - self.metas.start(cid)
        before = texts[cid][:at] if at > 0 else self._doc_text(texts, meta["doc_id"])[: meta["start"]]
        return not before or before.rstrip(" \t").endswith("\n")

    def _in_next_chunk(self, texts: dict[str, str], meta: dict) -> dict | None:
        """The sentence after the last one of its chunk, from the document's next chunk, fetched now (its text joins
        `texts`): a list's lead-in ("A few signals stand out:") often ends a chunk, and its items begin the next."""
        ids = self.metas.chunk_ids(meta["doc_id"])
        at = ids.index(meta["chunk_id"]) if meta["chunk_id"] in ids else -1
        if at < 0 or at + 1 >= len(ids):
            return None
        nid = ids[at + 1]
        if nid not in texts:
            texts.update(self.store.texts_of([nid]))
        if nid not in texts:
            return None
        after = [m for m in self.store.sentences_of([nid])[0] if m["start"] >= meta["end"]]
        return min(after, key=lambda m: m["start"]) if after else None

    def _warn(self, doc_id: str) -> None:
        if doc_id not in self._warned:
            self._warned.add(doc_id)
            log.warning("'%s' has sentences that give orders to the model (possible prompt injection); they are "
                        "never used as sources", doc_id)

    def _chunk_slice(self, texts: dict[str, str], meta: dict) -> str:
        """A sentence's (or a source's) text, cut from its chunk's text in `texts` (fetched for this question); a
        source that runs on into a later chunk (`end_chunk`) is cut from its document's text, which the check that
        joined them fetched (`_between`), so it is exactly what lies between its offsets."""
        cid = meta["chunk_id"]
        if "end_chunk" in meta:
            return self._doc_text(texts, meta["doc_id"])[meta["start"] : meta["end"]]
        base = self.metas.start(cid)
        return texts[cid][meta["start"] - base : meta["end"] - base]

    def _doc_text(self, texts: dict[str, str], doc_id: str) -> str:
        """A document's whole text, fetched once a question and kept in `texts` under a key no chunk id has."""
        key = f"\0{doc_id}"
        if key not in texts:
            record = self.store.doc_records(with_text=True, doc_ids=[doc_id]).get(doc_id)
            texts[key] = record.text if record else ""
        return texts[key]

    def _between(self, texts: dict[str, str], a: dict, b: dict) -> str | None:
        """The document's text between sentence a and the later sentence b (None: b does not come after a, or it
        is in another chunk more than MAX_GAP characters on). Inside one chunk it is cut from the chunk; across two,
        from the document's text, fetched for it: chunks are whole lines (or sentences of one), so what lies between
        two is a line break, a blank line, a space, or lines left out (a byline, a page number)."""
        if b["start"] < a["end"]:
            return None
        cb = b["chunk_id"]
        base_b = self.metas.start(cb)
        if a["chunk_id"] == cb or base_b <= a["end"]:
            return texts[cb][a["end"] - base_b : b["start"] - base_b]
        if b["start"] - a["end"] > MAX_GAP or a.get("page") != b.get("page") or a.get("section") != b.get("section"):
            return None  # a source never runs on over a page break or into another section: it cites one place
        between = self._doc_text(texts, a["doc_id"])[a["end"] : b["start"]]
        return between if len(between) == b["start"] - a["end"] else None

    def _adjacent(self, texts: dict[str, str], a: dict, b: dict) -> bool:
        """Whether only white space lies between sentence a and the later sentence b (in one chunk, or across the
        break between two)."""
        gap = self._between(texts, a, b)
        return gap is not None and not gap.strip()

    def _title(self, chunk_id: str) -> str:
        return self.metas.value(chunk_id, "title", "")

