"""`rag bench`: speed and memory of the pipeline, each figure against the bare engine underneath it, in one run.

    cli.py      the command, and the run that calls each section in SECTIONS and writes the run folder
    ingest.py   ingest.sync against bare sentence-transformers encode of the same texts; re-ingest
    query.py    Pipeline.ask on gold questions against bare llama-cpp-python given the identical prompt
    process.py  fresh `rag` processes: cold start, peak RSS of ingest, ask and the UI
    coldparts.py  a cold start part by part in one fresh process: imports, store, index, embedder, model, answer
    growth.py   synthetic corpora of 1k to 100k chunks: ingest, retrieval, Chroma against brute force
    big_inputs.py  one generated file of 256 KB and of 1 MB, four shapes: load + chunk time and its growth
    memory.py   a serving process's peak RSS with the model, one answer and the kept index of 1M synthetic chunks
    server.py   growth's two rows at 1M chunks on a Chroma server (`chroma run` on loopback): retrieval, recall
    targets.py  THE table of targets: label, unit, goal, and where each value is read from the result
    report.py   bench.json, report.md and the summary; plots.py the PNGs (both read targets.py)
    measure.py  what the sections share: percentiles, the gold questions to time, profiling

To add a section, write it as a function anywhere (eval/bench/formats.py, say) that returns a JSON-able dict, its
"how" a line on how it was measured, and raises when it cannot measure. Then:
  1. one entry in SECTIONS (cli.py) that calls it with what it needs from the run (see `Bench`):
         "formats": lambda b: ingest_formats_bench(b.quick),
         "api": lambda b: api_overhead_bench(b.questions(), b.settings),
  2. its rows in TARGETS (targets.py), each reading its value from the section's result:
         Target(key, label, short, unit, op, goal, at("formats", "pdf", "ratio")),
`--only` then knows it, a failure in it is recorded in its place while the others still run, and report.md shows
its targets, a table of its top-level figures (until report.py gives it a part of its own) and its "how".
"""


def main(argv: list[str] | None = None) -> int:
    """`rag bench` (eval/bench/cli.py). Imported when called, not with the package: `python -m
    eval.bench.coldparts` times a cold process's imports, which the package's own must not precede."""
    from eval.bench.cli import main as run

    return run(argv)


__all__ = ["main"]
