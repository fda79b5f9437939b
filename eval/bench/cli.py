"""`rag bench`: the command line, and the run that calls each section in turn and writes the run folder.

    rag bench                          # everything on the real models; report in runs/bench-<timestamp>/
    rag bench --questions 20           # time 20 evenly spaced gold questions instead of all of them
    rag bench --only ingest,query      # some sections (see SECTIONS)
    rag bench --quick                  # a tiny run on the fake model and embedder (what tests/test_bench.py runs)
    rag bench --profile                # also profile ingest and a few questions with pyinstrument (not timed)

In --quick mode the "bare" baselines are the fake backends themselves, so the figures only show the harness works.
Exit code 0 (1 with --fail-on-miss when a target is missed), 2 for a usage or setup error or a failed section.
What a section measures is in its own module; the targets are in targets.py, the report in report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eval.bench.api import api_overhead_bench
from eval.bench.big_inputs import QUICK_SIZES, SIZES, bench_big_inputs
from eval.bench.formats import ingest_formats_bench
from eval.bench.growth import bench_growth
from eval.bench.ingest import bench_ingest
from eval.bench.measure import Log, spaced_questions
from eval.bench.memory import CHUNKS, QUICK_CHUNKS, bench_memory
from eval.bench.process import bench_process
from eval.bench.query import bench_query
from eval.bench.report import summary, write_report
from eval.bench.server import CHUNKS as SERVER_CHUNKS
from eval.bench.server import QUICK_CHUNKS as SERVER_QUICK_CHUNKS
from eval.bench.server import bench_server
from eval.bench.targets import judge
from eval.cli import run_command, run_folder
from eval.run import QUESTIONS
from ingest.errors import UserError
from rag.llm import check_llm_id
from rag.settings import Settings


@dataclass
class Bench:
    """What a section's entry in SECTIONS may draw on: the flags, the settings, a scratch folder, and what earlier
    sections handed on (the keys of their results that start with "_", which bench.json leaves out)."""

    args: argparse.Namespace
    settings: Settings
    work: Path
    sizes: list[int]
    log: Log
    profile_dir: Path | None
    handed: dict = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def questions(self) -> list[dict]:
        """The gold questions to time: --questions N of them evenly spaced (quick: 5), else all."""
        n = self.args.questions if self.args.questions is not None else (5 if self.quick else None)
        return spaced_questions(self.args.questions_file, n)

    def query_store(self) -> str:
        """--store, else the fresh store the ingest section built, else one the query section fills itself."""
        return self.args.store or self.handed.get("_store") or str(self.work / "query-store")


# Every section, in the order a full run takes them: name -> a call of its function with what it needs. Each
# returns a JSON-able dict ("how": one line on how it was measured); an exception marks that section failed.
SECTIONS: dict[str, Callable[[Bench], dict]] = {
    "ingest": lambda b: bench_ingest(b.settings, b.work, b.args.repeat or (1 if b.quick else 3), b.log,
                                     b.profile_dir),
    "query": lambda b: bench_query(b.settings.model_copy(update={"store": b.query_store()}), b.questions(), b.log,
                                   b.profile_dir),
    "process": lambda b: bench_process(b.settings, b.work, spaced_questions(b.args.questions_file, 1)[0]["question"],
                                       cold_runs=1 if b.quick else 2, ui=not b.args.no_ui, log=b.log),
    "growth": lambda b: bench_growth(b.settings, b.work, b.sizes, b.args.embed_max, b.args.growth_queries, b.log),
    "formats": lambda b: ingest_formats_bench(b.quick),
    "api": lambda b: api_overhead_bench(b.questions(), b.settings.model_copy(update={"store": b.query_store()})),
    "big_inputs": lambda b: bench_big_inputs(b.work, QUICK_SIZES if b.quick else SIZES, 1 if b.quick else 3, b.log),
    "memory": lambda b: bench_memory(b.settings, b.work, b.args.memory_chunks or (QUICK_CHUNKS if b.quick else CHUNKS),
                                     spaced_questions(b.args.questions_file, 1)[0]["question"], b.log),
    "server": lambda b: bench_server(b.settings, b.work,
                                     b.args.server_chunks or (SERVER_QUICK_CHUNKS if b.quick else SERVER_CHUNKS),
                                     b.args.growth_queries, b.log, b.args.server_store, b.args.server_pipeline_chunks),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag bench", description="Speed and memory against the bare engines.")
    p.add_argument("--out", type=Path, help="run folder (default: runs/bench-<timestamp>/)")
    p.add_argument("--quick", action="store_true",
                   help="tiny run on the fakes: 5 questions, growth 1k, 1 repeat (checks the harness, not speed)")
    p.add_argument("--only", help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})")
    p.add_argument("--questions", type=int, help="time N evenly spaced gold questions (default: all)")
    p.add_argument("--questions-file", type=Path, default=QUESTIONS, help="gold questions (JSONL)")
    p.add_argument("--repeat", type=int, help="ingest runs to take the median of (default 3; quick 1)")
    p.add_argument("--growth", help="synthetic sizes in chunks (default 1000,10000,100000; quick 1000)")
    p.add_argument("--embed-max", type=int, default=10_000,
                   help="largest growth size ingested with the real pipeline and embedder; above it only "
                        "synthetic vectors (default 10000)")
    p.add_argument("--growth-queries", type=int, default=100, help="queries per growth size (default 100)")
    p.add_argument("--memory-chunks", type=int, help="synthetic chunks the memory section's kept index holds "
                   "(default 1,000,000; quick 2,000)")
    p.add_argument("--server-chunks", type=int, help="synthetic chunks the server section writes to a Chroma server "
                   f"(default {SERVER_CHUNKS:,}; quick {SERVER_QUICK_CHUNKS})")
    p.add_argument("--server-pipeline-chunks", type=int, help="chunks of its pipeline row (default: --server-chunks;"
                   " ingest.sync into a server on 2 cores writes about 130 chunks/s, so 1M take over two hours)")
    p.add_argument("--server-store", help="the server section's Chroma server, http://HOST:PORT (default: `chroma run` "
                   "on loopback, started and stopped by the bench); it writes and drops the collections "
                   "*_synthetic and *_hash384 there")
    p.add_argument("--no-ui", action="store_true", help="skip the `rag ui` memory measurement")
    p.add_argument("--profile", action="store_true", help="write pyinstrument profiles (pip install pyinstrument)")
    p.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--llm", help="model id (default: RAG_LLM or llamacpp:default; quick: fake)")
    p.add_argument("--embedder", help="embedder id (default: RAG_EMBEDDER or minilm; quick: fake)")
    p.add_argument("--corpus", type=Path, help="folder of articles [RAG_CORPUS]")
    p.add_argument("--store", help="store for the query section, e.g. http://HOST:PORT for a Chroma server "
                   "(default: the fresh store the ingest section built)")
    p.add_argument("--work", type=Path, help="scratch folder for stores and corpora (default: a temp dir, removed)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: run(args, list(argv) if argv is not None else sys.argv[1:]),
                       argv)


class _Log:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[bench {time.perf_counter() - self.t0:7.1f}s] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, argv: list[str]) -> int:
    names = _sections(args.only)
    quick = args.quick
    settings = Settings.from_env(llm=args.llm or ("fake" if quick else None),
                                 embedder=args.embedder or ("fake" if quick else None), corpus=args.corpus)
    check_llm_id(settings.llm)
    sizes = _sizes(args.growth or ("1000" if quick else "1000,10000,100000"))
    if args.questions is not None and args.questions < 1:
        raise UserError("--questions must be at least 1")
    out = run_folder(args.out, "bench")
    log = _Log(args.quiet)
    result: dict = {"meta": _meta(settings, quick, argv)}
    failed: list[str] = []
    with _scratch(args.work) as work:
        bench = Bench(args, settings, work, sizes, log, out if args.profile else None)
        for name, section in SECTIONS.items():
            if name not in names:
                continue
            log(f"{name}: start")
            try:
                got = section(bench)
            except Exception as e:  # one broken section must not throw away a 40-minute run
                failed.append(name)
                got = {"error": f"{e.__class__.__name__}: {e}"}
                log(f"{name}: FAILED: {got['error']}")
            bench.handed.update({k: got.pop(k) for k in [k for k in got if k.startswith("_")]})
            result[name] = got
            (out / "bench.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    result["targets"] = judge(result, quick)
    result["files"] = write_report(result, out)
    log(f"wrote {out}/report.md")
    print(summary(result, out))
    if failed:
        print(f"error: section {', '.join(failed)} failed (see bench.json)", file=sys.stderr)
        return 2
    missed = [t for t in result["targets"] if t["pass"] is False]
    return 1 if args.fail_on_miss and missed else 0


@contextmanager
def _scratch(folder: Path | None) -> Iterator[Path]:
    """--work, kept afterwards; else a temporary folder, removed at the end."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        yield Path(tmp)


def _sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTIONS)
    picked = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in picked if s not in SECTIONS]
    if unknown:
        raise UserError(f"unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
    return picked


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(x.replace("_", "").replace("k", "000")) for x in text.split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--growth takes sizes in chunks like 1000,10000,100000 (got {text!r})") from None
    if not sizes or sizes[0] < 10:
        raise UserError("--growth sizes must be at least 10 chunks")
    return sizes


def _meta(settings: Settings, quick: bool, argv: list[str]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for pkg in ("chromadb", "llama_cpp_python", "sentence-transformers", "torch", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"started": datetime.now().isoformat(timespec="seconds"), "quick": quick, "argv": argv,
            "llm": settings.llm, "embedder": settings.embedder, "corpus": str(settings.corpus),
            "cpus": os.cpu_count(), "cpu": cpu or platform.processor(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions,
            "settings": settings.model_dump(mode="json", exclude={"home", "corpus", "store"})}
