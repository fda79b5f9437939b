"""Incremental growth: the BM25 index and the word set follow the store document by document.

`LexicalIndex` after any sequence of adds, changes and removals scores every chunk exactly as bm25s (the library the
index built from scratch used) scores the final set of chunks; in a serving Pipeline, adding, changing or removing
one article (in this process or by another writer) touches that article's entries only, with no rebuild, and the
answers follow at once. All on the fakes.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import replace

import bm25s
import numpy as np
import pytest

from rag import Pipeline
from rag.lexical import IDF, LexicalIndex
from rag.retrieve import SNAPSHOT_FORMAT, Retriever
from rag.tokens import TOKENS_VERSION, bm25_tokens

VOCAB = [f"w{i}" for i in range(200)]


def _random_doc(rng: random.Random) -> list[list[str]]:
    """1-4 chunks of 0-30 tokens over a skewed vocabulary (some words common, most rare; some chunks empty)."""
    return [[rng.choice(VOCAB[: rng.randint(3, len(VOCAB))]) for _ in range(rng.randint(0, 30))]
            for _ in range(rng.randint(1, 4))]


def _ids(doc_id: str, chunks: list[list[str]]) -> list[str]:
    return [f"{doc_id}::{j}" for j in range(len(chunks))]


def _churned(seed: int) -> tuple[LexicalIndex, dict[str, list[list[str]]]]:
    """An index after adds, changes (a document added again with new chunks) and removals; and what it should hold."""
    rng = random.Random(seed)
    index, docs = LexicalIndex(), {}
    for _ in range(120):
        doc_id = f"d{rng.randint(0, 40)}"
        if docs and rng.random() < 0.3:
            gone = rng.choice(sorted(docs))
            index.remove(gone)
            del docs[gone]
        else:
            docs[doc_id] = _random_doc(rng)
            index.add(doc_id, _ids(doc_id, docs[doc_id]), docs[doc_id])
    return index, docs


@pytest.mark.parametrize("seed", range(5))
def test_an_updated_index_scores_as_bm25s_built_from_scratch(seed):
    index, docs = _churned(seed)
    ids = [cid for d, chunks in docs.items() for cid in _ids(d, chunks)]
    tokens = [t for chunks in docs.values() for t in chunks]
    reference = bm25s.BM25()
    reference.index(tokens, show_progress=False)
    fresh = LexicalIndex()
    fresh.add_many((d, _ids(d, chunks), chunks) for d, chunks in docs.items())
    slot = {cid: s for s, cid in enumerate(index._slot_chunk) if cid is not None}
    assert sorted(slot) == sorted(ids) and len(index) == len(ids)
    rng = random.Random(seed)
    for _ in range(40):
        query = [rng.choice(VOCAB) for _ in range(rng.randint(1, 5))] + ["unseen"]
        known = [w for w in query if w in reference.vocab_dict]
        theirs = reference.get_scores(known) if known else np.zeros(len(ids), dtype=np.float32)
        ours = index.scores(query)
        assert np.abs(ours[[slot[c] for c in ids]] - theirs).max() <= 1e-6
        k = 10
        got = index.search(query, k)
        assert got == fresh.search(query, k)  # same ids, same scores, same order
        top = np.sort(theirs)[::-1][:k]
        assert np.allclose([s for _, s in got], top[top > 0], atol=1e-6, rtol=0)
        for cid, score in got:
            assert abs(score - theirs[ids.index(cid)]) <= 1e-6
    for word in VOCAB:
        assert index.df(word) == sum(word in set(t) for t in tokens)


@pytest.mark.parametrize("seed", range(3))
def test_a_pickled_index_searches_and_changes_as_the_one_it_was(seed):
    """Kept on disk its postings are packed end to end (LexicalIndex.__getstate__): read back, it scores, takes
    documents and lets them go exactly as the original does."""
    index, docs = _churned(seed)
    copy = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    rng = random.Random(seed)
    for _ in range(30):
        query = [rng.choice(VOCAB) for _ in range(rng.randint(1, 5))]
        assert np.array_equal(copy.scores(query), index.scores(query))
        assert copy.search(query, 10, sorted(docs)[:3]) == index.search(query, 10, sorted(docs)[:3])
        doc = f"d{rng.randint(0, 50)}"
        if rng.random() < 0.5:
            chunks = _random_doc(rng)
            index.add(doc, _ids(doc, chunks), chunks)
            copy.add(doc, _ids(doc, chunks), chunks)
        else:
            index.remove(doc)
            copy.remove(doc)
        assert {d: copy.chunk_ids(d) for d in copy.documents()} == {d: index.chunk_ids(d) for d in index.documents()}
        assert all(copy.df(w) == index.df(w) for w in VOCAB) and len(copy) == len(index)
    assert pickle.loads(pickle.dumps(LexicalIndex())).search(["w1"], 5) == []


def test_a_removed_document_cannot_be_found_at_once():
    index = LexicalIndex()
    index.add("a", ["a::0", "a::1"], [["okapi", "zoo"], ["okapi"]])
    index.add("b", ["b::0"], [["zoo", "keeper"]])
    assert {cid for cid, _ in index.search(["okapi", "zoo"], 5)} == {"a::0", "a::1", "b::0"}
    index.remove("a")
    assert index.search(["okapi"], 5) == [] and index.df("okapi") == 0 and "okapi" not in IDF(index)
    assert [cid for cid, _ in index.search(["okapi", "zoo"], 5)] == ["b::0"]
    index.add("c", ["c::0"], [["okapi"]])  # the freed slot is reused without the old postings
    assert [cid for cid, _ in index.search(["okapi"], 5)] == ["c::0"]
    assert index.search(["zoo", "okapi"], 5, documents=["c"]) == index.search(["okapi"], 5, documents=["c"])


# --- in a serving Pipeline --------------------------------------------------------------------------------------
ZEBRA = "# Zebra news\n\nThe zebra count at the city zoo reached 4,242 in May, keepers said.\n"
OKAPI = "# Okapi news\n\nThe okapi calf born at the city zoo weighed 16 kilograms, keepers said.\n"


@pytest.fixture
def built(monkeypatch):
    """Counts Retriever builds: an update must not construct one."""
    count = {"n": 0}
    original = Retriever.__init__

    def counting(self, *a, **kw):
        count["n"] += 1
        original(self, *a, **kw)

    monkeypatch.setattr(Retriever, "__init__", counting)
    return count


def _snapshot(r: Retriever) -> dict:
    return {d: [(cid, r.metas[cid]) for cid in r.metas.chunk_ids(d)] for d in r.metas.documents()}


def _others_untouched(before: dict, r: Retriever, doc_id: str) -> None:
    """Every other document's entries are what they were, and its lexical rows are its own."""
    for d, rows in before.items():
        if d == doc_id:
            continue
        assert [(cid, r.metas[cid]) for cid in r.metas.chunk_ids(d)] == rows
        assert r._index.chunk_ids(d) == [cid for cid, _ in rows]


