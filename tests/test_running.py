"""`rag ask` answered by a running `rag serve` or `rag ui` for the same settings (rag/running.py, POST /rag/ask in
ui/api.py).

In-process tests run the server in a uvicorn thread (`serve(block=False)`) on the fakes and count the questions it
answers by wrapping `ui.api.pipeline`, which only /rag/ask calls once the server is up. The `integration` tests
start `rag serve` and `rag ask` as processes, as a person does, and check that the asking process imported none of
the heavy libraries: the local path imports chromadb even on the fakes, so a local answer cannot pass for a served one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import httpx
import pytest
from click.testing import CliRunner

import ui.api
from rag import Answer, Settings, pipeline
from rag.cli import main
from rag.running import (
    ASK_PATH,
    PID_HEADER,
    identity,
    is_loopback,
    local_url,
    records,
    records_folder,
    write_record,
)
from ui.api import serve

from .conftest import ROOT, free_port
from .ollama_standin import OllamaStandIn

QUESTION = "How far did bitcoin fall after the leak?"
UNANSWERABLE = "Quel temps fera-t-il demain à Lyon?"  # the fakes abstain, listing the closest passages
KEY = "test-key-456"
HEAVY = ("chromadb", "llama_cpp", "torch", "sentence_transformers")


def _env(settings: Settings, **more: str | None) -> dict:
    """The environment of a `rag` command with these settings (None: unset)."""
    return {"RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store, "RAG_HOME": str(settings.home),
            "RAG_LLM": settings.llm, "RAG_EMBEDDER": settings.embedder, "RAG_API_KEY": None, "RAG_LOCAL": None,
            "RAG_COLLECTION": None, "RAG_TOP_K": None, **more}


def _without_timings(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "timings"}


def _timings_masked(text: str) -> str:
    return re.sub(r"\d+\.\d+s", "N.NNs", text)


@pytest.fixture
def asked(monkeypatch) -> list[Settings]:
    """The settings of each question a server in this process answered through /rag/ask. Only a request calls
    `ui.api.pipeline` in a worker thread (`serve()` calls it in this one; a local `rag ask` uses rag.answer's)."""
    seen: list[Settings] = []
    real = ui.api.pipeline

    def counting(settings=None, **overrides):
        if threading.current_thread() is not threading.main_thread():
            seen.append(settings)
        return real(settings, **overrides)

    monkeypatch.setattr(ui.api, "pipeline", counting)
    return seen


@pytest.fixture
def server(settings, asked):
    running = serve(settings, host="127.0.0.1", port=0, block=False)
    yield running
    running.close()


def _ask(settings: Settings, *args: str, **env: str | None):
    return CliRunner().invoke(main, ["ask", *args], env=_env(settings, **env))


# --- pieces --------------------------------------------------------------------------------------------------
def test_an_answer_is_rebuilt_from_its_dict_and_its_json(settings):
    for question in (QUESTION, UNANSWERABLE):
        a = pipeline(settings).ask(question)
        assert a.abstained is (question == UNANSWERABLE) and a.sources
        assert Answer.from_dict(a.to_dict()) == a
        assert Answer.from_dict(json.loads(json.dumps(a.to_dict()))) == a


@pytest.mark.parametrize("host, loopback, url", [
    ("127.0.0.1", True, "http://127.0.0.1:8000"), ("127.0.0.2", True, "http://127.0.0.2:8000"),
    ("::1", True, "http://[::1]:8000"), ("[::1]", True, "http://[::1]:8000"), ("localhost", True,
    "http://localhost:8000"), ("LOCALHOST", True, "http://LOCALHOST:8000"), ("0.0.0.0", False,
    "http://127.0.0.1:8000"), ("::", False, "http://[::1]:8000"), ("10.0.0.5", False, None),
    ("example.com", False, None)])
def test_loopback_hosts_and_the_url_a_server_is_recorded_at(host, loopback, url):
    assert is_loopback(host) is loopback
    assert local_url(host, 8000) == url


def test_the_server_records_itself_without_its_key_and_removes_the_record_when_it_stops(settings):
    running = serve(settings, host="127.0.0.1", port=0, api_key=KEY, block=False)
    try:
        [path] = records_folder(settings.home).glob("serve-*.json")
        body = json.loads(path.read_text(encoding="utf-8"))
        assert body["url"] == running.url.removesuffix("/v1") and body["pid"] == os.getpid()
        assert body["api_key"] is True and KEY not in path.read_text(encoding="utf-8")
        assert body["identity"] == identity(settings) and body["identity"]["collection"] == "corpus"
        assert body["folder"] == str(settings.corpus.resolve())
        assert not list(records_folder(settings.home).glob(".*"))  # no half-written file left beside it
    finally:
        running.close()
    assert not list(records_folder(settings.home).iterdir())


def test_the_native_endpoint_returns_the_answer_as_a_dict_behind_the_key(settings):
    running = serve(settings, host="127.0.0.1", port=0, api_key=KEY, block=False)
    try:
        root = running.url.removesuffix("/v1")
        expected = pipeline(settings).ask(QUESTION).to_dict()
        reply = httpx.post(root + ASK_PATH, json={"question": QUESTION}, headers={"Authorization": f"Bearer {KEY}"},
                           timeout=60)
        assert reply.status_code == 200 and reply.headers[PID_HEADER] == str(os.getpid())
        assert _without_timings(reply.json()) == _without_timings(expected) and "66,000" in reply.json()["text"]
        refused = httpx.post(root + ASK_PATH, json={"question": QUESTION}, timeout=60)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        empty = httpx.post(root + ASK_PATH, json={"question": " "}, headers={"Authorization": f"Bearer {KEY}"})
        assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_request"
    finally:
        running.close()


# --- rag ask, served or not ----------------------------------------------------------------------------------
def test_rag_ask_is_answered_by_the_server_and_prints_what_it_prints_alone(settings, server, asked, caplog):
    caplog.set_level("INFO", logger="rag.running")
    for args in ([QUESTION], ["--json", QUESTION], [UNANSWERABLE]):
        before = len(asked)
        served = _ask(settings, *args)
        assert served.exit_code == 0, served.output
        assert len(asked) == before + 1, "the server did not answer"
        alone = _ask(settings, "--local", *args)
        assert alone.exit_code == 0 and len(asked) == before + 1  # --local: the server is not asked
        if "--json" in args:
            assert _without_timings(json.loads(served.stdout)) == _without_timings(json.loads(alone.stdout))
        else:
            assert served.stdout == alone.stdout
            assert ("66,000" in served.stdout) if QUESTION in args else ("Closest passages:" in served.stdout)
            assert _timings_masked(served.stderr) == _timings_masked(alone.stderr)
    assert f"answered by `rag serve` at {server.url.removesuffix('/v1')} (pid {os.getpid()})" in caplog.text
    assert _ask(settings, QUESTION, RAG_LOCAL="1").exit_code == 0 and len(asked) == 3  # the env var forces it too


def test_a_question_the_server_refuses_is_the_same_error_as_alone(settings, server, asked, caplog):
    caplog.set_level("INFO", logger="rag.running")
    for args, message in ((["   "], "error: the question is empty"),
                          (["--doc", "000_nope", QUESTION], "error: no document '000_nope'")):
        served, alone = _ask(settings, *args), _ask(settings, "--local", *args)
        assert served.exit_code == alone.exit_code == 1
        assert served.output == alone.output and served.output.startswith(message), served.output
    assert len(asked) == 2 and "answering here" not in caplog.text  # the server's word, not asked again here


@pytest.mark.parametrize("change", ["collection", "llm", "top_k", "store", "corpus"])
def test_a_server_for_other_settings_is_not_used(settings, tmp_path, asked, change):
    elsewhere = tmp_path / "elsewhere"  # "corpus": the same collection, mirroring another folder
    other = {"collection": {"collection": "other"}, "llm": {"llm": "ollama:qwen2.5:1.5b"}, "top_k": {"top_k": 6},
             "store": {"store": str(tmp_path / "other-store")},
             "corpus": {"corpus": elsewhere, "collection": settings.collection_name}}[change]
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("Bitcoin fell to $50,000 after the leak, traders said.", "utf-8")
    with OllamaStandIn() as ollama:  # the server on another model would answer, were it asked
        running = serve(settings.model_copy(update=other), host="127.0.0.1", port=0, block=False)
        try:
            assert len(list(records(settings.home))) == 1
            result = _ask(settings, "--json", QUESTION, OLLAMA_HOST=ollama.url)
            alone = _ask(settings, "--json", "--local", QUESTION, OLLAMA_HOST=ollama.url)
        finally:
            running.close()
    assert asked == [] and ollama.requests == []
    assert result.exit_code == alone.exit_code and result.stderr == alone.stderr
    if change == "corpus":  # the folder it mirrors is not the one asked for: the same error either way
        assert result.exit_code == 1 and "error: " in result.stderr
    else:
        assert result.exit_code == 0, result.output
        assert _without_timings(json.loads(result.stdout)) == _without_timings(json.loads(alone.stdout))


def test_a_record_of_a_server_that_is_gone_is_removed(settings, asked):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = write_record(settings, f"http://127.0.0.1:{free_port()}", settings.corpus, False)
    body = json.loads(path.read_text(encoding="utf-8"))
    dead = path.with_name(f"serve-{gone.pid}-1.json")
    dead.write_text(json.dumps({**body, "pid": gone.pid}), encoding="utf-8")
    deaf = path  # this process's own pid: alive, but nothing listens on its port
    odd = records_folder(settings.home) / "serve-1-2.json"
    odd.write_text("{not json", encoding="utf-8")
    result = _ask(settings, QUESTION)
    assert result.exit_code == 0 and "66,000" in result.stdout
    assert not dead.exists() and not deaf.exists()
    assert odd.exists()  # not a record this version can read: left alone, and ignored


def test_a_server_with_a_key_is_used_with_the_key_from_the_environment_only(settings, asked):
    running = serve(settings, host="127.0.0.1", port=0, api_key=KEY, block=False)
    try:
        alone = _ask(settings, "--local", QUESTION)
        no_key, wrong = _ask(settings, QUESTION), _ask(settings, QUESTION, RAG_API_KEY="wrong")
        assert asked == []  # no key: not asked; the wrong one: refused before it answered
        right = _ask(settings, QUESTION, RAG_API_KEY=KEY)
        assert len(asked) == 1
    finally:
        running.close()
    for result in (no_key, wrong, right):
        assert result.exit_code == 0 and result.stdout == alone.stdout


def test_a_server_that_fails_leaves_the_question_to_rag_ask(settings, server, asked, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ui.api, "collection_settings", broken)
    result = _ask(settings, QUESTION)
    assert result.exit_code == 0 and "66,000" in result.stdout and "boom" not in result.output


# --- rag ui ----------------------------------------------------------------------------------------------------
@pytest.mark.integration  # launches the Gradio page
def test_rag_ask_is_answered_by_a_running_ui_without_a_login_and_never_by_one_with(settings, asked, caplog):
    from ui.app import launch

    caplog.set_level("INFO", logger="rag.running")
    port = free_port()
    demo = launch(settings, port=port, block=False)
    try:
        [path] = records_folder(settings.home).glob("ui-*.json")
        body = json.loads(path.read_text(encoding="utf-8"))
        assert body["kind"] == "ui" and body["url"] == f"http://127.0.0.1:{port}" and body["pid"] == os.getpid()
        assert body["identity"] == identity(settings) and body["api_key"] is False
        served, alone = _ask(settings, "--json", QUESTION), _ask(settings, "--json", "--local", QUESTION)
        assert served.exit_code == alone.exit_code == 0, served.output
        assert len(asked) == 1, "the page's process did not answer"
        assert _without_timings(json.loads(served.stdout)) == _without_timings(json.loads(alone.stdout))
        assert "66,000" in json.loads(served.stdout)["text"]
        assert f"answered by `rag ui` at http://127.0.0.1:{port} (pid {os.getpid()})" in caplog.text
        refused = _ask(settings, "   ")  # the page's pipeline refuses it as a local one does
        assert refused.exit_code == 1 and refused.output.startswith("error: the question is empty")
        assert len(asked) == 2
    finally:
        demo.close()
    after = _ask(settings, QUESTION)  # the page is gone: answered here, and its record removed
    assert after.exit_code == 0 and len(asked) == 2 and not path.exists()

    port = free_port()
    demo = launch(settings, port=port, block=False, auth=[("alice", "s3cret")])
    try:
        assert not list(records_folder(settings.home).glob("ui-*.json"))  # a record would go round the login
        assert httpx.post(f"http://127.0.0.1:{port}{ASK_PATH}", json={"question": QUESTION}).status_code != 200
        assert _ask(settings, QUESTION).exit_code == 0 and len(asked) == 2
    finally:
        demo.close()


# --- as processes ---------------------------------------------------------------------------------------------
def _process_env(settings: Settings, **more: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **_env(settings, **more)}
    return {k: v for k, v in env.items() if v is not None}


class _Serve:
    """`rag serve` as a process on a free loopback port, stopped with SIGTERM as a person's Ctrl-C or kill does."""

    def __init__(self, env: dict, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(self.port), *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "OpenAI-compatible API on" in line:
                break
        assert lines and "OpenAI-compatible API on" in lines[-1], lines

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _rag_ask(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`rag -v ask ARGS` as a fresh process: its result, and the heavy libraries it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "rag.cli", "-v", "ask", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    imported = {m for m in HEAVY if re.search(rf"\|\s+{m}(\.|$)", done.stderr, re.M)}
    done.stderr = "\n".join(ln for ln in done.stderr.splitlines() if not ln.startswith("import time:"))
    return done, imported


def _timings_line(stderr: str) -> str:
    return _timings_masked(next(ln for ln in stderr.splitlines() if " · retrieve " in ln))


@pytest.mark.integration  # starts `rag serve` and `rag ask` as processes
def test_a_fresh_rag_ask_process_is_answered_by_a_running_rag_serve(settings):
    env = _process_env(settings)
    running = _Serve(env)
    try:
        [record] = records_folder(settings.home).glob("serve-*.json")
        for args in ([QUESTION], ["--json", QUESTION]):
            served, heavy = _rag_ask(env, *args)
            assert served.returncode == 0, served.stderr
            assert f"(pid {running.proc.pid})" in served.stderr and "answered by `rag serve`" in served.stderr
            assert heavy == set(), f"the served path imported {heavy}"
            alone, heavy_alone = _rag_ask(env, "--local", *args)
            assert alone.returncode == 0 and "chromadb" in heavy_alone  # the check above can fail
            if "--json" in args:
                assert _without_timings(json.loads(served.stdout)) == _without_timings(json.loads(alone.stdout))
            else:
                assert served.stdout == alone.stdout and "66,000" in served.stdout
                assert _timings_line(served.stderr) == _timings_line(alone.stderr)
    finally:
        running.stop()
    assert not record.exists(), "the record outlived its server"
    after, heavy = _rag_ask(env, QUESTION)  # nothing running: answered here, as before
    assert after.returncode == 0 and "66,000" in after.stdout and "chromadb" in heavy


@pytest.mark.integration
def test_rag_serve_for_another_collection_or_model_is_not_used(settings, tmp_path):
    with OllamaStandIn() as ollama:
        other_collection = _Serve(_process_env(settings), "--collection", "other")
        other_llm = _Serve(_process_env(settings, RAG_LLM="ollama:qwen2.5:1.5b", OLLAMA_HOST=ollama.url))
        try:
            assert len(list(records_folder(settings.home).glob("serve-*.json"))) == 2
            result, heavy = _rag_ask(_process_env(settings, OLLAMA_HOST=ollama.url), QUESTION)
        finally:
            other_collection.stop()
            other_llm.stop()
    assert result.returncode == 0 and "66,000" in result.stdout
    assert "chromadb" in heavy and "answered by" not in result.stderr and ollama.requests == []
    assert result.stderr.count("it answers for other settings") == 2


@pytest.mark.integration
def test_a_dead_rag_serve_record_is_removed_and_a_keyed_one_needs_the_key(settings):
    env = _process_env(settings)
    killed = _Serve(env)
    killed.proc.kill()  # no chance to remove its record
    killed.proc.wait(20)
    [stale] = records_folder(settings.home).glob("serve-*.json")
    result, heavy = _rag_ask(env, QUESTION)
    assert result.returncode == 0 and "66,000" in result.stdout and "chromadb" in heavy
    assert not stale.exists() and "a server that is gone" in result.stderr

    keyed = _Serve(_process_env(settings, RAG_API_KEY=KEY))
    try:
        without, heavy_without = _rag_ask(env, QUESTION)
        assert "it needs an API key and RAG_API_KEY is not set" in without.stderr and "chromadb" in heavy_without
        wrong, heavy_wrong = _rag_ask(_process_env(settings, RAG_API_KEY="wrong"), QUESTION)
        assert "answered 401" in wrong.stderr and "chromadb" in heavy_wrong
        right, heavy_right = _rag_ask(_process_env(settings, RAG_API_KEY=KEY), QUESTION)
        assert f"(pid {keyed.proc.pid})" in right.stderr and heavy_right == set()
    finally:
        keyed.stop()
    assert without.stdout == wrong.stdout == right.stdout == result.stdout


@pytest.mark.integration
def test_a_rag_ui_process_answers_a_fresh_rag_ask_and_takes_its_record_when_killed(settings):
    env = _process_env(settings)
    port = free_port()
    page = subprocess.Popen([sys.executable, "-m", "rag.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in page.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Running on" in line:
                break
        assert lines and "Running on" in lines[-1], lines
        [record] = records_folder(settings.home).glob("ui-*.json")
        served, heavy = _rag_ask(env, QUESTION)
        assert served.returncode == 0 and "66,000" in served.stdout, served.stderr
        assert f"answered by `rag ui` at http://127.0.0.1:{port} (pid {page.pid})" in served.stderr
        assert heavy == set(), f"the served path imported {heavy}"
    finally:
        page.terminate()
        page.wait(20)
    assert not record.exists(), "the record outlived its page"
