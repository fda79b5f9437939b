"""The bench's run folder: bench.json (the whole result), report.md (the targets, then a part for each section
that ran, then how each was measured) and the plots (eval/bench/plots.py); and the summary printed at the end.

Targets, their labels and goals come from eval/bench/targets.py. A section with no part of its own here is shown
as a table of its top-level figures, so a new section appears before anyone writes it a part; this module measures
nothing and judges nothing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from eval.bench.measure import GB
from eval.bench.plots import plot
from eval.bench.targets import dig, target

_NOT_SECTIONS = ("meta", "targets", "files")


def sections_of(result: dict) -> list[str]:
    """The sections in the result, in the order they ran."""
    return [k for k in result if k not in _NOT_SECTIONS]


def _ok(result: dict, section: str) -> dict | None:
    """A section's results, or None when it was not run or failed."""
    got = result.get(section)
    return got if isinstance(got, dict) and "error" not in got else None


def write_report(result: dict, out: Path) -> dict:
    files = {"json": "bench.json", "report": "report.md"}
    files.update(plot(out, {name: got for name in sections_of(result) if (got := _ok(result, name))}))
    result["files"] = files
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "report.md").write_text(markdown(result), encoding="utf-8")
    return files


def _verdict(t: dict, miss: str) -> str:
    return "–" if t["pass"] is None else "pass" if t["pass"] else miss


def summary(result: dict, out: Path) -> str:
    lines = [f"rag bench: {out}/report.md"]
    for t in result["targets"]:
        spec = target(t["key"])
        lines.append(f"  {_verdict(t, 'MISS'):4}  {spec.label}: {spec.show(t['value'])} ({spec.goal_text()})")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# rag bench, {m['started']}", "",
             f"{m['cpu']} · {m['cpus']} CPUs · Python {m['python']} · model `{m['llm']}` · embedder "
             f"`{m['embedder']}` · `rag bench {' '.join(m['argv'])}`".rstrip(), ""]
    if m["quick"]:
        lines += ["**Quick mode on the fake model and embedder: the figures test the harness, not the speed.**", ""]
    lines += ["## Targets", "", "| figure | measured | target | result |", "|---|---|---|---|"]
    for t in result["targets"]:
        spec = target(t["key"])
        lines.append(f"| {spec.label} | {spec.show(t['value'])} | {spec.goal_text()} | {_verdict(t, '**miss**')} |")
    for name in sections_of(result):
        got, part = _ok(result, name), _PARTS.get(name)
        if got:
            lines += ["", *(part(got) if part else _figures_md(name, got))]
    if "resources" in result.get("files", {}):
        lines += ["", "![ingest and memory](resources.png)"]
    for name in sections_of(result):
        if "error" in (result.get(name) or {}):
            lines += ["", f"## {name}: failed", "", f"    {result[name]['error']}"]
    lines += ["", "## How it was measured", ""]
    for name in sections_of(result):
        if (_ok(result, name) or {}).get("how"):
            lines.append(f"- **{name}**: {result[name]['how']}.")
    return "\n".join(lines) + "\n"


def _figures_md(name: str, got: dict) -> list[str]:
    """A section without a part of its own: its top-level numbers and words."""
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in got.items() if k != "how" and isinstance(v, (int, float, str, bool))]
    return [f"## {name}", "", "| figure | value |", "|---|---|", *rows]


def _ingest_md(ing: dict) -> list[str]:
    return [f"## Ingest ({ing['chunks']} chunks, {ing['sentences']} sentences, median of {ing['repeat']})",
            "", "| | seconds | chunks/s |", "|---|---|---|",
            f"| pipeline: ingest.sync into a fresh store | {statistics.median(ing['pipeline_seconds']):.2f} | "
            f"{ing['pipeline_chunks_per_s']:.1f} |",
            f"| bare sentence-transformers encode of the same {ing['texts_embedded']} texts | "
            f"{statistics.median(ing['bare_encode_seconds']):.2f} | {ing['bare_chunks_per_s']:.1f} |", "",
            f"Throughput ratio {ing['ratio']:.2f}; re-ingest of the unchanged corpus {ing['reingest_s']:.3f} s."]


