"""The memory section: what a process serving a large collection holds, with Chroma on a server (for `rag bench`).

    from eval.bench.memory import bench_memory
    result = bench_memory(settings, work, chunks=1_000_000, question="...", log=print)

Texts stay in the store and are fetched for the chunks a question needs, so what grows in our own process with the
collection is the retriever's state: its lexical index, word set, chunk catalog and document fingerprints
(rag/retrieve.py, rag/lexical.py, rag/catalog.py). This section builds that state over `chunks` synthetic chunks
(eval/synthetic.py articles, ten paragraphs each) from a stand-in store that hands over the chunks and document
records as ChunkStore does, and keeps it in a file as a serving process does (`Retriever.save`). Then one fresh
process loads the model and the embedder, answers one question over the bundled corpus, and opens that kept index:
its peak RSS (run_measured's launcher) is the figure. Left out: the engine itself (at 1M chunks Chroma's memory is
the server's; its HTTP client holds no vectors) and dense search over the synthetic chunks (the growth section
times retrieval at size).
"""

from __future__ import annotations

import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from eval import synthetic
from eval.bench.measure import Log
from eval.bench.process import _env, run_measured
from ingest.embed import FakeEmbedder
from ingest.errors import SetupError
from ingest.store import DocRecord
from rag.retrieve import Retriever
from rag.settings import Settings

CHUNKS = 1_000_000
QUICK_CHUNKS = 2_000
TIMEOUT_S = 900.0


class StandInStore:
    """The reads a Retriever's build and its updates make of a ChunkStore, over synthetic articles held in memory."""

    location = "stand-in"
    collection = "memory-bench"

    def __init__(self, chunks: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        topics = [synthetic._Topic(rng) for _ in range(50)]
        self.records: dict[str, DocRecord] = {}
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.metas: list[dict] = []
        while len(self.ids) < chunks:
            n = len(self.records)
            text = synthetic.article(rng, topics[n % 50], 10)
            doc, digest = f"syn_{n:07d}", f"{n:064x}"
            title = text.split("\n", 1)[0]
            at = len(title)
            for i, para in enumerate(p for p in text[at:].split("\n\n") if p.strip()):
                if len(self.ids) >= chunks:
                    break
                start = text.index(para, at)
                at = start + len(para)
                self.ids.append(f"{doc}::{digest[:12]}::{i}")
                self.texts.append(para)
                self.metas.append({"doc_id": doc, "title": title, "start": start, "end": at, "index": i})
            self.records[doc] = DocRecord(doc_id=doc, path=f"{doc}.txt", title=title, author="", date="",
                                          content_hash=digest, n_chunks=10, ingested_at=0.0, text=text,
                                          pending=False, format="txt")

    def doc_records(self, with_text: bool = False, doc_ids: list[str] | None = None) -> dict[str, DocRecord]:
        wanted = self.records if doc_ids is None else {d: self.records[d] for d in doc_ids if d in self.records}
        return dict(wanted) if with_text else {d: replace(r, text="") for d, r in wanted.items()}

    def all_chunks(self, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        return self.ids, self.texts, self.metas

    def chunks_of(self, documents: list[str] | None, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        if documents is None:
            return self.all_chunks()
        wanted = set(documents)
        rows = [i for i, m in enumerate(self.metas) if m["doc_id"] in wanted]
        return [self.ids[i] for i in rows], [self.texts[i] for i in rows], [self.metas[i] for i in rows]


def bench_memory(settings: Settings, work: Path, chunks: int, question: str, log: Log) -> dict:
    t0 = time.perf_counter()
    store = StandInStore(chunks)
    log(f"  stand-in store: {len(store.ids):,} chunks in {len(store.records):,} articles "
        f"({time.perf_counter() - t0:.0f}s)")
    t0 = time.perf_counter()
    built = Retriever(store, FakeEmbedder())  # type: ignore[arg-type]  # the reads it makes are the stand-in's
    build_s = time.perf_counter() - t0
    kept = work / "memory" / "retriever.pkl"
    kept.parent.mkdir(parents=True, exist_ok=True)
    built.save(kept)
    del built, store
    log(f"  retriever over {chunks:,} chunks built in {build_s:.0f}s, kept in {kept.stat().st_size / 1e6:.0f} MB")
    r = run_measured([sys.executable, "-m", "eval.bench.memory", str(kept), question],
                     _env(settings, str(work / "memory" / "store")), work / "memory" / "serve.log", TIMEOUT_S)
    if r["exit_code"] != 0:
        raise SetupError(f"python -m eval.bench.memory failed: {r['output'][-600:]}")
    try:
        got = json.loads(r["full_output"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SetupError(f"eval.bench.memory printed no JSON: {r['output'][-600:]}") from None
    log(f"  a process with the model, one answer and the kept index of {chunks:,} chunks: peak RSS "
        f"{r['peak_rss_bytes'] / 2**30:.2f} GB (before the index {got['rss_answered_bytes'] / 2**30:.2f} GB)")
    return {"chunks": chunks, "build_s": build_s, "kept_bytes": kept.stat().st_size, **got,
            "peak_rss_bytes": r["peak_rss_bytes"], "seconds": r["seconds"],
            "how": "synthetic articles (eval/synthetic.py) through a stand-in store into Retriever, kept with "
                   "Retriever.save; then one fresh process (python -m eval.bench.memory): the pipeline answers one "
                   "question over the bundled corpus with the bench's model and embedder, then opens the kept "
                   "index with Retriever.open; peak RSS = ru_maxrss of run_measured's launcher. The Chroma engine "
                   "is not in it (a server's memory)."}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _serve(kept: Path, question: str) -> dict:
    """In a fresh process: one answer with the real pipeline, then the kept index opened beside it."""
    from rag.answer import pipeline

    pipe = pipeline(Settings.from_env())
    answer = pipe.ask(question)
    answered = _rss()

    class _Nowhere:  # open() reads only the file; the stand-in store stays in the bench's process
        location, collection = StandInStore.location, StandInStore.collection

    t0 = time.perf_counter()
    index = Retriever.open(_Nowhere(), pipe.embedder, kept)  # type: ignore[arg-type]
    if index is None:
        raise SetupError(f"the kept index {kept} could not be opened")
    return {"rss_answered_bytes": answered, "rss_opened_bytes": _rss(), "open_s": time.perf_counter() - t0,
            "index_docs": index.n_docs, "abstained": answer.abstained}


if __name__ == "__main__":
    print(json.dumps(_serve(Path(sys.argv[1]), sys.argv[2])))
