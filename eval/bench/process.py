"""The process section: fresh `rag` processes, as a person starts them. Cold start to the first answer (store
already ingested, and on an empty store), and where its time goes (imports, store, index, embedder, model, answer:
eval/bench/coldparts.py in one more fresh process); peak RSS (getrusage RUSAGE_CHILDREN) of `rag ingest` and
`rag ask`; peak RSS (/proc VmHWM) of `rag ui` after it answered one question over HTTP.

Warm latency inside one process is the query section's; memory is only the peak, never a trace over time.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from eval.bench.measure import GB, Log
from ingest.env import QUIET_ENV
from ingest.errors import SetupError
from rag.settings import Settings

TIMEOUT_S = 600.0  # per command: generous, so that only a hung command is stopped

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
    text = log_file.read_text(encoding="utf-8", errors="replace")
    return {"cmd": cmd[1:], **got, "output": text[-4000:], "full_output": text}  # _with_answer drops full_output


def _env(settings: Settings, store: str, local: bool = True) -> dict:
    """A bench process's environment; `local`: a `rag ask` answers on its own even if a `rag serve` is running."""
    env = {**os.environ, **QUIET_ENV, "RAG_LOCAL": "1", "RAG_CORPUS": str(settings.corpus), "RAG_STORE": store,
           "RAG_LLM": settings.llm, "RAG_EMBEDDER": settings.embedder, "RAG_HOME": str(settings.home)}
    env.pop("RAG_TOP_K", None)
    if not local:
        env.pop("RAG_LOCAL")
    return env


def _rag(*args: str) -> list[str]:
    return [sys.executable, "-m", "rag.cli", *args]


def bench_process(settings: Settings, work: Path, question: str, cold_runs: int, ui: bool, log: Log) -> dict:
    """`rag ingest` twice, `rag ask` on an empty store and `cold_runs` times on the ingested one, a cold start part
    by part, then `rag ui`."""
    store = str(work / "process-store")
    out: dict = {"question": question}

    ingest = run_measured(_rag("ingest", str(settings.corpus)), _env(settings, store), work / "ingest.log",
                          TIMEOUT_S)
    _check(ingest, "rag ingest")
    ingest.pop("full_output")
    out["ingest"] = ingest
    log(f"  rag ingest: {ingest['seconds']:.1f}s, peak RSS {ingest['peak_rss_bytes'] / GB:.2f} GB")
    again = run_measured(_rag("ingest", str(settings.corpus)), _env(settings, store), work / "reingest.log",
                         TIMEOUT_S)
    _check(again, "rag ingest (unchanged)")
    again.pop("full_output")
    out["reingest_process"] = again

    empty = run_measured(_rag("ask", "--json", question), _env(settings, str(work / "cold-empty")),
                         work / "cold-empty.log", TIMEOUT_S)
    _check(empty, "rag ask (empty store)")
    out["cold_empty_store"] = _with_answer(empty)
    log(f"  rag ask on an empty store: {empty['seconds']:.1f}s")

    runs = []
    for i in range(cold_runs):
        r = run_measured(_rag("ask", "--json", question), _env(settings, store), work / f"cold-{i}.log", TIMEOUT_S)
        _check(r, "rag ask")
        runs.append(_with_answer(r))
        log(f"  rag ask (ingested store): {r['seconds']:.1f}s, peak RSS {r['peak_rss_bytes'] / GB:.2f} GB")
    out["cold"] = runs
    out["cold_start_s"] = statistics.median(r["seconds"] for r in runs)
    out["ask"] = {"peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs)}
    out["served"] = served_asks(settings, store, question, work, cold_runs, log)
    out["served_ask_s"] = out["served"]["median_s"]
    out["cold_parts"] = cold_parts(settings, store, question, work)
    log("  a cold start part by part: " + ", ".join(f"{k} {v:.2f}s" for k, v in out["cold_parts"]["parts"].items()
                                                     if v >= 0.05))
    if ui:
        out["ui"] = measure_ui(settings, store, question, work, log)
    out["how"] = ("`python -m rag.cli ...` subprocesses with the bench's settings; cold start = spawn to exit of "
                  "`rag ask --json` (imports, model load from a warm page cache, store open and sync check, "
                  "retrieval, generation, verification); peak RSS of ask and ingest = ru_maxrss from "
                  "getrusage(RUSAGE_CHILDREN) in a small launcher process (not the bench, whose RSS a child inherits); "
                  "the UI's from /proc/PID/status VmHWM after one answered question over HTTP (gradio_client); the "
                  "cold start part by part from one more fresh process, `python -m eval.bench.coldparts`, that does "
                  "the parts one after another (a real `rag ask` loads the model while it retrieves: the cold start "
                  "is the spawn-to-exit figure, not the parts' sum)")
    return out


def cold_parts(settings: Settings, store: str, question: str, work: Path) -> dict:
    """One fresh process (eval/bench/coldparts.py) that does a cold `rag ask`'s work one part after another: each
    part's seconds, their total, and the process's own wall time and peak RSS as run_measured sees them."""
    r = run_measured([sys.executable, "-m", "eval.bench.coldparts", "--json", question], _env(settings, store),
                     work / "cold-parts.log", TIMEOUT_S)
    _check(r, "python -m eval.bench.coldparts")
    text = r.pop("full_output")
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("{")), "")
    try:
        got = json.loads(line)
    except ValueError:
        raise SetupError(f"eval.bench.coldparts printed no JSON: {text[-600:]}") from None
    return {**got, "seconds": r["seconds"], "peak_rss_bytes": r["peak_rss_bytes"]}


def _check(r: dict, what: str) -> None:
    if r["exit_code"] != 0:
        raise SetupError(f"{what} failed (exit {r['exit_code']}): {r['output'][-600:]}")


def _with_answer(r: dict) -> dict:
    text = r.pop("full_output", r["output"])  # an answer's JSON is longer than the tail kept in bench.json
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


def served_asks(settings: Settings, store: str, question: str, work: Path, runs: int, log: Log) -> dict:
    """Start `rag serve` on the ingested store, then time `runs` fresh `rag ask --json` processes that it answers
    (rag/running.py): spawn to exit, with the server's own answer time beside it."""
    port = _free_port()
    log_file = work / "serve.log"
    env = _env(settings, store, local=False)
    with open(log_file, "wb") as sink:
        proc = subprocess.Popen(_rag("serve", "--host", "127.0.0.1", "--port", str(port)), env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.perf_counter()
    try:
        while "API on http" not in log_file.read_text(errors="replace"):
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SetupError(f"rag serve did not start: {log_file.read_text(errors='replace')[-600:]}")
            time.sleep(0.1)
        rows = []
        for i in range(runs + 1):  # the first warms the server's model; it is not counted
            r = run_measured(_rag("-v", "ask", "--json", question), env, work / f"served-{i}.log", TIMEOUT_S)
            _check(r, "rag ask (served)")
            if "answered by `rag serve`" not in r["full_output"]:
                raise SetupError("rag ask was not answered by the running rag serve: "
                                 f"{r['full_output'][-400:]}")
            answer = _with_answer(r)
            if i:
                rows.append(answer)
                log(f"  rag ask through rag serve: {r['seconds']:.2f}s, peak RSS {r['peak_rss_bytes'] / GB:.2f} GB")
        return {"runs": rows, "median_s": statistics.median(r["seconds"] for r in rows),
                "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rows)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure_ui(settings: Settings, store: str, question: str, work: Path, log: Log) -> dict:
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