def test_adding_changing_and_removing_one_article_updates_the_serving_index(settings, corpus, built):
    pipe = Pipeline(settings)
    r = pipe.retriever()
    assert built["n"] == 1 and not r.knows("zebra") and "zebra" not in r._idf
    before = _snapshot(r)

    (corpus / "zebra.md").write_text(ZEBRA)
    assert pipe.ingest().added == ["zebra"]
    assert pipe.retriever() is r and built["n"] == 1  # updated, not rebuilt
    _others_untouched(before, r, "zebra")
    new = r._index.chunk_ids("zebra")
    assert new and set(new) == set(r.metas.chunk_ids("zebra")) <= set(r.metas)
    assert r.knows("zebra") and r.knows("Keepers") and "zebra" in r._idf
    assert r._lexical("zebra count", 5) == new[:5]
    r.save(settings.home / "kept.pkl")  # texts stay in the store: neither the index nor its file holds them
    assert b"zebra count at the city zoo" not in (settings.home / "kept.pkl").read_bytes()
    assert not hasattr(r, "texts")
    answer = pipe.ask("How many zebras are at the city zoo?")
    assert not answer.abstained and answer.citations[0].doc_id == "zebra"  # the fake model cites the best first
    assert "4,242" in answer.citations[0].quote

    (corpus / "zebra.md").write_text(OKAPI)  # changed: the zebra is gone from it, an okapi came
    assert pipe.ingest().changed == ["zebra"]
    assert pipe.retriever() is r and built["n"] == 1
    _others_untouched(before, r, "zebra")
    assert not set(new) & set(r.metas) and not set(new) & set(r._index.chunk_ids("zebra"))
    assert r.knows("okapi") and not r.knows("zebra") and "zebra" not in r._idf
    answer = pipe.ask("What did the okapi calf weigh?")
    assert answer.citations[0].doc_id == "zebra" and "16 kilograms" in answer.citations[0].quote
    assert "4,242" not in " ".join(c.quote for c in answer.citations + answer.sources)

    pipe.remove_document("zebra")
    assert pipe.retriever() is r and built["n"] == 1
    _others_untouched(before, r, "zebra")
    assert "zebra" not in r.metas.documents() and r._index.chunk_ids("zebra") == []
    assert not any(m["doc_id"] == "zebra" for m in r.metas.values())
    assert not r.knows("okapi") and r._lexical("okapi calf", 5) == []
    answer = pipe.ask("What did the okapi calf weigh?")
    assert all(c.doc_id != "zebra" for c in answer.citations + answer.sources)
    assert _snapshot(r) == {d: rows for d, rows in before.items()}
    # What the updates left is what a build from scratch holds.
    fresh = Retriever(pipe.store, pipe.embedder)
    assert fresh.metas == r.metas and fresh._words.words() == r._words.words()
    assert fresh._words.prefixes() == r._words.prefixes()
    assert dict(fresh._idf) == dict(r._idf)


