"""`rag bench`: speed and memory of the pipeline, each against the bare engine underneath it, in one run.

    rag bench                          # everything on the real models; report in runs/bench-<timestamp>/
    rag bench --questions 20           # time 20 evenly spaced gold questions instead of all of them
    rag bench --only ingest,query      # some sections: ingest, query, process, growth
    rag bench --quick                  # a tiny run on the fake model and embedder (what tests/test_bench.py runs)
    rag bench --profile                # also profile ingest and a few questions with pyinstrument (not timed)

What each section measures, on this machine, in this run:
  ingest   `ingest.sync` of the corpus into a fresh store, against bare sentence-transformers `encode` of every
           text the pipeline embeds (chunks and sentences); then a re-ingest of the unchanged corpus.
  query    `Pipeline.ask` on the gold questions (retrieve, first token, total, prompt tokens), warm, against bare
           llama-cpp-python given the identical prompt with the same settings (greedy, same model file, n_ctx,
           threads, max_tokens); the model runs in two instances so neither reuses the other's prompt cache.
  process  fresh `rag` processes: cold start to the first answer (store already ingested, and on an empty store);
           peak RSS (getrusage RUSAGE_CHILDREN) of `rag ingest` and `rag ask`; peak RSS (/proc VmHWM) of `rag ui`
           after it answered one question over HTTP.
  growth   synthetic corpora (eval/synthetic.py): up to --embed-max chunks ingested with the real pipeline and
           embedder; above it, the same pipeline with a word-hashing embedder (no model), the real one encoding the
           queries; at every size, seeded clustered vectors inserted straight into a Chroma store. Ingest time and
           retrieval p50/p95 at each size; Chroma's search against exact brute-force cosine (numpy), for speed and
           recall@10.
It writes bench.json, report.md and PNG plots (matplotlib Agg) into the run folder. In --quick mode the "bare"
baselines are the fake backends themselves, so the figures only show the harness works. Exit code 0 (1 with
--fail-on-miss when a target is missed), 2 for a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from eval import synthetic
from eval.cli import run_command, run_folder
from eval.run import QUESTIONS, load_questions
from ingest.chunking import chunk_document, sentence_spans
from ingest.embed import FakeEmbedder, get_embedder
from ingest.env import QUIET_ENV
from ingest.errors import SetupError, UserError
from ingest.pipeline import IngestReport, load_folder, sync
from ingest.store import ChunkStore
from rag.answer import Answer, Pipeline, clean_question
from rag.llm import FakeLLM, LlamaCppLLM, check_llm_id
from rag.model_files import MODELS, ensure_model
from rag.policy import worth_asking
from rag.retrieve import Retriever
from rag.settings import Settings

SECTIONS = ("ingest", "query", "process", "growth")
GB = 1024**3

# (key, what, unit, comparison, target): the targets for a warm run on a 2-core CPU with the default model.
TARGETS = [
    ("ask_total_p50", "ask() total, p50", "s", "<", 10.0),
    ("ask_first_token_p50", "ask() time to first token, p50", "s", "<", 5.0),
    ("overhead_p50", "overhead over bare llama.cpp (our total / bare generation - 1), p50", "%", "<", 10.0),
    ("retrieve_p50", "retrieval p50 at corpus size", "ms", "<", 50.0),
    ("retrieve_p50_100k", "retrieval p50 at 100k chunks (Retriever.retrieve, hashed vectors)", "ms", "<", 150.0),
    ("dense_p50_100k", "dense search p50 at 100k chunks (Chroma, clustered vectors)", "ms", "<", 150.0),
    ("recall10_100k", "recall@10 at 100k chunks vs brute force", "", ">=", 0.95),
    ("ingest_ratio", "ingest throughput / bare encode throughput", "", ">=", 0.80),
    ("reingest_s", "re-ingest of the unchanged corpus", "s", "<", 1.0),
    ("rss_ask_gb", "peak RSS, rag ask", "GB", "<", 3.0),
    ("rss_ingest_gb", "peak RSS, rag ingest", "GB", "<", 3.0),
    ("rss_ui_gb", "peak RSS, rag ui after one answer", "GB", "<", 3.0),
]


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
    sections = _sections(args.only)
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG to stderr
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
    work_ctx = tempfile.TemporaryDirectory(prefix="rag-bench-") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    work.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []

    def section(name: str, fn) -> None:
        """Run one section; a failure is recorded in its place and the run goes on, so the others still count."""
        if name not in sections:
            return
        log(f"{name}: start")
        try:
            result[name] = fn()
        except Exception as e:  # one broken section must not throw away a 40-minute run
            failed.append(name)
            result[name] = {"error": f"{e.__class__.__name__}: {e}"}
            log(f"{name}: FAILED: {result[name]['error']}")
        (out / "bench.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")

    profile_dir = out if args.profile else None
    store = args.store
    try:
        section("ingest", lambda: bench_ingest(settings, work, args.repeat or (1 if quick else 3), log, profile_dir))
        built = result.get("ingest", {}).pop("_store", None)
        store = store or built or str(work / "query-store")
        section("query", lambda: bench_query(settings.model_copy(update={"store": store}), args, log, profile_dir))
        section("process", lambda: bench_process(settings, work, args, log))
        section("growth", lambda: bench_growth(settings, work, sizes, args.embed_max, args.growth_queries, log))
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    result["targets"] = judge(result, quick)
    result["files"] = write_report(result, out)
    log(f"wrote {out}/report.md")
    print(_summary(result, out))
    if failed:
        print(f"error: section {', '.join(failed)} failed (see bench.json)", file=sys.stderr)
        return 2
    missed = [t for t in result["targets"] if t["pass"] is False]
    return 1 if args.fail_on_miss and missed else 0


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
    for pkg in ("chromadb", "llama_cpp_python", "sentence-transformers", "torch", "bm25s", "numpy"):
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


def pct(values: list[float]) -> dict:
    """p50/p95/mean/min/max of a sample (linear interpolation); all None for an empty one."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "min": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def _profiler(enabled_dir: Path | None):
    """A started pyinstrument profiler, or None when not asked for."""
    if enabled_dir is None:
        return None
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SetupError("--profile needs pyinstrument: pip install pyinstrument") from None
    prof = Profiler(interval=0.001)
    prof.start()
    return prof


