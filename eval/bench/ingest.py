"""The ingest section: `ingest.sync` of the corpus into a fresh store, against the bare engine (onnxruntime, or
sentence-transformers `encode` where that fails) on every text the pipeline embeds (chunks and sentences); then a
re-ingest of the unchanged corpus.

Only plain-text corpora as `sync` reads them; PDF and DOCX extraction is another section's (eval/bench/formats.py).
Whole `rag ingest` processes, with their start-up and memory, are the process section's.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from eval.bench.measure import Log, profiled
from ingest.chunking import chunk_document, sentence_spans
from ingest.embed import get_embedder
from ingest.errors import SetupError
from ingest.loaders import Document
from ingest.pipeline import IngestReport, load_folder, sync
from ingest.store import ChunkStore
from rag.settings import Settings


def embedded_texts(corpus: Path) -> tuple[int, list[str]]:
    """(number of chunks, every text `sync` embeds for the corpus: each chunk, then each sentence in it)."""
    docs = [d for d in load_folder(corpus, IngestReport()) if isinstance(d, Document)]  # (no `known`: all are)
    n_chunks, texts = 0, []
    for doc in docs:
        chunks = chunk_document(doc)
        n_chunks += len(chunks)
        texts += [c.text for c in chunks]
        texts += [doc.text[a:b] for c in chunks for a, b in sentence_spans(doc.text, c.start, c.end)]
    return n_chunks, texts


def bare_encoder(embedder_id: str, embedder=None):
    """The engine under our embedder, called directly: its onnxruntime session once it runs through one, else
    sentence-transformers `encode` (or the fake's embed)."""
    onnx = getattr(embedder, "_onnx", None)
    if onnx is not None:
        return lambda texts: onnx.embed(texts, 64)
    if embedder_id == "fake":
        from ingest.embed import FakeEmbedder

        return FakeEmbedder().embed
    from sentence_transformers import SentenceTransformer

    from ingest.embed import MiniLMEmbedder

    model = SentenceTransformer(str(MiniLMEmbedder.model_dir()), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    return encode


def bench_ingest(settings: Settings, work: Path, repeat: int, log: Log, profile_dir: Path | None) -> dict:
    """Median of `repeat` interleaved runs of each side; "_store" hands the last fresh store to the query section."""
    embedder = get_embedder(settings.embedder, settings.model_dir)
    n_chunks, texts = embedded_texts(settings.corpus)
    embedder.embed(texts[:16])  # load both models and warm them before anything is timed
    encode = bare_encoder(settings.embedder, embedder)  # the engine the embedder settled on
    encode(texts[:16])
    piped, bare, store = [], [], None
    for i in range(repeat):  # interleaved, so drift in the machine's speed hits both alike
        t = time.perf_counter()
        encode(texts)
        bare.append(time.perf_counter() - t)
        store = ChunkStore(str(work / f"ingest-{i}"), embedder.name)
        t = time.perf_counter()
        report = sync(settings.corpus, store, embedder)
        piped.append(time.perf_counter() - t)
        if report.chunks_embedded != n_chunks:
            raise SetupError(f"ingest embedded {report.chunks_embedded} chunks, expected {n_chunks}")
        log(f"  run {i + 1}: pipeline {piped[-1]:.2f}s, bare encode {bare[-1]:.2f}s")
    assert store is not None
    again = []
    for _ in range(3):
        t = time.perf_counter()
        report = sync(settings.corpus, store, embedder)
        again.append(time.perf_counter() - t)
    if report.chunks_embedded:
        raise SetupError("re-ingest of an unchanged corpus embedded chunks again")
    if profile_dir is not None:
        with profiled(profile_dir, "ingest"):
            sync(settings.corpus, ChunkStore(str(work / "ingest-profiled"), embedder.name), embedder)
    t_pipe, t_bare = statistics.median(piped), statistics.median(bare)
    return {
        "chunks": n_chunks, "texts_embedded": len(texts), "sentences": len(texts) - n_chunks, "repeat": repeat,
        "pipeline_seconds": piped, "bare_encode_seconds": bare,
        "pipeline_chunks_per_s": n_chunks / t_pipe, "bare_chunks_per_s": n_chunks / t_bare,
        "ratio": t_bare / t_pipe, "reingest_seconds": again, "reingest_s": statistics.median(again),
        "how": "median over runs; each pipeline run is ingest.sync into a fresh local store (chunks, sentences, "
               "document records); bare is one encode() of the same texts, batch 64, normalised; both warm",
        "_store": store.location,
    }