def test_an_ingest_by_another_writer_is_taken_in_without_a_rebuild(settings, corpus, built):
    pipe = Pipeline(settings)
    r = pipe.retriever()
    before = _snapshot(r)
    (corpus / "zebra.md").write_text(ZEBRA)
    assert Pipeline(settings).ingest().added == ["zebra"]  # another writer: this pipeline only sees the generation
    assert pipe.retriever() is r and built["n"] == 1
    _others_untouched(before, r, "zebra")
    assert r.knows("zebra") and r._index.chunk_ids("zebra")


def test_a_chunk_deleted_after_the_index_last_looked_is_never_served(settings, corpus):
    """Texts come from the store when a question needs them: a chunk gone from it since the index was updated is
    left out, even though the index (and its BM25 rows) still name it."""
    (corpus / "zebra.md").write_text(ZEBRA)
    pipe = Pipeline(settings)
    r = pipe.retriever()
    gone = r._index.chunk_ids("zebra")
    assert gone and pipe.retrieve("zebra count at the city zoo").sources[0].doc_id == "zebra"
    pipe.store._chunks.delete(ids=gone)  # behind the index's back, chunks only: their sentence rows still name them
    assert r._lexical("zebra count", 5) == gone[:5]  # the index still names them
    sources = pipe.retrieve("zebra count at the city zoo").sources
    assert all(s.doc_id != "zebra" for s in sources) and "4,242" not in " ".join(s.text for s in sources)