def _save_profile(prof, folder: Path | None, name: str) -> None:
    if prof is None or folder is None:
        return
    prof.stop()
    (folder / f"profile-{name}.txt").write_text(prof.output_text(unicode=True, show_all=False), encoding="utf-8")
    (folder / f"profile-{name}.html").write_text(prof.output_html(), encoding="utf-8")


# ----------------------------------------------------------------------------- ingest
def embedded_texts(corpus: Path) -> tuple[int, list[str]]:
    """(number of chunks, every text `sync` embeds for the corpus: each chunk, then each sentence in it)."""
    docs = load_folder(corpus, IngestReport())
    n_chunks, texts = 0, []
    for doc in docs:
        chunks = chunk_document(doc)
        n_chunks += len(chunks)
        texts += [c.text for c in chunks]
        texts += [doc.text[a:b] for c in chunks for a, b in sentence_spans(doc.text, c.start, c.end)]
    return n_chunks, texts


def bare_encoder(embedder_id: str):
    """The engine under our embedder, called directly: sentence-transformers `encode` (or the fake's embed)."""
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


def bench_ingest(settings: Settings, work: Path, repeat: int, log, profile_dir: Path | None) -> dict:
    embedder = get_embedder(settings.embedder)
    n_chunks, texts = embedded_texts(settings.corpus)
    encode = bare_encoder(settings.embedder)
    embedder.embed(texts[:16])  # load both models and warm them before anything is timed
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
        prof = _profiler(profile_dir)
        sync(settings.corpus, ChunkStore(str(work / "ingest-profiled"), embedder.name), embedder)
        _save_profile(prof, profile_dir, "ingest")
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


# ----------------------------------------------------------------------------- query
def spaced_questions(path: Path, n: int | None) -> list[dict]:
    """The gold questions, or n of them evenly spaced through the file (the first alone when n is 1)."""
    rows = load_questions(path)
    if n is not None and n < len(rows):
        rows = [rows[round(i * (len(rows) - 1) / max(1, n - 1))] for i in range(n)] if n > 1 else rows[:1]
    return rows


class BareLlama:
    """llama-cpp-python on its own: a second LlamaCppLLM (same GGUF, n_ctx, threads, batch, chat template and stops
    as ours, but its own prompt cache) whose llama.cpp handle is called directly, with no lock, retrieval or
    verification around it."""

    def __init__(self, model_path: Path, n_ctx: int) -> None:
        self.model = LlamaCppLLM(model_path, n_ctx)

    def generate(self, messages: list[dict], max_tokens: int, seed: int) -> dict:
        t0 = time.perf_counter()
        tokens, stop = self.model.encode(messages)
        first, parts = None, []
        for part in self.model.llama.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, seed=seed,
                                                       stop=stop, stream=True, top_k=1, repeat_penalty=1.0):
            text = part["choices"][0]["text"]  # type: ignore[index]  # stream=True yields chunks
            if text and first is None:
                first = time.perf_counter() - t0
            parts.append(text)
        total = time.perf_counter() - t0
        return {"first_token": first or total, "total": total, "prompt_tokens": len(tokens), "text": "".join(parts)}


class BareFake:
    """The fake model called directly: the --quick stand-in for bare llama.cpp."""

    def __init__(self) -> None:
        self.llm = FakeLLM()

    def generate(self, messages: list[dict], max_tokens: int, seed: int) -> dict:
        t0 = time.perf_counter()
        first, parts = None, []
        for delta in self.llm.stream(messages, max_tokens=max_tokens, temperature=0.0, seed=seed):
            if first is None:
                first = time.perf_counter() - t0
            parts.append(delta)
        total = time.perf_counter() - t0
        return {"first_token": first or total, "total": total, "prompt_tokens": self.llm.prompt_tokens(messages),
                "text": "".join(parts)}


