"""The bench's targets, in one table: each figure's key, label, unit, comparison and goal, and where its value is
read from a finished run's result (bench.json). The report's table and verdicts, the summary on stdout and the
target lines on the plots all read this table; no goal or label is written anywhere else.

The goals are the issue's, for a warm run on a 2-core CPU with the default model. This module measures nothing and
draws nothing: `figures` reads values out of a result, `judge` holds them against the goals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eval.bench.measure import GB

Reader = Callable[[dict], "float | None"]


def dig(d, *path):
    """d[path[0]][path[1]]...; None where a step is missing or None."""
    for key in path:
        if not isinstance(d, dict) or d.get(key) is None:
            return None
        d = d[key]
    return d


def at(*path: str, scale: float = 1.0) -> Reader:
    """A reader of the number at `path` in the result, times `scale` (into the target's unit)."""
    def read(result: dict) -> float | None:
        v = dig(result, *path)
        return None if v is None else v * scale
    return read


def _serving_1m(result: dict) -> float | None:
    """The memory section's peak RSS in GB, when its kept index held 1M chunks or more (--memory-chunks less: none)."""
    m = dig(result, "memory") or {}
    return m["peak_rss_bytes"] / GB if m.get("chunks", 0) >= 1_000_000 and "peak_rss_bytes" in m else None


def server_at(kind: str, *path: str, scale: float = 1.0) -> Reader:
    """A reader of the number at `path` in the server section's row of `kind` ("synthetic" vectors, or the
    pipeline's hashed vectors), when that row held 1M chunks or more (fewer: none)."""
    def read(result: dict) -> float | None:
        srv = result.get("server") or {}
        row = next((r for r in srv.get("rows", []) if (r.get("vectors") == "synthetic") == (kind == "synthetic")),
                   None)
        if row is None or row.get("size", 0) < 1_000_000:
            return None
        v = dig(row, *path)
        return None if v is None else v * scale
    return read


def growth_row(result: dict, size: int, synthetic_vectors: bool) -> dict | None:
    """The growth row of `size` chunks: the row of seeded vectors added straight to Chroma, or
    (synthetic_vectors=False) the first row ingested through the pipeline."""
    rows = [r for r in dig(result, "growth", "rows") or []
            if (r["vectors"] == "synthetic") == synthetic_vectors and r["size"] == size]
    return rows[0] if rows else None


def growth_at(size: int, synthetic_vectors: bool, *path: str, scale: float = 1.0) -> Reader:
    """A reader of the number at `path` in the growth row of `size` chunks (see growth_row)."""
    def read(result: dict) -> float | None:
        row = growth_row(result, size, synthetic_vectors)
        return at(*path, scale=scale)(row) if row else None
    return read


def added_and_found(size: int) -> Reader:
    """The seconds of the pipeline row's `add_article` (eval/bench/growth.py `add_one_article`) at `size` chunks, or
    infinity (a miss) when the new article was not the first source: added but not found is not answerable."""
    def read(result: dict) -> float | None:
        got = dig(growth_row(result, size, False), "add_article")
        if not isinstance(got, dict):
            return None
        return float(got["seconds"]) if got.get("found_first") else float("inf")
    return read


def percent_over(reader: Reader) -> Reader:
    """A ratio read as the percentage above 1 (1.12 -> 12.0)."""
    def read(result: dict) -> float | None:
        v = reader(result)
        return None if v is None else (v - 1) * 100
    return read


@dataclass(frozen=True)
class Target:
    key: str
    label: str  # its row in the report ("what" in bench.json)
    short: str  # its line's name on a plot
    unit: str  # "s", "ms", "%", "GB", or "" for a plain number
    op: str  # "<", "<=" or ">="
    goal: float
    read: Reader  # its value in `unit` from a result; None where that part was not run

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return {"<": value < self.goal, "<=": value <= self.goal, ">=": value >= self.goal}[self.op]

    def show(self, value: float | None) -> str:
        """A value in this target's unit, as the report and the summary print it."""
        if value is None:
            return "–"
        return {"%": f"{value:+.1f}%", "ms": f"{value:.1f} ms", "s": f"{value:.2f} s",
                "GB": f"{value:.2f} GB"}.get(self.unit, f"{value:.3f}")

    def goal_text(self) -> str:
        """'< 10.00 s', '>= 0.950': the goal with its comparison, for the report, the summary and plot legends."""
        return f"{self.op} {self.show(self.goal).lstrip('+')}"


TARGETS: tuple[Target, ...] = (
    # The quality issue's limits on what better answers may cost (warm, 2-core CPU)
    Target("ask_total_p50", "ask() total, p50", "total", "s", "<=", 4.0, at("query", "total", "p50")),
    Target("ask_first_token_p50", "ask() time to first token, p50", "first token", "s", "<=", 2.0,
           at("query", "first_token", "p50")),
    Target("overhead_p50", "overhead over bare llama.cpp (our total / bare generation - 1), p50", "overhead", "%",
           "<", 10.0, percent_over(at("query", "overhead_ratio", "p50"))),
    Target("api_overhead_p50", "OpenAI-compatible API over in-process ask(), p50", "API overhead", "ms", "<=", 50.0,
           at("api", "overhead_p50_ms")),
    Target("retrieve_p50", "retrieval p50 at corpus size", "retrieval", "ms", "<", 50.0,
           at("query", "retrieve", "p50", scale=1e3)),
    Target("retrieve_p50_100k", "retrieval p50 at 100k chunks (Retriever.retrieve, hashed vectors)",
           "retrieval at 100k", "ms", "<", 150.0, growth_at(100_000, False, "retrieve", "p50", scale=1e3)),
    Target("dense_p50_100k", "dense search p50 at 100k chunks (Chroma, clustered vectors)", "Chroma at 100k", "ms",
           "<", 150.0, growth_at(100_000, True, "dense", "p50", scale=1e3)),
    Target("recall10_100k", "recall@10 at 100k chunks vs brute force", "recall@10 at 100k", "", ">=", 0.95,
           growth_at(100_000, True, "recall_at_10")),
    Target("add_article_s_100k", "one article added to 100k chunks and retrieved first, in a serving process "
           "(sync + index update + retrieve, hashed vectors)", "add at 100k", "s", "<=", 3.0,
           added_and_found(100_000)),
    Target("ingest_ratio", "ingest throughput / bare encode throughput", "ingest / bare", "", ">=", 0.80,
           at("ingest", "ratio")),
    Target("pdf_ingest_ratio", "PDF ingest (200 pages) / bare extraction + encode", "PDF / bare", "", ">=", 0.80,
           at("formats", "pdf", "ratio")),
    Target("docx_ingest_ratio", "DOCX ingest (100 files) / bare extraction + encode", "DOCX / bare", "", ">=", 0.80,
           at("formats", "docx", "ratio")),
    # The big-inputs issue: reading and cutting one file (no embedding) stays linear in its size (big_inputs.py).
    # Linear code took 1.1-1.5 s for 1 MB on a shared 2-core machine, growth 3-5 between runs; 16 is quadratic.
    Target("big_input_1mb_s", "load + chunk + sentences of a 1 MB file, slowest generated kind", "1 MB file", "s",
           "<=", 10.0, at("big_inputs", "slowest_largest_s")),
    Target("big_input_growth", "growth of that time from 256 KB to 1 MB, steepest kind (4 linear, 16 quadratic)",
           "1 MB / 256 KB", "", "<=", 6.0, at("big_inputs", "worst_growth")),
    Target("reingest_s", "re-ingest of the unchanged corpus", "re-ingest", "s", "<", 1.0, at("ingest", "reingest_s")),
    # The cold-start issue: a fresh `rag ask` answers within 5 s once the model file is in the cache (process.py)
    Target("cold_start_s", "cold start: a fresh `rag ask` on the ingested store, spawn to exit, median",
           "cold start", "s", "<=", 5.0, at("process", "cold_start_s")),
    Target("served_ask_s", "cold start with a `rag serve` running: a fresh `rag ask` it answers, spawn to exit, "
           "median", "cold start", "s", "<=", 5.0, at("process", "served_ask_s")),
    Target("rss_ask_gb", "peak RSS, rag ask", "ask", "GB", "<", 3.0,
           at("process", "ask", "peak_rss_bytes", scale=1 / GB)),
    Target("rss_ingest_gb", "peak RSS, rag ingest", "ingest", "GB", "<", 3.0,
           at("process", "ingest", "peak_rss_bytes", scale=1 / GB)),
    Target("rss_ui_gb", "peak RSS, rag ui after one answer", "ui", "GB", "<", 3.0,
           at("process", "ui", "peak_rss_bytes", scale=1 / GB)),
    # The scale issue: a process serving a 1M-chunk collection stays under 2.5 GB (eval/bench/memory.py)
    Target("rss_serve_1m_gb", "peak RSS of a process with the model, one answer and the kept index of 1M chunks "
           "(Chroma on a server)", "serve 1M", "GB", "<", 2.5, _serving_1m),
    # ... and retrieval at 1M chunks on a Chroma server (eval/bench/server.py)
    Target("retrieve_p50_1m", "retrieval p50 at 1M chunks on a Chroma server (Retriever.retrieve, hashed vectors)",
           "retrieval at 1M", "ms", "<=", 150.0, server_at("pipeline", "retrieve", "p50", scale=1e3)),
    Target("dense_p50_1m", "dense search p50 at 1M chunks on a Chroma server (Chroma, clustered vectors)",
           "Chroma at 1M", "ms", "<=", 150.0, server_at("synthetic", "dense", "p50", scale=1e3)),
    Target("recall10_1m", "recall@10 at 1M chunks on a Chroma server vs brute force", "recall@10 at 1M", "", ">=",
           0.95, server_at("synthetic", "recall_at_10")),
)
_BY_KEY = {t.key: t for t in TARGETS}


def target(key: str) -> Target:
    return _BY_KEY[key]


def figures(result: dict) -> dict[str, float | None]:
    """Each target's measured value, in the target's unit; None where that part was not run."""
    return {t.key: t.read(result) for t in TARGETS}


def judge(result: dict, quick: bool) -> list[dict]:
    """Every target with its value and verdict (pass None where not measured), as bench.json keeps them."""
    values, out = figures(result), []
    for t in TARGETS:
        v = values[t.key]
        out.append({"key": t.key, "what": t.label, "value": v, "unit": t.unit, "op": t.op, "target": t.goal,
                    "pass": t.met(v), "on_fakes": quick})
    return out
