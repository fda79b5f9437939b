"""The retriever's compact tables (rag/catalog.py) answer as the plain Python sets and dicts they replace."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag.catalog import ChunkCatalog, WordSet

WORDS = ["bit", "bitcoin", "bitcoins", "bitter", "chin", "china", "chinese", "zoo", "zebra", "okapi", "a", "keepers"]


class _PlainWords:
    """What the retriever held before WordSet: a set of words per document, counted per document."""

    def __init__(self) -> None:
        self.docs: dict[str, set[str]] = {}

    def words(self) -> set[str]:
        return set().union(*self.docs.values())

    def prefixes(self) -> set[str]:
        return {w[:4] for w in self.words() if len(w) >= 4}

    def knows(self, w: str) -> bool:
        return w in self.words() or (len(w) >= 5 and w[:4] in self.prefixes())


steps = st.lists(st.tuples(st.sampled_from(["d0", "d1", "d2", "d3"]),
                           st.none() | st.lists(st.sampled_from(WORDS), max_size=6)), max_size=25)


@given(steps)
def test_a_word_set_knows_what_the_documents_it_holds_have(changes):
    """Any sequence of documents learnt (again) and forgotten: a word goes only with the last document that has
    it, and a prefix with the last word that starts with it."""
    ours, plain = WordSet(), _PlainWords()
    for doc, words in changes:
        if words is None:
            ours.forget(doc)
            plain.docs.pop(doc, None)
        else:
            ours.learn(doc, words)
            plain.docs[doc] = set(words)
        assert ours.words() == plain.words() and ours.prefixes() == plain.prefixes()
        assert ours.documents() == set(plain.docs)
        for w in [*WORDS, "bitten", "chinook", "zebras", "unseen"]:
            assert ours.knows(w) == plain.knows(w), w
    copy = pickle.loads(pickle.dumps(ours))
    assert copy.words() == ours.words() and copy.prefixes() == ours.prefixes()


def test_a_word_goes_with_the_last_document_that_has_it():
    words = WordSet()
    words.learn("a", ["bitcoin", "zoo", "zoo"])
    words.learn("b", ["bitcoin"])
    assert words.knows("bitcoin") and words.knows("bitcoins") and words.knows("zoo")
    words.forget("a")
    assert words.knows("bitcoin") and not words.knows("zoo")
    words.learn("b", ["okapi"])  # learnt again: what it had before is forgotten
    assert not words.knows("bitcoin") and not words.knows("bitcoins") and words.knows("okapis")
    assert not words.knows("okap"), "a word of PREFIX letters is known only as itself"
    words.forget("b")
    words.forget("nobody")
    assert words.words() == set() and words.prefixes() == set() and not words.knows("okapi")


# Chunk metadata as ingest writes it (page and section only when the document has them), and some it never writes
# (another key, a float, a bool, a None) that must come back as they went in.
METAS = [
    {"doc_id": "a", "title": "Bitcoin falls", "start": 0, "end": 812, "index": 0},
    {"doc_id": "a", "title": "Bitcoin falls", "start": 790, "end": 1500, "index": 1, "section": "Markets"},
    {"doc_id": "b", "title": "", "start": 0, "end": 30, "index": 0, "page": 3, "section": ""},
    {"doc_id": "b", "title": "Report", "start": 2**40, "end": 2**40 + 5, "index": 1, "page": 1},
    {"doc_id": "c", "title": "Odd", "start": 5, "end": 9.5, "index": True, "page": None, "lang": "en"},
    {"doc_id": 7, "start": -3},
]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(st.sampled_from(range(len(METAS))),
                                                                       unique=True, max_size=4)), max_size=12))
def test_a_chunk_catalog_reads_back_the_metadata_it_was_given(puts):
    """Documents put (again, with other chunks, or none) and removed: it reads as the dict of dicts it replaces,
    key by key and whole, and a pickle of it reads the same."""
    ours, plain = ChunkCatalog(), {}
    for doc, rows in puts:
        ids = [f"{doc}::{i}" for i in rows]
        ours.put(doc, ids, [dict(METAS[i]) for i in rows])
        plain[doc] = {cid: METAS[i] for cid, i in zip(ids, rows)}
        if not rows:
            del plain[doc]
        flat = {cid: m for chunks in plain.values() for cid, m in chunks.items()}
        assert ours == flat and dict(ours) == flat and len(ours) == len(flat)
        assert ours.documents() == set(plain)
        for d, chunks in plain.items():
            assert ours.chunk_ids(d) == list(chunks)
        for cid, meta in flat.items():
            assert ours.doc_id(cid) == meta["doc_id"] and ours.start(cid) == meta["start"]
            assert type(ours.start(cid)) is type(meta["start"]) and type(ours[cid].get("end")) is type(meta.get("end"))
            for key in ("title", "page", "section", "lang", "index", "missing"):
                assert ours.value(cid, key, "-") == meta.get(key, "-")
    assert pickle.loads(pickle.dumps(ours)) == ours
    for d in list(plain):
        ours.remove(d)
    ours.remove("never")
    assert not ours and ours.documents() == set() and "a::0" not in ours


def test_a_chunk_without_a_doc_id_or_start_says_so():
    catalog = ChunkCatalog()
    catalog.put("x", ["x::0"], [{"title": "T"}])
    assert catalog["x::0"] == {"title": "T"} and catalog.value("x::0", "title", "") == "T"
    with pytest.raises(KeyError):
        catalog.doc_id("x::0")
    with pytest.raises(KeyError):
        catalog.start("x::0")
    with pytest.raises(KeyError):
        catalog.value("y::0", "title")