def bare_llm(settings: Settings):
    kind, arg = check_llm_id(settings.llm)
    if kind == "fake":
        return BareFake()
    if kind == "llamacpp":
        arg = arg or "default"
        path = ensure_model(arg, settings.model_dir) if arg in MODELS else Path(arg).expanduser()
        return BareLlama(path, settings.n_ctx)
    return None  # Ollama: the server is the engine; there is no in-process bare baseline to compare with


def _ask(pipe: Pipeline, question: str, history: list) -> tuple[Answer, str]:
    """ask() as the CLI and UI run it (through stream()), keeping the model's own words to compare with bare."""
    deltas: list[str] = []
    for item in pipe.stream(question, history):
        if isinstance(item, Answer):
            return item, "".join(deltas)
        deltas.append(item)
    raise AssertionError("stream() ended without an Answer")


def bench_query(settings: Settings, args: argparse.Namespace, log, profile_dir: Path | None) -> dict:
    n = args.questions if args.questions is not None else (5 if args.quick else None)
    questions = spaced_questions(args.questions_file, n)
    pipe = Pipeline(settings)
    report = pipe.ingest()
    bare = bare_llm(settings)
    s = settings
    # Warm, untimed: models loaded, both prompt caches holding a prompt other than the first timed one's.
    warm = questions[-1]
    _ask(pipe, warm["question"], warm.get("history") or [])
    if bare is not None:
        q0 = clean_question(warm["question"], s.max_question_chars)
        r0 = pipe.retrieve(q0, warm.get("history") or [])
        bare.generate(pipe.messages(q0, r0.sources), s.max_tokens, s.seed)
    rows = []
    for i, q in enumerate(questions):
        history = q.get("history") or []
        # The bare run gets the prompt ask() builds (retrieval is deterministic), when ask() calls the model (the
        # same test as Pipeline.stream). Every other question it goes first, so neither side always runs second.
        question = clean_question(q["question"], s.max_question_chars)
        asked = pipe.standalone(question, history)
        retrieval = pipe.retrieve(asked.question, context=asked.retrieval_context)
        calls_model = worth_asking(bool(retrieval.sources), retrieval.best_similarity, retrieval.best_overlap,
                                   s.min_relevance, s.min_overlap)
        messages = pipe.messages(asked.question, retrieval.sources)
        b = bare.generate(messages, s.max_tokens, s.seed) if bare is not None and calls_model and i % 2 else None
        ans, raw = _ask(pipe, q["question"], history)
        if bare is not None and calls_model and not i % 2:
            b = bare.generate(messages, s.max_tokens, s.seed)
        row = {"id": q.get("id", str(i)), "abstained": ans.abstained, "called_model": bool(ans.model),
               "prompt_tokens": ans.prompt_tokens, "bare_first": bool(i % 2),
               **{k: ans.timings.get(k, 0.0) for k in ("retrieve", "first_token", "generate", "verify", "total")}}
        if b is not None and ans.model:
            row.update({"bare_first_token": b["first_token"], "bare_total": b["total"],
                        "bare_prompt_tokens": b["prompt_tokens"], "overhead_ratio": ans.timings["total"] / b["total"],
                        "same_text": b["text"].strip() == raw.strip()})
        elif calls_model != bool(ans.model):
            raise SetupError(f"{row['id']}: the bench expected ask() {'to' if calls_model else 'not to'} call the "
                             "model; Pipeline.stream's abstention test has changed: update eval/bench.py")
        rows.append(row)
        log(f"  {row['id']}: total {row['total']:.2f}s, first token {row['first_token']:.2f}s"
            + (f", bare {row['bare_total']:.2f}s" if "bare_total" in row else ""))
    if profile_dir is not None:
        prof = _profiler(profile_dir)
        for q in questions[:5]:
            pipe.ask(q["question"], q.get("history") or [])
        _save_profile(prof, profile_dir, "query")
    called = [r for r in rows if r["called_model"]]
    compared = [r for r in called if "bare_total" in r]
    ratios = [r["overhead_ratio"] for r in compared]
    return {
        "n": len(rows), "called_model": len(called), "compared": len(compared), "store": settings.store_location,
        "corpus_chunks": pipe.store.count(), "sync_on_open": report.summary(), "model": settings.llm,
        "retrieve": pct([r["retrieve"] for r in rows]),
        "first_token": pct([r["first_token"] for r in called]),
        "total": pct([r["total"] for r in called]),
        "total_all": pct([r["total"] for r in rows]),
        "prompt_tokens": pct([r["prompt_tokens"] for r in called]),
        "bare_first_token": pct([r["bare_first_token"] for r in compared]),
        "bare_total": pct([r["bare_total"] for r in compared]),
        "overhead_ratio": pct(ratios),
        "overhead_ratio_aggregate": (sum(r["total"] for r in compared) / sum(r["bare_total"] for r in compared)
                                     if compared else None),
        "prompt_identical": all(r["prompt_tokens"] == r["bare_prompt_tokens"] for r in compared),
        "same_text": sum(r["same_text"] for r in compared),
        "how": "warm (one question asked and generated first, untimed); first token and total over questions "
               "that called the model; retrieve over all; overhead ratio = Answer.timings total / bare "
               "template+tokenize+generate time for the identical prompt, the bare run first on every other question",
        "questions": rows,
    }