def test_a_scoped_lexical_search_after_updates_stays_in_its_scope(settings, corpus):
    pipe = Pipeline(settings)
    r = pipe.retriever()
    others = sorted(r.metas.documents())
    (corpus / "zebra.md").write_text(ZEBRA)
    pipe.ingest()
    (corpus / "okapi.md").write_text(OKAPI + "The zebra herd grew too.\n")
    pipe.ingest()
    assert pipe.retriever() is r
    query = "zebra okapi city zoo keepers bitcoin"
    for scope in (["zebra"], ["okapi"], others[:1], ["zebra", others[0]]):
        hits = r._lexical(query, 50, scope)
        assert hits and {r.metas[cid]["doc_id"] for cid in hits} <= set(scope)
        sources = pipe.retrieve(query, documents=scope).sources
        assert sources and {s.doc_id for s in sources} <= set(scope)
    pipe.remove_document("zebra")
    assert pipe.retriever() is r and r._lexical(query, 50, ["zebra"]) == []
    assert {r.metas[cid]["doc_id"] for cid in r._lexical(query, 50, ["okapi", others[0]])} == {"okapi", others[0]}


def test_a_change_to_most_of_the_collection_rebuilds(settings, corpus, built):
    pipe = Pipeline(settings)
    r = pipe.retriever()
    for path in sorted(corpus.iterdir())[:2]:  # two of three articles change
        path.write_text(path.read_text() + "\nA zebra was seen nearby.\n")
    assert len(pipe.ingest().changed) == 2
    assert pipe.retriever() is not r and built["n"] == 2
    assert pipe.retriever().knows("zebra")


def test_the_idf_table_follows_the_index():
    index = LexicalIndex()
    idf = IDF(index)
    index.add("a", ["a::0", "a::1"], bm25_tokens(["Zebras graze.", "Zebras run; okapis hide."]))
    assert set(idf) == {"zebra", "graze", "run", "okapi", "hide"} and len(idf) == 5
    assert idf["zebra"] == pytest.approx(np.log(1 + 2 / 2)) and idf["okapi"] == pytest.approx(np.log(1 + 2 / 1))
    index.add("b", ["b::0"], bm25_tokens(["Okapis graze."]))
    assert idf["okapi"] == pytest.approx(np.log(1 + 3 / 2))
    index.remove("a")
    assert set(idf) == {"okapi", "graze"} and idf["okapi"] == pytest.approx(np.log(1 + 1 / 1))


# --- the index kept on disk (Retriever.save / open) ---------------------------------------------------------------
def _kept_path(pipe: Pipeline):
    return Retriever.snapshot_path(pipe.settings.home / "index", pipe.store)


def _no_full_read(monkeypatch):
    """A store that refuses to hand over every chunk: an opened index must not need them."""
    from ingest.store import ChunkStore

    def refuse(self, *a, **kw):
        raise AssertionError("read every chunk of the collection")

    monkeypatch.setattr(ChunkStore, "all_chunks", refuse)


def _same_index(a: Retriever, b: Retriever) -> None:
    assert a.metas == b.metas and a._records == b._records
    assert a._words.words() == b._words.words() and a._words.prefixes() == b._words.prefixes()
    assert dict(a._idf) == dict(b._idf)
    assert {d: a._index.chunk_ids(d) for d in a._index.documents()} == \
        {d: b._index.chunk_ids(d) for d in b._index.documents()}


def test_a_new_process_opens_the_kept_index_instead_of_reading_every_chunk(settings, monkeypatch, built):
    first = Pipeline(settings).retriever()
    assert built["n"] == 1 and _kept_path(Pipeline(settings)).is_file()
    _no_full_read(monkeypatch)
    pipe = Pipeline(settings)  # as a new process would: nothing in memory
    opened = pipe.retriever()
    assert built["n"] == 1 and opened is not first
    _same_index(opened, first)
    query = "How far did bitcoin fall after the leak?"
    assert opened.retrieve(query, 4, 4, 900) == first.retrieve(query, 4, 4, 900)
    assert "66,000" in pipe.ask(query).citations[0].quote