def _query_md(q: dict) -> list[str]:
    lines = [f"## Query latency ({q['n']} gold questions; {q['called_model']} called the model, "
             f"{q['compared']} compared with bare generation)", "",
             "| | p50 | p95 | mean | max |", "|---|---|---|---|---|"]
    rows = [("retrieve (ms)", q["retrieve"], 1e3), ("first token (s)", q["first_token"], 1),
            ("total (s)", q["total"], 1), ("bare llama.cpp first token (s)", q["bare_first_token"], 1),
            ("bare llama.cpp total (s)", q["bare_total"], 1), ("our total / bare total", q["overhead_ratio"], 1),
            ("prompt tokens", q["prompt_tokens"], 1)]
    for name, st, k in rows:
        cells = ["–" if st.get(f) is None else f"{st[f] * k:.{0 if 'tokens' in name else 3}f}"
                 for f in ("p50", "p95", "mean", "max")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    agg = q.get("overhead_ratio_aggregate")
    return lines + ["", f"Aggregate overhead (sum of our totals / sum of bare totals): "
                    f"{'–' if agg is None else f'{(agg - 1) * 100:+.1f}%'}; identical prompt token counts: "
                    f"{q['prompt_identical']}; identical generated text in {q['same_text']} of {q['compared']}. "
                    f"Corpus: {q['corpus_chunks']} chunks.", "", "![latency](latency.png)"]


def _process_md(p: dict) -> list[str]:
    def row(what: str, r: dict) -> str:
        return f"| {what} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / GB:.2f} GB |"

    lines = ["## Cold start and memory", "", "| process | seconds | peak RSS |", "|---|---|---|",
             row("`rag ingest` into a fresh store", p["ingest"]),
             row("`rag ingest` again, nothing changed (a whole process)", p["reingest_process"]),
             row("`rag ask` on an empty store (ingests first)", p["cold_empty_store"]),
             *(row("`rag ask` on the ingested store (cold start)", r) for r in p["cold"])]
    if p.get("ui"):
        u = p["ui"]
        lines.append(f"| `rag ui`: start {u['started_s']:.1f} s, then one question over HTTP | "
                     f"{u['answer_s']:.1f} | {u['peak_rss_bytes'] / GB:.2f} GB |")
    if p.get("cold_parts"):
        lines += ["", *_cold_parts_md(p["cold_parts"], p["cold_start_s"])]
    return lines


# What each part of eval/bench/coldparts.py covers, in its order.
_COLD_PARTS = {
    "python_start": "Python starts (process creation to the first line)",
    "import_rag": "import rag",
    "import_chromadb": "import chromadb",
    "import_embedder_libs": "import the embedder's libraries",
    "import_llama_cpp": "import llama_cpp",
    "store_open": "open the store (Pipeline, ChunkStore)",
    "index_build": "first-use folder sync check and lexical index",
    "embedder_load": "embedder load (first embedding)",
    "model_load": "model load",
    "system_turn": "system turn, restored from models/states or evaluated",
    "answer": "Pipeline.ask (retrieve, generate, verify)",
}


def _cold_parts_md(c: dict, cold_start_s: float) -> list[str]:
    parts = c["parts"]
    whole = sum(parts.values()) or 1.0
    skipped = set(c.get("skipped", []))
    lines = ["### Where a cold start's time goes", "", "| part | seconds | share |", "|---|---|---|"]
    for name, seconds in parts.items():
        label = _COLD_PARTS.get(name, name) + (" (not in this run)" if name in skipped else "")
        if name == "import_embedder_libs" and c.get("embedder_libs"):
            label += f" ({', '.join(c['embedder_libs'])})"
        lines.append(f"| {label} | {seconds:.3f} | {seconds / whole:.0%} |")
    timed = c.get("answer_timings", {})
    return lines + [f"| sum of the parts | {sum(parts.values()):.3f} | 100% |", "",
                    f"One more fresh process (`python -m eval.bench.coldparts`, {c['seconds']:.2f} s spawn to exit) "
                    "did a cold `rag ask`'s work part by part, **one after another**. A real `rag ask` overlaps "
                    "some of them (it loads the model and prepares its system turn in a thread while it imports the "
                    "embedder and retrieves), so the parts say where the time goes, and the cold start itself is "
                    f"the median above, {cold_start_s:.2f} s. Inside the answer: retrieve "
                    f"{timed.get('retrieve', 0):.3f} s, first token {timed.get('first_token', 0):.3f} s, verify "
                    f"{timed.get('verify', 0):.3f} s, total "
                    f"{timed.get('total', 0):.3f} s."]


def _ms(stats: dict | None, key: str) -> str:
    v = dig(stats, key)
    return "–" if v is None else f"{v * 1e3:.1f}"


def _growth_md(g: dict, title: str = "Growth", plot: bool = True) -> list[str]:
    lines = [f"## {title}", "", "| chunks | vectors | ingest s | chunks/s | one article added s | "
             "retrieve p50 / p95 ms | Chroma p50 / p95 ms | brute force p50 / p95 ms | recall@10 (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in g["rows"]:
        add = r.get("add_article")
        added = "–" if not add else f"{add['seconds']:.2f}" + ("" if add["found_first"] else " (not found first)")
        lines.append(f"| {r['size']:,} | {r['vectors']} | {r['ingest_s']:.1f} | {r['chunks_per_s']:.0f} | {added} | "
                     f"{_ms(r['retrieve'], 'p50')} / {_ms(r['retrieve'], 'p95')} | {_ms(r['dense'], 'p50')} / "
                     f"{_ms(r['dense'], 'p95')} | {_ms(r['brute'], 'p50')} / {_ms(r['brute'], 'p95')} | "
                     f"{r['recall_at_10']:.3f} ({r['recall_at_10_min']:.2f}) |")
    return lines + ["", "![growth](growth.png)"] if plot else lines


def _server_md(srv: dict) -> list[str]:
    lines = _growth_md(srv, f"On a Chroma server ({srv['server']})", plot=False)
    for r in srv["rows"]:
        rates = ", ".join(f"{x:,.0f}" for x in r.get("write_chunks_per_s", []))
        lines.append(f"- {r['vectors']}: chunks written per second, by tenths of the write: {rates}")
    return lines


def _big_inputs_md(big: dict) -> list[str]:
    sizes = [f"{s // 1024} KB" for s in big["sizes"]]
    lines = ["## Big inputs (load + chunk + sentences, no embedding)", "",
             f"| input | {' | '.join(f'{s} s' for s in sizes)} | growth | load / chunk / sentences growth |",
             "|---|" + "---|" * (len(sizes) + 2)]
    for kind, got in big["kinds"].items():
        stages = " / ".join(f"{got['growth_by_stage'].get(k, float('nan')):.1f}"
                            for k in ("load_s", "chunk_s", "sentences_s"))
        cells = " | ".join(f"{r['total_s']:.3f}" for r in got["rows"])
        lines.append(f"| {kind} | {cells} | {got['growth']:.1f} | {stages} |")
    return lines + ["", f"For {big['size_ratio']:.0f}x the bytes, linear growth is {big['size_ratio']:.0f} and "
                    f"quadratic {big['size_ratio'] ** 2:.0f}."]


# A section's own part of report.md; one not named here gets _figures_md.
_PARTS = {"ingest": _ingest_md, "query": _query_md, "process": _process_md, "growth": _growth_md, "server": _server_md,
          "big_inputs": _big_inputs_md}
