"""Ingest throughput for PDF and DOCX files, against the bare libraries underneath it (for `rag bench`).

    from eval.bench.formats import ingest_formats_bench
    result = ingest_formats_bench(quick=False)   # a 200-page PDF and 100 DOCX files, on MiniLM

For each format, at two sizes (a 100- and a 200-page PDF; 50 and 100 DOCX files; a tenth of that with
quick=True), it times `ingest.sync` into a fresh store against the bare work underneath: the library's own text
extraction (pypdf `extract_text` of every page, python-docx's paragraph and cell texts) plus one bare
`encode` of exactly the texts ingest embeds (every chunk and every sentence, as rag bench's ingest section does).
`ratio` is bare / pipeline at the larger size (1.0: ingest costs nothing on top), `growth` the pipeline's time at
the larger size over the smaller (2.0 is linear). The files are generated (fpdf2, python-docx) from
eval/synthetic.py's seeded articles before anything is timed. quick=True uses the fake embedder, so its figures
only show that the harness works. Nothing here is run by the test suite except quick=True.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from eval import synthetic
from ingest.embed import FakeEmbedder, get_embedder
from ingest.errors import SetupError
from ingest.pipeline import sync
from ingest.store import ChunkStore

FULL = {"pdf": (100, 200), "docx": (50, 100)}  # pages of one PDF; number of DOCX files
QUICK = {"pdf": (10, 20), "docx": (5, 10)}


def _paragraphs(rng: random.Random, topic, n: int) -> list[str]:
    return synthetic.article(rng, topic, n).strip().split("\n\n")


def write_pdf(path: Path, pages: int, seed: int = 0) -> None:
    from fpdf import FPDF

    rng = random.Random(seed)
    topics = [synthetic._Topic(rng) for _ in range(10)]
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for i in range(pages):
        pdf.add_page()
        for p in _paragraphs(rng, topics[i % len(topics)], 4):
            pdf.multi_cell(0, 6, p.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def write_docx_files(folder: Path, n: int, seed: int = 0) -> None:
    import docx

    rng = random.Random(seed)
    topics = [synthetic._Topic(rng) for _ in range(10)]
    for i in range(n):
        d = docx.Document()
        title, *body = _paragraphs(rng, topics[i % len(topics)], 8)
        d.add_heading(title, 0)
        for j, p in enumerate(body):
            if j % 3 == 0:
                d.add_heading(f"Part {j // 3 + 1}", 1)
            d.add_paragraph(p)
        d.save(str(folder / f"doc_{i:04d}.docx"))


def bare_extract(kind: str, corpus: Path) -> int:
    """The library's own text extraction of every file, as a caller of it would do it; returns characters read."""
    n = 0
    for path in sorted(corpus.iterdir()):
        if kind == "pdf":
            from pypdf import PdfReader

            n += sum(len(page.extract_text() or "") for page in PdfReader(path).pages)
        else:
            import docx

            document = docx.Document(str(path))
            n += sum(len(p.text) for p in document.paragraphs)
            n += sum(len(c.text) for t in document.tables for row in t.rows for c in row.cells)
    return n


class _Counting:
    """The embedder, counting the texts ingest hands it (the same workload as the bare encode, checked)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.texts = inner, inner.name, 0
        self.dim = inner.dim

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def embed(self, texts: list[str]):
        self.texts += len(texts)
        return self.inner.embed(texts)


def _one_size(kind: str, units: int, work: Path, embedder, encode, repeat: int) -> dict:
    from eval.bench.ingest import embedded_texts

    corpus = work / f"{kind}-{units}"
    corpus.mkdir()
    if kind == "pdf":
        write_pdf(corpus / "long.pdf", units)
    else:
        write_docx_files(corpus, units)
    n_chunks, texts = embedded_texts(corpus)
    piped, bare = [], []
    counted = 0
    for i in range(repeat):  # interleaved, so drift in the machine's speed hits both alike
        t = time.perf_counter()
        bare_extract(kind, corpus)
        encode(texts)
        bare.append(time.perf_counter() - t)
        counting = _Counting(embedder)
        store = ChunkStore(str(work / f"store-{kind}-{units}-{i}"), embedder.name)
        t = time.perf_counter()
        report = sync(corpus, store, counting)
        piped.append(time.perf_counter() - t)
        if report.chunks_embedded != n_chunks or report.skipped:
            raise SetupError(f"{kind}: ingest embedded {report.chunks_embedded} chunks (expected {n_chunks}), "
                             f"skipped {report.skipped}")
        counted = counting.texts
    return {"units": units, "chunks": n_chunks, "embedded_chunks": report.chunks_embedded,
            "texts_embedded_bare": len(texts), "texts_embedded_by_ingest": counted,
            "pipeline_seconds": piped, "bare_seconds": bare,
            "pipeline_s": statistics.median(piped), "bare_s": statistics.median(bare)}


def ingest_formats_bench(quick: bool) -> dict:
    """Ingest of generated PDF and DOCX corpora against bare extraction + bare encode; see the module docstring."""
    from eval.bench.ingest import bare_encoder

    embedder_id = "fake" if quick else "minilm"
    embedder = FakeEmbedder() if quick else get_embedder(embedder_id)
    encode = bare_encoder(embedder_id)
    embedder.embed(["warm up"] * 16)  # load and warm both before anything is timed
    encode(["warm up"] * 16)
    repeat = 1 if quick else 3
    out: dict = {"embedder": embedder_id, "quick": quick, "growth": {}}
    with tempfile.TemporaryDirectory(prefix="rag-bench-formats-") as tmp:
        for kind, sizes in (QUICK if quick else FULL).items():
            rows = [_one_size(kind, units, Path(tmp), embedder, encode, repeat) for units in sizes]
            big = rows[-1]
            out[kind] = {
                "unit": "pages of one PDF" if kind == "pdf" else "DOCX files",
                "chunks": big["chunks"], "embedded_chunks": big["embedded_chunks"],
                "texts_embedded_bare": big["texts_embedded_bare"],
                "texts_embedded_by_ingest": big["texts_embedded_by_ingest"],
                "pipeline_chunks_per_s": big["chunks"] / big["pipeline_s"],
                "ratio": big["bare_s"] / big["pipeline_s"], "sizes": rows,
            }
            out["growth"][kind] = rows[1]["pipeline_s"] / rows[0]["pipeline_s"]
    out["how"] = ("median over runs; pipeline = ingest.sync of the folder into a fresh local store; bare = the "
                  "library's own text extraction of every file plus one encode() of the texts ingest embeds; "
                  "ratio = bare / pipeline at the larger size; growth = pipeline time at the larger size over the "
                  "smaller (2.0 is linear)")
    return out