def test_a_kept_index_is_brought_up_to_date_document_by_document(settings, corpus, monkeypatch, built):
    for i in range(3):  # a collection big enough that two changed documents are an update, not a rebuild
        (corpus / f"note{i}.md").write_text(f"# Note {i}\n\nThe weather station {i} logged light rain on Monday.\n")
    Pipeline(settings).retriever()  # kept now
    victim = sorted(corpus.iterdir())[0]
    (corpus / "zebra.md").write_text(ZEBRA)  # added after the index was kept ...
    victim.unlink()  # ... and one article removed
    report = Pipeline(settings).ingest()  # by a writer that never builds an index
    assert report.added == ["zebra"] and len(report.removed) == 1
    gone = report.removed[0]
    monkeypatch.setattr(Retriever, "update", _counting_update(Retriever.update))
    pipe = Pipeline(settings)
    r = pipe.retriever()
    assert built["n"] == 1, "opened and updated, not rebuilt"
    assert sorted(Retriever.update.calls) == [[gone, "zebra"]]
    assert r._index.chunk_ids("zebra") and r._index.chunk_ids(gone) == []
    assert not any(m["doc_id"] == gone for m in r.metas.values())
    answer = pipe.ask("How many zebras are at the city zoo?")
    assert answer.citations[0].doc_id == "zebra" and "4,242" in answer.citations[0].quote
    _same_index(r, Retriever(pipe.store, pipe.embedder))  # what a build from scratch holds
    # It was kept again: the next process has nothing left to update.
    Retriever.update.calls.clear()
    Pipeline(settings).retriever()
    assert Retriever.update.calls == []


def _counting_update(original):
    def update(self, doc_ids):
        update.calls.append(sorted(doc_ids))
        return original(self, doc_ids)

    update.calls = []
    return update


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"\x80\x05K\x01."])
def test_a_damaged_or_foreign_kept_index_is_built_again(settings, built, content):
    pipe = Pipeline(settings)
    path = _kept_path(pipe)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    r = pipe.retriever()
    assert built["n"] == 1 and r.knows("bitcoin")
    assert Retriever.open(pipe.store, pipe.embedder, path) is not None  # replaced by a good one


def test_a_kept_index_of_an_older_format_is_built_again_not_read(settings, built):
    """A file kept by an earlier version (here: retriever-2's plain sets of words) is never read into this one's
    classes: the next process builds the index again and keeps it in the current format."""
    pipe = Pipeline(settings)
    path = _kept_path(pipe)
    path.parent.mkdir(parents=True)
    old = {"metas": {}, "_doc_chunks": {}, "_records": {}, "_index": LexicalIndex(), "_warned": set(),
           "_words": {"bitcoin"}, "_prefixes": {"bitc"}, "_word_docs": {"bitcoin": 1}, "_prefix_words": {"bitc": 1},
           "_doc_words": {"a": {"bitcoin"}}}
    path.write_bytes(pickle.dumps({"format": f"retriever-2/tokens-{TOKENS_VERSION}", "state": old}))
    assert Retriever.open(pipe.store, pipe.embedder, path) is None
    r = pipe.retriever()
    assert built["n"] == 1 and r.knows("bitcoin") and r._index.documents()
    assert pickle.loads(path.read_bytes())["format"] == SNAPSHOT_FORMAT
    assert Retriever.open(pipe.store, pipe.embedder, path) is not None


def test_changed_names_the_documents_whose_records_differ_in_any_field_but_the_text(settings):
    """The index keeps a fingerprint per document, not its record: any field that differs still tells."""
    pipe = Pipeline(settings)
    r = pipe.retriever()
    records = pipe.store.doc_records()
    doc = sorted(records)[0]
    rec = records[doc]
    assert r.changed(records) == [] and r.n_docs == len(records)
    assert r.changed({**records, doc: replace(rec, text="not kept by the index")}) == []
    for field, value in [("content_hash", rec.content_hash + "0"), ("ingested_at", rec.ingested_at + 1e-6),
                         ("pending", True), ("title", rec.title + " "), ("n_chunks", rec.n_chunks + 1),
                         ("path", ""), ("pages", 1)]:
        assert r.changed({**records, doc: replace(rec, **{field: value})}) == [doc], field
    others = {d: x for d, x in records.items() if d != doc}
    assert r.changed(others) == [doc] and r.changed({**records, "new": rec}) == ["new"]
