"""Quiet by default: no network beyond the configured backends, no telemetry, nothing heavy at import, loopback UI.

The network checks run in fresh subprocesses whose environment has none of the quietening variables the test
suite sets (ANONYMIZED_TELEMETRY, HF_HUB_OFFLINE, ...), so they test the project's own defaults. A guard installed
before anything is imported records, and refuses, every DNS lookup and connect to a non-loopback address made
through Python's socket module. What it cannot see: sockets opened by native code (Chroma's Rust core, tokenizers);
those would need a network namespace, which this machine does not give us.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import CORPUS, ROOT, free_port

GUARD = textwrap.dedent('''
    """Records and refuses non-loopback network access through Python's socket module."""
    import atexit, ipaddress, json, os, socket

    attempts = []

    def _loopback(host):
        if isinstance(host, bytes):
            host = host.decode()
        if host in (None, "", "localhost") or str(host).endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    def _check(what, address):
        if isinstance(address, tuple) and not _loopback(address[0]):
            attempts.append(f"{what} {address[0]}:{address[1] if len(address) > 1 else ''}")
            raise OSError(101, f"network access refused by the test guard: {address[0]}")

    _getaddrinfo, _connect, _connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def getaddrinfo(host, port, *args, **kwargs):
        if not _loopback(host):
            attempts.append(f"dns {host}:{port}")
            raise socket.gaierror(socket.EAI_NONAME, f"lookup refused by the test guard: {host}")
        return _getaddrinfo(host, port, *args, **kwargs)

    def connect(self, address):
        _check("connect", address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check("connect", address)
        return _connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex

    def _report():
        with open(os.environ["GUARD_REPORT"], "w") as f:
            json.dump(attempts, f)

    atexit.register(_report)
''')

# Run with the guard in place: import the packages, ask on the chosen embedder, optionally serve the UI.
SCRIPT = textwrap.dedent('''
    import json, os, socket, sys
    import netguard

    try:  # the sentinel: proves the guard sees an attempt (the test checks it was recorded)
        socket.create_connection(("sentinel.invalid", 80), timeout=1)
    except OSError:
        pass
    out = {}
    import rag, ingest, ui
    heavy = {"gradio", "chromadb", "torch", "llama_cpp", "sentence_transformers", "transformers", "bm25s",
             "huggingface_hub", "llama_index", "httpx"}
    out["imported_at_import"] = sorted(m for m in heavy if m in sys.modules)
    from rag import Settings, ask
    settings = Settings(corpus=os.environ["CORPUS"], store=os.environ["STORE"], home=os.environ["HOME_DIR"],
                        llm="fake", embedder=os.environ["EMBEDDER"])
    answer = ask("How far did bitcoin fall after the leak?", settings=settings)
    out["answered"] = not answer.abstained and "66,000" in " ".join(c.quote for c in answer.citations)
    if os.environ.get("PORT"):
        from ui.app import launch
        demo = launch(settings, port=int(os.environ["PORT"]), block=False)  # the default host
        port = "%04X" % int(os.environ["PORT"])
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    local, state = line.split()[1], line.split()[3]
                    if state == "0A" and local.endswith(":" + port):
                        listening.append(local.split(":")[0])
        out["listening"] = listening
        demo.close()
    print("RESULT " + json.dumps(out), flush=True)
''')

QUIETENING = ("ANONYMIZED_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
              "GRADIO_ANALYTICS_ENABLED", "HF_DATASETS_OFFLINE", "DO_NOT_TRACK")


def _guarded(tmp_path: Path, args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    (tmp_path / "netguard.py").write_text(GUARD)
    report = tmp_path / "attempts.json"
    clean = {k: v for k, v in os.environ.items() if k not in QUIETENING and not k.startswith("RAG_")}
    clean.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), GUARD_REPORT=str(report), **env)
    run = subprocess.run([sys.executable, *args], cwd=tmp_path, env=clean, capture_output=True, text=True,
                         timeout=300)
    assert report.exists(), run.stderr[-3000:]
    return run, json.loads(report.read_text())


def _library_run(tmp_path: Path, embedder: str, serve: bool) -> dict:
    env = dict(CORPUS=str(CORPUS), STORE=str(tmp_path / "store"), HOME_DIR=str(tmp_path / "home"), EMBEDDER=embedder)
    if serve:
        env["PORT"] = str(free_port())
    run, attempts = _guarded(tmp_path, ["-c", SCRIPT], **env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert attempts[:1] == ["dns sentinel.invalid:80"], "the guard did not see the sentinel: it guards nothing"
    assert attempts[1:] == [], f"network access outside loopback: {attempts[1:]}"
    result = json.loads(next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["imported_at_import"] == [], "importing rag, ingest or ui loaded a heavy library"
    assert result["answered"]
    if not serve:  # (serving prints its URL, by design)
        assert run.stderr == "", f"library use wrote to stderr: {run.stderr[-500:]!r}"
    return result


@pytest.mark.integration  # launches the UI server
def test_no_network_at_import_ask_or_ui_launch_and_the_ui_listens_on_loopback(tmp_path):
    result = _library_run(tmp_path, "fake", serve=True)
    assert result["listening"] == ["0100007F"], f"listening on {result['listening']}, not only 127.0.0.1"


@pytest.mark.integration  # a subprocess
def test_cli_ask_is_quiet_and_offline(tmp_path):
    # `rag ask` on the fakes prints the answer on stdout and only the timing line on stderr: no warnings, no
    # debug lines from libraries (bm25s used to print one), no network.
    bootstrap = "import netguard, runpy, sys; sys.argv = sys.argv[1:]; runpy.run_module('rag.cli', run_name='__main__')"
    run, attempts = _guarded(tmp_path, ["-c", bootstrap, "rag", "ask", "How far did bitcoin fall after the leak?"],
                             RAG_LLM="fake", RAG_EMBEDDER="fake", RAG_CORPUS=str(CORPUS),
                             RAG_STORE=str(tmp_path / "store"), RAG_HOME=str(tmp_path / "home"))
    assert run.returncode == 0, run.stderr
    assert attempts == []
    assert "66,000" in run.stdout
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fake · retrieve"), run.stderr


@pytest.mark.integration  # a subprocess
def test_no_network_and_no_output_from_library_use(tmp_path):
    _library_run(tmp_path, "fake", serve=False)


@pytest.mark.slow
def test_no_network_and_no_output_with_the_real_minilm_embedder(tmp_path):
    _library_run(tmp_path, "minilm", serve=False)  # used to print a "Loading weights" progress bar


def test_chroma_telemetry_is_off_for_local_and_server_stores(tmp_path, monkeypatch):
    import chromadb

    from ingest import ChunkStore, SetupError

    seen = []
    real_persistent = chromadb.PersistentClient

    def persistent(*args, **kwargs):
        seen.append(("local", kwargs.get("settings")))
        return real_persistent(*args, **kwargs)

    def http(*args, **kwargs):
        seen.append(("server", kwargs.get("settings")))
        raise ConnectionError("no server in this test")

    monkeypatch.setattr(chromadb, "PersistentClient", persistent)
    monkeypatch.setattr(chromadb, "HttpClient", http)
    ChunkStore(str(tmp_path / "store"), "fake")
    with pytest.raises(SetupError, match="cannot reach the Chroma server"):
        ChunkStore("http://127.0.0.1:9", "fake")
    assert [kind for kind, _ in seen] == ["local", "server"]
    for _, chroma_settings in seen:
        assert chroma_settings is not None and chroma_settings.anonymized_telemetry is False


def test_the_ui_defaults_to_loopback_and_no_share_link(monkeypatch):
    from click.testing import CliRunner

    import ui.app
    from ingest.env import QUIET_ENV
    from rag.cli import main

    for var in QUIET_ENV:  # `main` sets these for the process: restore them afterwards
        monkeypatch.setenv(var, os.environ.get(var, ""))
        if not os.environ[var]:
            monkeypatch.delenv(var)

    params = inspect.signature(ui.app.launch).parameters
    assert params["host"].default == "127.0.0.1" and params["share"].default is False
    calls = []
    monkeypatch.setattr(ui.app, "launch", lambda settings, **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(main, ["ui"])
    assert result.exit_code == 0, result.output
    assert calls == [{"host": "127.0.0.1", "port": 7860, "share": False, "auth": [], "open_access": False}]
