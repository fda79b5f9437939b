"""The growth section: synthetic corpora (eval/synthetic.py) at each size, ingest time and retrieval latency, and
Chroma's search against exact brute-force cosine (numpy) for speed and recall@10.

Up to `embed_max` chunks the corpus goes through the real pipeline and embedder; above it, the same pipeline with
a word-hashing embedder (no model) while the real one encodes the queries; at every size, seeded clustered vectors
go straight into a Chroma store. It leaves out answer quality (`rag eval`) and the gold corpus (the other sections).
"""

from __future__ import annotations

import random
import re
import shutil
import time
from pathlib import Path

import numpy as np

from eval import synthetic
from eval.bench.measure import Log, pct
from ingest.embed import FakeEmbedder, get_embedder
from ingest.pipeline import KnownFiles, sync
from ingest.store import ChunkStore
from rag.retrieve import Retriever
from rag.settings import Settings


class HashEmbedder(FakeEmbedder):
    """The fake's word hashing at MiniLM's 384 dimensions: vectors for 100k chunks and their sentences in a minute,
    so the whole retrieval path (query encoding, Chroma, BM25, sentence windows) can be timed at sizes too large to
    embed on a laptop CPU. Its vectors mean little; only the timings of that row count."""

    name = "hash384"
    dim = 384


