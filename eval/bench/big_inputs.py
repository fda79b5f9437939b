"""The big-inputs section: how reading and cutting one large file grows with its size (for `rag bench`).

    from eval.bench.big_inputs import bench_big_inputs
    result = bench_big_inputs(work, sizes=(256 * 1024, 1024 * 1024))

Each kind of generated input is written at each size (bytes of UTF-8) and taken through what ingest does with a
file before it embeds anything: `load_document` (read, for HTML the visible text by ingest/html.py, then title,
byline and residue lines), `chunk_document` (paragraphs, long ones split at Punkt sentences) and `sentence_spans`
of every chunk (the sentences ingest stores). The kinds are the shapes that have made ingest slow:
  - one_line:    prose on a single line with no line break (one paragraph of the whole file),
  - spans_html:  HTML with thousands of unclosed `<span>` tags (an HTML5 parser nests each in the last),
  - prose:       ordinary paragraphs separated by blank lines,
  - residue:     paragraphs with a "Share" line between each (residue lines were checked one by one per line).
Each row is the fastest of `repeat` runs; `growth` is the largest size's total over the smallest's (for 4x the
input, 4 is linear and 16 quadratic). Punkt and Lexbor are loaded before anything is timed. Embedding and the store
are left out (the ingest and formats sections time those); so is every file type but .txt and .html.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from eval import synthetic
from eval.bench.measure import Log
from ingest.chunking import chunk_document, sentence_spans
from ingest.html import extract
from ingest.loaders import load_document, read_text

SIZES = (256 * 1024, 1024 * 1024)
QUICK_SIZES = (16 * 1024, 64 * 1024)


def _prose(size: int, seed: int) -> list[str]:
    """Paragraphs of synthetic news (eval/synthetic.py) that hold more than `size` characters without separators."""
    rng = random.Random(seed)
    topics = [synthetic._Topic(rng) for _ in range(10)]
    paragraphs: list[str] = []
    total = 0
    while total <= size:
        body = synthetic.article(rng, topics[len(paragraphs) % 10], 6).strip().split("\n\n")[1:]
        paragraphs += body
        total += sum(len(p) for p in body)
    return paragraphs


def one_line(size: int) -> str:
    return " ".join(_prose(size, 1))


def spans_html(size: int) -> str:
    sentences = " ".join(_prose(size, 2)).split(". ")
    return "<!doctype html><title>Spans</title><body><p>" + "".join(f"<span>{s}. " for s in sentences)


def prose(size: int) -> str:
    return "Big article\n\n" + "\n\n".join(_prose(size, 3)) + "\n"


def residue(size: int) -> str:
    return "\n".join(p + "\nShare" for p in _prose(size, 4)) + "\n"


KINDS: dict[str, tuple[str, Callable[[int], str]]] = {
    "one_line": (".txt", one_line), "spans_html": (".html", spans_html), "prose": (".txt", prose),
    "residue": (".txt", residue),
}


def _exactly(text: str, size: int) -> str:
    """The text cut to `size` bytes of UTF-8 (the generators write ASCII)."""
    data = text.encode("utf-8")
    if len(data) < size:
        raise ValueError(f"generated {len(data)} bytes, fewer than the {size} asked for")
    return data[:size].decode("utf-8", errors="ignore")


def _once(path: Path, html: bool) -> dict:
    t0 = time.perf_counter()
    doc = load_document(path)
    t1 = time.perf_counter()
    chunks = chunk_document(doc)
    t2 = time.perf_counter()
    sentences = sum(len(sentence_spans(doc.text, c.start, c.end)) for c in chunks)
    t3 = time.perf_counter()
    extract_s = None
    if html:  # the visible-text extraction alone (it is inside load_s too)
        raw = read_text(path)
        t = time.perf_counter()
        extract(raw)
        extract_s = time.perf_counter() - t
    return {"chars": len(doc.text), "chunks": len(chunks), "sentences": sentences, "load_s": t1 - t0,
            "chunk_s": t2 - t1, "sentences_s": t3 - t2, "total_s": t3 - t0, "extract_s": extract_s}


def bench_big_inputs(work: Path, sizes: tuple[int, ...] = SIZES, repeat: int = 3, log: Log | None = None) -> dict:
    """Each kind at each size, best of `repeat`; see the module docstring."""
    folder = Path(work) / "big-inputs"
    folder.mkdir(parents=True, exist_ok=True)
    # Punkt's model and Lexbor load on first use: here, not while a clock runs.
    sentence_spans("Punkt is loaded here. Then the clocks start.")
    extract("<p>Lexbor too.</p>")
    kinds: dict[str, dict] = {}
    for kind, (suffix, make) in KINDS.items():
        rows = []
        for size in sizes:
            path = folder / f"{kind}-{size}{suffix}"
            path.write_text(_exactly(make(size), size), encoding="utf-8")
            runs = [_once(path, suffix == ".html") for _ in range(max(1, repeat))]
            best = min(runs, key=lambda r: r["total_s"])  # the fastest run whole, so its parts add up
            rows.append({"bytes": path.stat().st_size, **best})
            path.unlink()
        small, big = rows[0], rows[-1]
        kinds[kind] = {"rows": rows, "growth": big["total_s"] / small["total_s"],
                       "growth_by_stage": {k: big[k] / small[k] for k in ("load_s", "chunk_s", "sentences_s")
                                           if small[k]}}
        if log:
            log(f"  {kind}: " + ", ".join(f"{r['bytes'] // 1024} KB {r['total_s']:.2f}s" for r in rows)
                + f", growth {kinds[kind]['growth']:.1f}")
    slowest = max(kinds, key=lambda k: kinds[k]["rows"][-1]["total_s"])
    steepest = max(kinds, key=lambda k: kinds[k]["growth"])
    return {"sizes": list(sizes), "size_ratio": sizes[-1] / sizes[0], "kinds": kinds,
            "slowest": slowest, "slowest_largest_s": kinds[slowest]["rows"][-1]["total_s"],
            "steepest": steepest, "worst_growth": kinds[steepest]["growth"],
            "how": f"generated inputs of {' and '.join(f'{s // 1024} KB' for s in sizes)} (one line of prose, "
                   "HTML with unclosed <span>s, paragraphs, paragraphs with residue lines) through load_document, "
                   "chunk_document and sentence_spans of each chunk, no embedding; the fastest "
                   f"of {max(1, repeat)} runs; growth = total at the largest size / total at the smallest "
                   f"({sizes[-1] / sizes[0]:.0f}x the bytes)"}