# ----------------------------------------------------------------------------- process
def _env(settings: Settings, store: str) -> dict:
    env = {**os.environ, **QUIET_ENV, "RAG_CORPUS": str(settings.corpus), "RAG_STORE": store,
           "RAG_LLM": settings.llm, "RAG_EMBEDDER": settings.embedder, "RAG_HOME": str(settings.home)}
    env.pop("RAG_TOP_K", None)
    return env


# Runs the command and reports its wall time and peak RSS. A child's ru_maxrss starts from the high-water mark of the
# process that spawned it (Linux records the parent's RSS at exec), so the measured command is started from this
# small launcher rather than from the bench, which holds two models and would lend it its own gigabytes.
_LAUNCHER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": seconds, "exit_code": code, "peak_rss_bytes": peak}, f)
"""


def run_measured(cmd: list[str], env: dict, log_file: Path, timeout: float) -> dict:
    """Run a command to its end: its wall seconds, exit code and peak RSS (RUSAGE_CHILDREN of a small launcher)."""
    stats_file = log_file.with_suffix(".rusage.json")
    with open(log_file, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(stats_file), *cmd], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SetupError(f"{' '.join(cmd[1:])} took longer than {timeout:.0f}s") from None
    got = json.loads(stats_file.read_text(encoding="utf-8"))
    return {"cmd": cmd[1:], **got, "output": log_file.read_text(encoding="utf-8", errors="replace")[-4000:]}


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def bench_process(settings: Settings, work: Path, args: argparse.Namespace, log) -> dict:
    questions = spaced_questions(args.questions_file, 1)
    question = questions[0]["question"]
    store = str(work / "process-store")
    timeout = 600.0
    out: dict = {"question": question}

    ingest = run_measured(_rag("ingest", str(settings.corpus)), _env(settings, store), work / "ingest.log", timeout)
    _check(ingest, "rag ingest")
    out["ingest"] = ingest
    log(f"  rag ingest: {ingest['seconds']:.1f}s, peak RSS {ingest['peak_rss_bytes'] / GB:.2f} GB")
    again = run_measured(_rag("ingest", str(settings.corpus)), _env(settings, store), work / "reingest.log", timeout)
    _check(again, "rag ingest (unchanged)")
    out["reingest_process"] = again

    empty = run_measured(_rag("ask", "--json", question), _env(settings, str(work / "cold-empty")),
                         work / "cold-empty.log", timeout)
    _check(empty, "rag ask (empty store)")
    out["cold_empty_store"] = _with_answer(empty)
    log(f"  rag ask on an empty store: {empty['seconds']:.1f}s")

    runs = []
    for i in range(1 if args.quick else 2):
        r = run_measured(_rag("ask", "--json", question), _env(settings, store), work / f"cold-{i}.log", timeout)
        _check(r, "rag ask")
        runs.append(_with_answer(r))
        log(f"  rag ask (ingested store): {r['seconds']:.1f}s, peak RSS {r['peak_rss_bytes'] / GB:.2f} GB")
    out["cold"] = runs
    out["cold_start_s"] = statistics.median(r["seconds"] for r in runs)
    out["ask"] = {"peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs)}
    if not args.no_ui:
        out["ui"] = measure_ui(settings, store, question, work, log)
    out["how"] = ("`python -m rag.cli ...` subprocesses with the bench's settings; cold start = spawn to exit of "
                  "`rag ask --json` (imports, model load from a warm page cache, store open and sync check, "
                  "retrieval, generation, verification); peak RSS of ask and ingest = ru_maxrss from "
                  "getrusage(RUSAGE_CHILDREN) in a small launcher process (not the bench, whose RSS a child inherits); "
                  "the UI's from /proc/PID/status VmHWM after one answered question over HTTP (gradio_client)")
    return out


def _check(r: dict, what: str) -> None:
    if r["exit_code"] != 0:
        raise SetupError(f"{what} failed (exit {r['exit_code']}): {r['output'][-600:]}")


def _with_answer(r: dict) -> dict:
    text = r["output"]
    start = text.find("{")
    try:
        ans = json.loads(text[start : text.rfind("}") + 1])
        r["answer_timings"] = ans.get("timings", {})
        r["answer_abstained"] = ans.get("abstained")
    except ValueError:
        r["answer_timings"] = {}
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_ui(settings: Settings, store: str, question: str, work: Path, log) -> dict:
    """Start `rag ui` on a free loopback port, ask one question through its HTTP API, read the process's VmHWM."""
    port = _free_port()
    log_file = work / "ui.log"
    with open(log_file, "wb") as sink:
        proc = subprocess.Popen(_rag("ui", "--host", "127.0.0.1", "--port", str(port)), env=_env(settings, store),
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.perf_counter()
    try:
        url = f"http://127.0.0.1:{port}/"
        while "Running on" not in log_file.read_text(errors="replace"):
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SetupError(f"rag ui did not start: {log_file.read_text(errors='replace')[-600:]}")
            time.sleep(0.1)
        started = time.perf_counter() - t0
        from gradio_client import Client

        client = Client(url, verbose=False, download_files=False)
        t = time.perf_counter()
        result = client.predict(question, api_name="/ask")
        answered = time.perf_counter() - t
        parts = [str(x) for x in (result if isinstance(result, (list, tuple)) else [result])]
        status = next((x for x in parts if "rag-status" in x), "")  # the outputs without the session State
        hwm = _proc_kb(proc.pid, "VmHWM") * 1024
        log(f"  rag ui: started in {started:.1f}s, answered in {answered:.1f}s, peak RSS {hwm / GB:.2f} GB")
        return {"started_s": started, "answer_s": answered, "peak_rss_bytes": hwm,
                "answered": "Answered in" in status, "status": re.sub(r"<[^>]+>", "", status)[:200]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- growth
def _growth_queries(folder: Path, n: int, seed: int = 7) -> list[str]:
    """Questions made from the corpus: a sentence's words, partly dropped and shuffled (deterministic)."""
    import random

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


def search_stats(store: ChunkStore, vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int = 10) -> dict:
    """Chroma's k-NN (through ChunkStore.query, as retrieval calls it) vs exact cosine over the same vectors.

    Recall@k counts a returned id as right when its exact cosine is at least the k-th best one (less 1e-5), so that
    ties at the cut-off, common with the fake embedder, do not count as misses.
    """
    pos = {cid: i for i, cid in enumerate(ids)}
    dense_t, brute_t, recall, self_recall = [], [], [], []
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
        self_recall.append(sum(1 for i in brute_force(vectors, q, k) if sims[i] >= cut) / len(exact))
    return {"dense": pct(dense_t), "brute": pct(brute_t), "recall_at_10": float(np.mean(recall)),
            "recall_at_10_min": float(np.min(recall)), "brute_recall_self": float(np.mean(self_recall))}


def brute_force(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest cosines (rows and query are unit vectors), best first."""
    sims = vectors @ q
    top = np.argpartition(-sims, min(k, len(sims) - 1))[:k]
    return top[np.argsort(-sims[top], kind="stable")]


def vecs_of(store: ChunkStore, kind: str, embedder_name: str) -> tuple[list[str], np.ndarray]:
    """Every id and vector of a local store's `chunks` or `sents` collection, read with Chroma's own client (the
    store keeps its collections private; their names are `<kind>_<embedder>`, see ingest/store.py)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=store.location, settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_collection(f"{kind}_{embedder_name}")
    ids: list[str] = []
    vecs = []
    offset = 0
    while True:
        got = col.get(include=["embeddings"], limit=5000, offset=offset)
        if not got["ids"]:
            break
        ids += got["ids"]
        vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
        offset += len(got["ids"])
    return ids, np.concatenate(vecs)


class HashEmbedder(FakeEmbedder):
    """The fake's word hashing at MiniLM's 384 dimensions: vectors for 100k chunks and their sentences in a minute,
    so the whole retrieval path (query encoding, Chroma, BM25, sentence windows) can be timed at sizes too large to
    embed on a laptop CPU. Its vectors mean little; only the timings of that row count."""

    name = "hash384"
    dim = 384


def bench_growth(settings: Settings, work: Path, sizes: list[int], embed_max: int, n_queries: int, log) -> dict:
    embedder = get_embedder(settings.embedder)
    rows = []
    for size in sizes:
        if size <= embed_max:
            rows.append(_pipeline_row(work, size, n_queries, embedder, embedder, settings, log))
        elif settings.embedder != "fake":  # (on the fakes, the row above is already this one)
            rows.append(_pipeline_row(work, size, n_queries, HashEmbedder(), embedder, settings, log))
        rows.append(_synthetic_row(work, size, n_queries, log))
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


def _pipeline_row(work: Path, size: int, n_queries: int, doc_embedder, query_embedder, settings: Settings,
                  log) -> dict:
    """A synthetic corpus of `size` chunks through ingest.sync, then Retriever.retrieve timed on it."""
    folder = work / f"syn-{size}"
    n_docs = synthetic.write_corpus(folder, size)
    store = ChunkStore(str(work / f"growth-{size}-{doc_embedder.name}"), doc_embedder.name)
    t = time.perf_counter()
    report = sync(folder, store, doc_embedder)
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    retriever = Retriever(store, query_embedder)
    index_s = time.perf_counter() - t
    texts = _growth_queries(folder, n_queries)
    times = []
    for q in texts:
        t = time.perf_counter()
        retriever.retrieve(q, settings.top_k, settings.max_sources, settings.context_chars)
        times.append(time.perf_counter() - t)
    ids, vecs = vecs_of(store, "chunks", doc_embedder.name)
    stats = search_stats(store, vecs, ids, doc_embedder.embed(texts))
    row = {"size": size, "vectors": doc_embedder.name, "docs": n_docs, "chunks": store.count(),
           "chunks_embedded": report.chunks_embedded, "sentences": len(vecs_of(store, "sents", doc_embedder.name)[0]),
           "ingest_s": ingest_s, "chunks_per_s": size / ingest_s, "lexical_index_s": index_s,
           "retrieve": pct(times), **stats}
    log(f"  {size:>7,} chunks ({doc_embedder.name}): ingest {ingest_s:.1f}s, retrieve p50 "
        f"{row['retrieve']['p50'] * 1e3:.1f} ms, dense p50 {stats['dense']['p50'] * 1e3:.1f} ms, "
        f"recall@10 {stats['recall_at_10']:.3f}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(store.location, ignore_errors=True)
    return row


def _synthetic_row(work: Path, size: int, n_queries: int, log) -> dict:
    vectors, queries = synthetic.clustered_vectors(size, seed=size, queries=n_queries)
    folder = work / f"vectors-{size}"
    store = ChunkStore(str(folder), "synthetic")
    ids = [f"v{i}" for i in range(size)]
    t = time.perf_counter()
    step = 5000
    for i in range(0, size, step):
        store.add_chunks(ids=ids[i : i + step], vectors=vectors[i : i + step],
                         texts=[f"synthetic chunk {j}" for j in range(i, min(size, i + step))],
                         metas=[{"doc_id": f"d{j // 10}", "title": "", "start": 0, "end": 0, "index": j % 10}
                                for j in range(i, min(size, i + step))])
    insert_s = time.perf_counter() - t
    stats = search_stats(store, vectors, ids, queries)
    log(f"  {size:>7,} chunks (synthetic vectors): insert {insert_s:.1f}s, dense p50 "
        f"{stats['dense']['p50'] * 1e3:.1f} ms, brute p50 {stats['brute']['p50'] * 1e3:.1f} ms, "
        f"recall@10 {stats['recall_at_10']:.3f}")
    shutil.rmtree(folder, ignore_errors=True)
    return {"size": size, "vectors": "synthetic", "chunks": size, "ingest_s": insert_s,
            "chunks_per_s": size / insert_s, "retrieve": None, **stats}


# ----------------------------------------------------------------------------- targets and report
def _get(d: dict | None, *path):
    for key in path:
        if not isinstance(d, dict) or d.get(key) is None:
            return None
        d = d[key]
    return d


def _ok(result: dict, section: str) -> dict | None:
    """A section's results, or None when it was not run or failed."""
    got = result.get(section)
    return got if got and "error" not in got else None


def _growth_row(result: dict, size: int = 100_000, synthetic_vectors: bool = True) -> dict | None:
    rows = [r for r in _get(result, "growth", "rows") or []
            if (r["vectors"] == "synthetic") == synthetic_vectors and r["size"] == size]
    return rows[0] if rows else None


def figures(result: dict) -> dict[str, float | None]:
    """Each target's measured value, in the target's unit; None where that part was not run."""
    def scaled(v, k):
        return None if v is None else v * k

    ratio = _get(result, "query", "overhead_ratio", "p50")
    big, full = _growth_row(result), _growth_row(result, synthetic_vectors=False)
    return {
        "ask_total_p50": _get(result, "query", "total", "p50"),
        "ask_first_token_p50": _get(result, "query", "first_token", "p50"),
        "overhead_p50": None if ratio is None else (ratio - 1) * 100,
        "retrieve_p50": scaled(_get(result, "query", "retrieve", "p50"), 1e3),
        "retrieve_p50_100k": scaled(_get(full, "retrieve", "p50"), 1e3),
        "dense_p50_100k": scaled(_get(big, "dense", "p50"), 1e3),
        "recall10_100k": _get(big, "recall_at_10"),
        "ingest_ratio": _get(result, "ingest", "ratio"),
        "reingest_s": _get(result, "ingest", "reingest_s"),
        "rss_ask_gb": scaled(_get(result, "process", "ask", "peak_rss_bytes"), 1 / GB),
        "rss_ingest_gb": scaled(_get(result, "process", "ingest", "peak_rss_bytes"), 1 / GB),
        "rss_ui_gb": scaled(_get(result, "process", "ui", "peak_rss_bytes"), 1 / GB),
    }


def judge(result: dict, quick: bool) -> list[dict]:
    values = figures(result)
    out = []
    for key, what, unit, op, target in TARGETS:
        v = values[key]
        ok = None if v is None else (v < target if op == "<" else v >= target)
        out.append({"key": key, "what": what, "value": v, "unit": unit, "op": op, "target": target, "pass": ok,
                    "on_fakes": quick})
    return out


def _fmt(v, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "%":
        return f"{v:+.1f}%"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "GB":
        return f"{v:.2f} GB"
    return f"{v:.3f}"


def _ms(stats: dict | None, key: str) -> str:
    v = _get(stats, key)
    return "–" if v is None else f"{v * 1e3:.1f}"


def _s(stats: dict | None, key: str) -> str:
    v = _get(stats, key)
    return "–" if v is None else f"{v:.2f}"


def write_report(result: dict, out: Path) -> dict:
    files = {"json": "bench.json", "report": "report.md"}
    files.update(plot(result, out))
    result["files"] = files
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "report.md").write_text(markdown(result), encoding="utf-8")
    return files


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# rag bench, {m['started']}", "",
             f"{m['cpu']} · {m['cpus']} CPUs · Python {m['python']} · model `{m['llm']}` · embedder "
             f"`{m['embedder']}` · `rag bench {' '.join(m['argv'])}`".rstrip(), ""]
    if m["quick"]:
        lines += ["**Quick mode on the fake model and embedder: the figures test the harness, not the speed.**", ""]
    lines += ["## Targets", "", "| figure | measured | target | result |", "|---|---|---|---|"]
    for t in result["targets"]:
        verdict = "–" if t["pass"] is None else "pass" if t["pass"] else "**miss**"
        lines.append(f"| {t['what']} | {_fmt(t['value'], t['unit'])} | {t['op']} "
                     f"{_fmt(t['target'], t['unit']).lstrip('+')} | {verdict} |")
    ing, q, p, g = (_ok(result, name) for name in SECTIONS)
    if ing:
        lines += ["", f"## Ingest ({ing['chunks']} chunks, {ing['sentences']} sentences, median of {ing['repeat']})",
                  "", "| | seconds | chunks/s |", "|---|---|---|",
                  f"| pipeline: ingest.sync into a fresh store | {statistics.median(ing['pipeline_seconds']):.2f} | "
                  f"{ing['pipeline_chunks_per_s']:.1f} |",
                  f"| bare sentence-transformers encode of the same {ing['texts_embedded']} texts | "
                  f"{statistics.median(ing['bare_encode_seconds']):.2f} | {ing['bare_chunks_per_s']:.1f} |", "",
                  f"Throughput ratio {ing['ratio']:.2f}; re-ingest of the unchanged corpus {ing['reingest_s']:.3f} s."]
    if q:
        lines += ["", f"## Query latency ({q['n']} gold questions; {q['called_model']} called the model, "
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
        lines += ["", f"Aggregate overhead (sum of our totals / sum of bare totals): "
                  f"{'–' if agg is None else f'{(agg - 1) * 100:+.1f}%'}; identical prompt token counts: "
                  f"{q['prompt_identical']}; identical generated text in {q['same_text']} of {q['compared']}. "
                  f"Corpus: {q['corpus_chunks']} chunks.", "", "![latency](latency.png)"]
    if p:
        lines += ["", "## Cold start and memory", "", "| process | seconds | peak RSS |", "|---|---|---|",
                  f"| `rag ingest` into a fresh store | {p['ingest']['seconds']:.1f} | "
                  f"{p['ingest']['peak_rss_bytes'] / GB:.2f} GB |",
                  f"| `rag ingest` again, nothing changed (a whole process) | {p['reingest_process']['seconds']:.1f} | "
                  f"{p['reingest_process']['peak_rss_bytes'] / GB:.2f} GB |",
                  f"| `rag ask` on an empty store (ingests first) | {p['cold_empty_store']['seconds']:.1f} | "
                  f"{p['cold_empty_store']['peak_rss_bytes'] / GB:.2f} GB |"]
        for r in p["cold"]:
            lines.append(f"| `rag ask` on the ingested store (cold start) | {r['seconds']:.1f} | "
                         f"{r['peak_rss_bytes'] / GB:.2f} GB |")
        if p.get("ui"):
            u = p["ui"]
            lines.append(f"| `rag ui`: start {u['started_s']:.1f} s, then one question over HTTP | "
                         f"{u['answer_s']:.1f} | {u['peak_rss_bytes'] / GB:.2f} GB |")
    if g:
        lines += ["", "## Growth", "", "| chunks | vectors | ingest s | chunks/s | retrieve p50 / p95 ms | "
                  "Chroma p50 / p95 ms | brute force p50 / p95 ms | recall@10 (min) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in g["rows"]:
            lines.append(f"| {r['size']:,} | {r['vectors']} | {r['ingest_s']:.1f} | {r['chunks_per_s']:.0f} | "
                         f"{_ms(r['retrieve'], 'p50')} / {_ms(r['retrieve'], 'p95')} | {_ms(r['dense'], 'p50')} / "
                         f"{_ms(r['dense'], 'p95')} | {_ms(r['brute'], 'p50')} / {_ms(r['brute'], 'p95')} | "
                         f"{r['recall_at_10']:.3f} ({r['recall_at_10_min']:.2f}) |")
        lines += ["", "![growth](growth.png)"]
    if "resources" in result.get("files", {}):
        lines += ["", "![ingest and memory](resources.png)"]
    for name in SECTIONS:
        if "error" in (result.get(name) or {}):
            lines += ["", f"## {name}: failed", "", f"    {result[name]['error']}"]
    lines += ["", "## How it was measured", ""]
    for section in ("ingest", "query", "process", "growth"):
        if (_ok(result, section) or {}).get("how"):
            lines.append(f"- **{section}**: {result[section]['how']}.")
    return "\n".join(lines) + "\n"


def plot(result: dict, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    ing, q, proc, g = (_ok(result, name) for name in SECTIONS)
    if q and q["questions"]:
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        rows = [r for r in q["questions"] if r["called_model"]]
        series = {"first token": [r["first_token"] for r in rows], "total": [r["total"] for r in rows],
                  "bare first token": [r["bare_first_token"] for r in rows if "bare_total" in r],
                  "bare total": [r["bare_total"] for r in rows if "bare_total" in r]}
        series = {k: v for k, v in series.items() if v}
        if series:
            a.boxplot(list(series.values()), tick_labels=list(series.keys()))
        a.axhline(10, color="tab:red", ls="--", lw=1, label="total target 10 s")
        a.axhline(5, color="tab:orange", ls="--", lw=1, label="first-token target 5 s")
        a.set_ylabel("seconds")
        a.set_title(f"ask() on {len(rows)} gold questions")
        a.legend(fontsize=8)
        pairs = [(r["bare_total"], r["total"]) for r in rows if "bare_total" in r]
        if pairs:
            x, y = zip(*pairs)
            b.scatter(x, y, s=14)
            lim = max(max(x), max(y)) * 1.05
            b.plot([0, lim], [0, lim], color="grey", lw=1, label="equal")
            b.plot([0, lim], [0, 1.1 * lim], color="tab:red", ls="--", lw=1, label="+10% target")
            b.legend(fontsize=8)
        b.set_xlabel("bare llama.cpp generation (s)")
        b.set_ylabel("our total (s)")
        b.set_title("same prompt: ours vs bare")
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        files["latency"] = "latency.png"
    if g and g["rows"]:
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
        real = [r for r in g["rows"] if r["vectors"] not in ("synthetic", HashEmbedder.name)]
        hashed = [r for r in g["rows"] if r["vectors"] == HashEmbedder.name]
        syn = [r for r in g["rows"] if r["vectors"] == "synthetic"]
        for rows, label in ((real, f"ingest.sync ({real[0]['vectors']})" if real else ""),
                            (hashed, "ingest.sync (hashed vectors)"), (syn, "synthetic vectors, add only")):
            if rows:
                a.plot([r["size"] for r in rows], [r["ingest_s"] for r in rows], "o-", label=label)
        a.set(xscale="log", yscale="log", xlabel="chunks", ylabel="seconds", title="ingest time")
        a.legend(fontsize=8)
        lines = [(real, "retrieve", "Retriever.retrieve (real)"), (hashed, "retrieve", "Retriever.retrieve (hashed)"),
                 (real, "dense", "Chroma (real vectors)"),
                 (real, "brute", "brute force (real vectors)"), (syn, "dense", "Chroma (synthetic)"),
                 (syn, "brute", "brute force (synthetic)")]
        for rows, key, label in lines:
            rows = [r for r in rows if r.get(key)]
            if rows:
                xs = [r["size"] for r in rows]
                (line,) = b.plot(xs, [r[key]["p50"] * 1e3 for r in rows], "o-", label=f"{label} p50")
                b.plot(xs, [r[key]["p95"] * 1e3 for r in rows], ":", color=line.get_color())
        b.axhline(150, color="tab:red", ls="--", lw=1, label="100k target 150 ms")
        b.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms (dotted: p95)", title="retrieval latency")
        b.legend(fontsize=7)
        for rows, label in ((real, "real vectors"), (syn, "synthetic")):
            if rows:
                c.plot([r["size"] for r in rows], [r["recall_at_10"] for r in rows], "o-", label=label)
        c.axhline(0.95, color="tab:red", ls="--", lw=1, label="target 0.95")
        c.set(xscale="log", ylim=(0, 1.02), xlabel="chunks", ylabel="recall@10 vs brute force",
              title="Chroma recall")
        c.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "growth.png", dpi=110)
        plt.close(fig)
        files["growth"] = "growth.png"
    if ing or proc:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        if ing:
            a.bar(["pipeline", "bare encode"], [ing["pipeline_chunks_per_s"], ing["bare_chunks_per_s"]],
                  color=["tab:blue", "tab:grey"])
            a.set(ylabel="chunks/s", title=f"ingest throughput (ratio {ing['ratio']:.2f})")
        if proc:
            names = ["ingest", "ask"] + (["ui"] if proc.get("ui") else [])
            b.bar(names, [proc[n]["peak_rss_bytes"] / GB for n in names], color="tab:blue")
            b.axhline(3, color="tab:red", ls="--", lw=1, label="target 3 GB")
            b.set(ylabel="GB", title="peak RSS")
            b.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "resources.png", dpi=110)
        plt.close(fig)
        files["resources"] = "resources.png"
    return files


def _summary(result: dict, out: Path) -> str:
    lines = [f"rag bench: {out}/report.md"]
    for t in result["targets"]:
        verdict = "–" if t["pass"] is None else "pass" if t["pass"] else "MISS"
        lines.append(f"  {verdict:4}  {t['what']}: {_fmt(t['value'], t['unit'])} "
                     f"({t['op']} {_fmt(t['target'], t['unit']).lstrip('+')})")
    return "\n".join(lines)