def brute_force(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest cosines (rows and query are unit vectors), best first."""
    sims = vectors @ q
    top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
    return top[np.argsort(-sims[top], kind="stable")]


def search_stats(store: ChunkStore, vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int = 10) -> dict:
    """Chroma's k-NN (through ChunkStore.query, as retrieval calls it) vs exact cosine over the same vectors.

    Recall@k counts a returned id as right when its exact cosine is at least the k-th best one (less 1e-5), so that
    ties at the cut-off, common with the fake embedder, do not count as misses.
    """
    pos = {cid: i for i, cid in enumerate(ids)}
    dense_t, brute_t, recall = [], [], []
    for q in queries:
        t = time.perf_counter()
        got = store.query(q, k)
        dense_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        exact = brute_force(vectors, q, k)
        brute_t.append(time.perf_counter() - t)
        sims = vectors @ q
        cut = sims[exact[-1]] - 1e-5
        recall.append(sum(1 for cid, _ in got if cid in pos and sims[pos[cid]] >= cut) / len(exact))
    return {"dense": pct(dense_t), "brute": pct(brute_t), "recall_at_10": float(np.mean(recall)),
            "recall_at_10_min": float(np.min(recall))}


def bench_growth(settings: Settings, work: Path, sizes: list[int], embed_max: int, n_queries: int, log: Log) -> dict:
    embedder = get_embedder(settings.embedder, settings.model_dir)
    rows = []
    for size in sizes:
        if size <= embed_max:
            rows.append(pipeline_row(work, size, n_queries, embedder, embedder, settings, log))
        elif settings.embedder != "fake":  # (on the fakes, the row above is already this one)
            rows.append(pipeline_row(work, size, n_queries, HashEmbedder(), embedder, settings, log))
        rows.append(synthetic_row(work, size, n_queries, log))
    return {"rows": rows, "embed_max": embed_max,
            "how": f"sizes up to {embed_max:,}: synthetic articles (eval/synthetic.py, seed 0) through ingest.sync "
                   f"with the {settings.embedder} embedder, retrieval = Retriever.retrieve (query embedding, Chroma, "
                   "BM25, sentence windows) on questions made from corpus sentences; larger sizes: the same "
                   "articles through ingest.sync with a 384-d word-hashing embedder (HashEmbedder, no model), and "
                   f"Retriever.retrieve with the {settings.embedder} embedder encoding the query, so the whole "
                   "retrieval path is timed at that size; every size: seeded clustered "
                   "unit vectors (384-d, calibrated to MiniLM's spread, see eval/synthetic.py) added straight to a "
                   "fresh Chroma store through ChunkStore.add_chunks, queries drawn from the same topics; dense = "
                   "ChunkStore.query (k=10); brute force = numpy dot product over all vectors + argpartition"}


def _growth_queries(folder: Path, n: int, seed: int = 7) -> list[str]:
    """Questions made from the corpus: a sentence's words, partly dropped and shuffled (deterministic)."""
    rng = random.Random(seed)
    files = sorted(folder.glob("*.txt"))
    out = []
    for _ in range(n):
        text = rng.choice(files).read_text(encoding="utf-8").split("\n\n")
        para = rng.choice(text[1:])
        words = rng.choice(re.split(r"(?<=\.)\s+", para)).rstrip(".").split()
        keep = [w for w in words if rng.random() < 0.6] or words[:3]
        rng.shuffle(keep)
        out.append("What about " + " ".join(keep) + "?")
    return out


def pipeline_row(work: Path, size: int, n_queries: int, doc_embedder, query_embedder, settings: Settings,
                 log: Log, location: str | None = None) -> dict:
    """A synthetic corpus of `size` chunks through ingest.sync, then Retriever.retrieve timed on it. The store is a
    fresh folder in `work`, or the collection of its embedder at `location` (a server URL), dropped at the end."""
    folder = work / f"syn-{size}"
    n_docs = synthetic.write_corpus(folder, size)
    store = ChunkStore(location or str(work / f"growth-{size}-{doc_embedder.name}"), doc_embedder.name)
    known = KnownFiles()  # as a serving Pipeline keeps it
    marks: list[tuple[float, int]] = []
    t_ingest = time.perf_counter()
    report = sync(folder, store, doc_embedder, lambda done, _total, _doc: marks.append((time.perf_counter(), done)),
                  known=known)
    ingest_s = time.perf_counter() - t_ingest
    t = time.perf_counter()
    retriever = Retriever(store, query_embedder)
    index_s = time.perf_counter() - t
    kept = work / f"kept-{size}.pkl"  # what a new process does instead: open the kept index, diff the records
    retriever.save(kept)
    t = time.perf_counter()
    opened = Retriever.open(store, query_embedder, kept)
    assert opened is not None and not opened.changed(store.doc_records())
    open_s = time.perf_counter() - t
    kept.unlink()
    texts = _growth_queries(folder, n_queries)
    times = []
    for q in texts:
        t = time.perf_counter()
        retriever.retrieve(q, settings.top_k, settings.max_sources, settings.context_chars)
        times.append(time.perf_counter() - t)
    ids, vecs = store.vectors("chunks")
    stats = search_stats(store, vecs, ids, doc_embedder.embed(texts))
    del ids, vecs
    row = {"size": size, "vectors": doc_embedder.name, "docs": n_docs, "chunks": store.count(),
           "chunks_embedded": report.chunks_embedded, "sentences": store.sentence_count(),
           "ingest_s": ingest_s, "chunks_per_s": size / ingest_s,
           "write_chunks_per_s": by_tenths(marks, t_ingest, size), "lexical_index_s": index_s,
           "lexical_open_s": open_s, "retrieve": pct(times), **stats}
    added = row["add_article"] = add_one_article(folder, store, doc_embedder, retriever, settings, known)
    log(f"  {size:>7,} chunks ({doc_embedder.name}): ingest {ingest_s:.1f}s, index build {index_s:.2f}s / open "
        f"{open_s:.2f}s, one article added and found in {added['seconds']:.2f}s, retrieve p50 "
        f"{row['retrieve']['p50'] * 1e3:.1f} ms, dense p50 {stats['dense']['p50'] * 1e3:.1f} ms, "
        f"recall@10 {stats['recall_at_10']:.3f}")
    shutil.rmtree(folder, ignore_errors=True)
    _remove(store)
    return row


def by_tenths(marks: list[tuple[float, int]], t0: float, total: int) -> list[float]:
    """Items per second over each tenth of a write, from (time, items done so far) marks: whether writing slows
    as the store grows."""
    rates, last_t, last_n = [], t0, 0
    for t, n in marks:
        if n - last_n >= total / 10 or n == total and n > last_n:
            rates.append((n - last_n) / max(t - last_t, 1e-9))
            last_t, last_n = t, n
    return rates


def _remove(store: ChunkStore) -> None:
    if store.location.startswith(("http://", "https://")):
        with store.writing():
            store.drop()
    else:
        shutil.rmtree(store.location, ignore_errors=True)


NEW_ARTICLE = ("# Harbour lighthouse keeper retires\n\nThe Quillhaven lighthouse keeper, Odalys Verhoeven, "
               "retired on Friday after 41 years of tending the lamp. The harbour board said the lighthouse will be "
               "automated next spring.\n")
NEW_QUESTION = "When did the Quillhaven lighthouse keeper Odalys Verhoeven retire?"


def add_one_article(folder: Path, store: ChunkStore, embedder, retriever: Retriever, settings: Settings,
                    known: KnownFiles | None = None) -> dict:
    """What a serving process does when one article lands in a collection of this size: sync the folder (the new
    file is read, chunked, embedded and stored; the rest is only compared), update the index it already holds by
    the changed documents, and retrieve for a question only the new article answers. Its seconds, whether the
    article was the first source, and the documents the index update touched (1: it was not rebuilt). A serving
    process has synced its folder since it started (`rag serve` and `rag ui` do when they start): so does this,
    untimed, first, with the `known` files it keeps (see ingest.pipeline.KnownFiles)."""
    t = time.perf_counter()
    sync(folder, store, embedder, known=known)
    resync_s = time.perf_counter() - t
    (folder / "zz_new_article.md").write_text(NEW_ARTICLE, encoding="utf-8")
    t = time.perf_counter()
    report = sync(folder, store, embedder, known=known)
    t_sync = time.perf_counter() - t
    changed = retriever.changed(store.doc_records())
    retriever.update(changed)
    t_update = time.perf_counter() - t - t_sync
    sources = retriever.retrieve(NEW_QUESTION, settings.top_k, settings.max_sources, settings.context_chars).sources
    seconds = time.perf_counter() - t
    first = bool(sources) and "Verhoeven" in sources[0].text
    return {"seconds": seconds, "resync_unchanged_s": resync_s, "sync_s": t_sync, "update_s": t_update,
            "added": report.added, "documents_updated": len(changed), "found_first": first}


def synthetic_row(work: Path, size: int, n_queries: int, log: Log, location: str | None = None) -> dict:
    """Seeded clustered vectors added straight to a fresh Chroma store (a folder in `work`, or the "synthetic"
    collection at `location`, dropped at the end), each batch timed, then searched (no pipeline, no model)."""
    vectors, queries = synthetic.clustered_vectors(size, seed=size, queries=n_queries)
    store = ChunkStore(location or str(work / f"vectors-{size}"), "synthetic")
    ids = [f"v{i}" for i in range(size)]
    marks = []
    t = time.perf_counter()
    step = 5000
    for i in range(0, size, step):
        store.add_chunks(ids=ids[i : i + step], vectors=vectors[i : i + step],
                         texts=[f"synthetic chunk {j}" for j in range(i, min(size, i + step))],
                         metas=[{"doc_id": f"d{j // 10}", "title": "", "start": 0, "end": 0, "index": j % 10}
                                for j in range(i, min(size, i + step))])
        marks.append((time.perf_counter(), min(size, i + step)))
    insert_s = time.perf_counter() - t
    stats = search_stats(store, vectors, ids, queries)
    log(f"  {size:>7,} chunks (synthetic vectors): insert {insert_s:.1f}s, dense p50 "
        f"{stats['dense']['p50'] * 1e3:.1f} ms, brute p50 {stats['brute']['p50'] * 1e3:.1f} ms, "
        f"recall@10 {stats['recall_at_10']:.3f}")
    _remove(store)
    return {"size": size, "vectors": "synthetic", "chunks": size, "ingest_s": insert_s,
            "chunks_per_s": size / insert_s, "write_chunks_per_s": by_tenths(marks, t, size), "batch": step,
            "retrieve": None, **stats}
