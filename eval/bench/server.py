"""The server section: the growth section's two rows at 1M chunks, with Chroma on a server (for `rag bench`).

    from eval.bench.server import bench_server
    result = bench_server(settings, work, chunks=1_000_000, n_queries=100, log=print)

A team's store lives on a Chroma server, so this is where size is measured: `chroma run` is started on a free
loopback port with its data in `work` (or `url` names a server already running, on which the collections
`*_synthetic` and `*_hash384` are written and then dropped). On it, the rows of eval/bench/growth.py:
- seeded clustered vectors added in batches of 5,000, each batch timed; Chroma's k-NN p50 and its recall@10
  against exact search over the same vectors;
- the synthetic articles through ingest.sync with word-hashing vectors (the writes timed by tenths), a Retriever
  built over them, and `Retriever.retrieve` p50 with the real embedder encoding each question, beside Chroma's
  own p50 on the same store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from eval.bench.growth import HashEmbedder, pipeline_row, synthetic_row
from eval.bench.measure import Log
from eval.bench.process import _free_port
from ingest.embed import get_embedder
from ingest.errors import SetupError
from rag.settings import Settings

CHUNKS = 1_000_000
QUICK_CHUNKS = 300
START_S = 60.0


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """`chroma run` on a free loopback port with its data in `folder`; its URL while the block runs, then stopped."""
    exe = shutil.which("chroma")
    if exe is None:
        raise SetupError("the `chroma` command is missing: it comes with chromadb (pip install -e .)")
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = folder / "server.log"
    with open(log_file, "wb") as sink:
        proc = subprocess.Popen([exe, "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port",
                                 str(port)], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        t0 = time.monotonic()
        while not _alive(url):
            if proc.poll() is not None or time.monotonic() - t0 > START_S:
                raise SetupError(f"`chroma run` did not answer on {url}: {log_file.read_text(errors='replace')[-600:]}")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(folder / "data", ignore_errors=True)


def bench_server(settings: Settings, work: Path, chunks: int, n_queries: int, log: Log, url: str | None = None,
                 pipeline_chunks: int | None = None) -> dict:
    """Both rows on one server: the pipeline's at `pipeline_chunks` (default: `chunks`; on 2 cores ingest.sync
    writes some 130 chunks a second with their sentences to `chroma run`, so 1M of them take over two hours),
    the clustered vectors' at `chunks`."""
    embedder = get_embedder(settings.embedder, settings.model_dir)
    vectors = HashEmbedder() if settings.embedder != "fake" else embedder  # the fake: no 384-d model to match
    piped = pipeline_chunks or chunks
    with nullcontext(url) if url else chroma_server(work / "chroma-server") as location:
        log(f"  Chroma server at {location}")
        synthetic = synthetic_row(work, chunks, n_queries, log, location)  # first: the quicker of the two
        rows = [pipeline_row(work, piped, n_queries, vectors, embedder, settings, log, location), synthetic]
    return {"chunks": chunks, "pipeline_chunks": piped, "server": url or "chroma run on loopback, started by the bench",
            "rows": rows,
            "how": f"on a Chroma server ({url or '`chroma run` on a loopback port'}): {piped:,} chunks of synthetic "
                   f"articles (eval/synthetic.py, seed 0) through ingest.sync with the {vectors.name} embedder "
                   "(384-d word hashing on a real run), writes timed by tenths; Retriever.retrieve with the "
                   f"{settings.embedder} embedder encoding the query (query embedding, Chroma over the network, "
                   "BM25, sentence windows) on questions made from corpus sentences, beside Chroma's own k-NN "
                   f"(ChunkStore.query, k=10); and {chunks:,} seeded clustered unit vectors added in batches of "
                   "5,000 (each timed), searched with ChunkStore.query against exact numpy search for recall@10"}
