"""The OpenAI-compatible API (`rag serve`), driven by the official `openai` client against a live server on loopback.

The server runs in-process (`ui.api.serve(block=False)`, a uvicorn thread) on the fakes over a tmp store and a copy
of the corpus, except one test that starts `rag serve` as a process and one slow test with the real model.
Expected answers come from the same pipeline asked in-process, so the API is checked to add nothing and lose nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ingest.errors import SetupError
from rag import NOT_FOUND, Settings, pipeline
from rag.cli import main
from rag.llm import FakeLLM
from ui.api import serve

from .conftest import ROOT, free_port, require

MODEL = "corpus"  # the collection the test settings answer from: named after their corpus folder

openai = pytest.importorskip("openai")

KEY = "test-key-123"
QUESTION = "How far did bitcoin fall after the leak?"
OTHER = "What is Capybara?"
HISTORY = [{"role": "user", "content": "How did bitcoin react to the Mythos leak?"},
           {"role": "assistant", "content": "It slid to $66,000 [1]."}]


def _require_command(name: str) -> None:
    from importlib.metadata import entry_points

    require(any(ep.name == name for ep in entry_points(group="rag.commands")), f"the `rag {name}` command",
            "pip install -e . (it registers the rag.commands entry points)")


@pytest.fixture
def api(settings):
    running = serve(settings, host="127.0.0.1", port=0, api_key=KEY, block=False)
    yield running
    running.close()


def _client(api, key: str = KEY):
    return openai.OpenAI(base_url=api.url, api_key=key, max_retries=0, timeout=60)


def _ask(client, question: str, history: list | None = None, model: str = MODEL, **kwargs):
    messages = [*(history or []), {"role": "user", "content": question}]
    return client.chat.completions.create(model=model, messages=messages, **kwargs)


def _check_spans(settings: Settings, passages: list[dict]) -> None:
    docs = pipeline(settings).documents()
    for p in passages:
        assert docs[p["doc_id"]].text[p["char_start"] : p["char_end"]] == p["quote"], p


def _extras(expected) -> dict:
    return {"abstained": expected.abstained,
            "citations": [(c.number, c.doc_id, c.char_start, c.char_end, c.quote) for c in expected.citations],
            "sentences": [(s.text, s.citations, s.supported) for s in expected.sentences]}


def _seen(rag: dict) -> dict:
    return {"abstained": rag["abstained"],
            "citations": [(c["number"], c["doc_id"], c["char_start"], c["char_end"], c["quote"])
                          for c in rag["citations"]],
            "sentences": [(s["text"], s["citations"], s["supported"]) for s in rag["sentences"]]}


def test_models_are_the_collections(api):
    client = _client(api)
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "rag-news"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_one_answer_carries_the_verified_text_and_the_rag_extras(api, settings):
    expected = pipeline(settings).ask(QUESTION)
    reply = _ask(_client(api), QUESTION)
    message = reply.choices[0].message
    assert message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    assert message.content == expected.text and "66,000" in message.content and "[1]" in message.content
    rag = message.rag  # the extension field, kept by the client as an extra attribute
    assert _seen(rag) == _extras(expected) and rag["citations"] and not rag["abstained"]
    assert all("page" in c for c in rag["citations"])
    _check_spans(settings, rag["citations"])
    assert reply.model == MODEL and reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    assert reply.usage.prompt_tokens == expected.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_a_streamed_answer_is_the_same_answer_in_openai_chunks(api, settings):
    expected = pipeline(settings).ask(QUESTION)
    chunks = list(_ask(_client(api), QUESTION, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert _seen(final[0].rag) == _extras(expected)
    _check_spans(settings, final[0].rag["citations"])
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == expected.prompt_tokens

    # On the wire: server-sent events ending with OpenAI's terminator.
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with httpx.stream("POST", f"{api.url}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_a_follow_up_uses_the_earlier_turns_as_history(api, settings):
    follow_up = "and how much did it fall?"
    alone, expected = pipeline(settings).ask(follow_up), pipeline(settings).ask(follow_up, HISTORY)
    assert alone.text != expected.text  # the history changes the answer, so the test can tell it was used
    system = [{"role": "system", "content": "You are a pirate."}]  # ignored: the pipeline has its own prompt
    reply = _ask(_client(api), follow_up, system + HISTORY)
    assert reply.choices[0].message.content == expected.text and "66,000" in expected.text
    streamed = _ask(_client(api), follow_up, HISTORY, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected.text


def test_an_unanswerable_question_abstains_with_the_closest_passages(api, settings):
    reply = _ask(_client(api), "Quel temps fera-t-il demain à Lyon?")
    message = reply.choices[0].message
    assert message.content == NOT_FOUND
    assert message.rag["abstained"] and message.rag["citations"] == [] and message.rag["closest"]
    assert message.rag["abstain_reason"] == "weak_retrieval"
    _check_spans(settings, message.rag["closest"])
    assert reply.usage.prompt_tokens == 0  # no model call


def test_a_wrong_or_missing_key_is_refused_with_401(api):
    for key in ("wrong-key", KEY + "x"):
        with pytest.raises(openai.AuthenticationError) as e:
            _ask(_client(api, key), QUESTION)
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            _client(api, key).models.list()
    r = httpx.get(f"{api.url}/models", timeout=10)
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_errors_have_openai_shape_and_the_cli_messages(api):
    client = _client(api)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": QUESTION}])
    assert e.value.body["message"] == "unknown collection 'nope': use one of: corpus"
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        _ask(client, "   ")
    assert e.value.body["message"] == "the question is empty: type a question about the articles"
    with pytest.raises(openai.BadRequestError) as e:
        _ask(client, "x" * 4001, stream=True)  # a stream fails before it starts, with its status
    assert e.value.body["message"].startswith("the question is 4,001 characters long")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "Hi"}])
    assert "the last message must be the question" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages="not a list")  # type: ignore[arg-type]


def test_a_backend_that_is_not_ready_is_503_and_a_failure_mid_stream_an_error_event(api, monkeypatch):
    def down(self, messages, **kwargs):
        raise SetupError("cannot reach Ollama at http://127.0.0.1:9 (ConnectError): start it with `ollama serve`")
        yield ""  # a generator, like every backend's stream

    monkeypatch.setattr(FakeLLM, "stream", down)
    with pytest.raises(openai.InternalServerError) as e:
        _ask(_client(api), QUESTION)
    assert e.value.status_code == 503 and e.value.body["code"] == "model_not_ready"
    assert e.value.body["message"].startswith("cannot reach Ollama")

    def dies(self, messages, **kwargs):
        yield "Markets"
        raise SetupError("Ollama at http://127.0.0.1:9 stopped answering mid-reply (ReadError): check the server")

    monkeypatch.setattr(FakeLLM, "stream", dies)
    stream = _ask(_client(api), QUESTION, stream=True)
    with pytest.raises(openai.APIError, match="stopped answering mid-reply"):
        list(stream)


def test_two_clients_at_once_each_get_their_own_answer(api, settings, monkeypatch):
    expected = {q: pipeline(settings).ask(q).text for q in (QUESTION, OTHER)}
    assert len(set(expected.values())) == 2
    running, peak, lock = [0], [0], threading.Lock()
    fast = FakeLLM.stream

    def slow(self, messages, **kwargs):  # slowed so the two requests really overlap (checked below)
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            for delta in fast(self, messages, **kwargs):
                time.sleep(0.01)
                yield delta
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(FakeLLM, "stream", slow)
    got: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def one(question: str, stream: bool) -> None:
        try:
            client = _client(api)
            start.wait(10)
            if stream:
                got[question] = "".join(c.choices[0].delta.content or "" for c in _ask(client, question, stream=True)
                                        if c.choices)
            else:
                got[question] = _ask(client, question).choices[0].message.content
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(QUESTION, False)), threading.Thread(target=one, args=(OTHER, True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and got == expected
    assert peak[0] == 2, "the two requests did not overlap"


def test_beyond_loopback_needs_an_api_key(settings):
    _require_command("serve")
    env = {"RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store, "RAG_HOME": str(settings.home),
           "RAG_LLM": "fake", "RAG_EMBEDDER": "fake", "RAG_API_KEY": ""}
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", str(free_port())], env=env)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: refusing to listen on 0.0.0.0 without an API key: pass --api-key KEY (or set RAG_API_KEY), or keep "
        "the default --host 127.0.0.1"]


@pytest.mark.integration  # starts `rag serve` as a process
def test_rag_serve_as_a_process_takes_its_key_from_the_environment(settings):
    _require_command("serve")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CORPUS": str(settings.corpus), "RAG_STORE": settings.store,
           "RAG_HOME": str(settings.home), "RAG_LLM": "fake", "RAG_EMBEDDER": "fake", "RAG_API_KEY": KEY}
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "OpenAI-compatible API on" in line:
                break
        assert lines[-1].strip() == f"OpenAI-compatible API on http://127.0.0.1:{port}/v1 (API key required)", lines
        url = f"http://127.0.0.1:{port}/v1"
        client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=60)
        assert "66,000" in _ask(client, QUESTION).choices[0].message.content
        with pytest.raises(openai.AuthenticationError):
            _ask(openai.OpenAI(base_url=url, api_key="nope", max_retries=0), QUESTION)
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_the_real_model_answers_through_the_api(tmp_path: Path):
    settings = Settings(store=str(tmp_path / "store"), llm="llamacpp:default", embedder="minilm")
    running = serve(settings, port=0, block=False)
    try:
        reply = _ask(openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0, timeout=300), QUESTION,
                     model="default")  # the bundled corpus is the default collection
    finally:
        running.close()
    message = reply.choices[0].message
    assert not message.rag["abstained"] and "66,000" in message.content
    _check_spans(settings, message.rag["citations"])
    assert any("66,000" in c["quote"] for c in message.rag["citations"])
    assert all(s["supported"] for s in message.rag["sentences"] if "66,000" in s["text"])
