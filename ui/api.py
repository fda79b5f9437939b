"""`rag serve`: an OpenAI-compatible HTTP API over the pipeline, for any client that takes a base URL.

    POST /v1/chat/completions   the last user message is the question, earlier user/assistant turns its history;
                                `model` names the collection; `"stream": true` answers in OpenAI's SSE chunks
    GET  /v1/models             the collections (ui/collections.py), as models
    POST /rag/ask               {question, collection?, documents?} -> `Answer.to_dict()`: what a fresh `rag ask`
                                sends to a running server (rag/running.py) instead of loading the model itself

The reply's content is the verified answer with its [n] markers. What the text alone does not say (the passage of
each marker as an exact span, which sentences are supported, whether the tool abstained) rides in one extension
field, `"rag"` (rag/extras.py), on the message, or on the final chunk of a stream. A stream sends the verified
text, not the model's draft: a draft can hold a claim or a marker that the check then removes, so the content
comes once the answer is checked; the first chunk (the role) comes with the model's first token. Errors have
OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the CLI's one-line messages.

Left out on purpose: tools, n > 1, logprobs, images, the completions and embeddings endpoints. Sampling
parameters in a request (temperature, max_tokens, seed) are accepted and ignored: the server's Settings decide,
so an answer is the same whichever client asks. System messages are ignored too (the pipeline has its own prompt).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.errors import RagError, SetupError, UserError
from rag import Answer, Settings, pipeline
from rag.extras import RagExtras
from rag.running import ASK_PATH, PID_HEADER, is_loopback, local_url, remove_record, write_record
from ui.collections import UnknownCollection, collection_settings, collections

log = logging.getLogger(__name__)

DEFAULT_PORT = 8000
OWNER = "rag-news"


class ApiError(Exception):
    """An HTTP error in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code

    @classmethod
    def of(cls, e: RagError) -> ApiError:
        if isinstance(e, UnknownCollection):
            return cls(404, str(e), code="model_not_found")
        if isinstance(e, UserError):
            return cls(400, str(e), code="invalid_request")
        if isinstance(e, SetupError):  # the model or a backend is not there (yet): try again later
            return cls(503, str(e), "server_error", "model_not_ready")
        return cls(500, str(e), "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the OpenAI parameters we do not use are accepted, and ignored

    model: str = ""  # a collection name; "" is the configured one
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: dict | None = None


class AskRequest(BaseModel):
    """POST /rag/ask: one question, answered as `rag ask` answers it."""

    model_config = ConfigDict(extra="forbid")

    question: str
    collection: str = ""  # "" is the configured one
    documents: list[str] | None = None  # doc ids to keep the question to


def _text(content: str | list[dict] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if any(part.get("type") != "text" for part in content):
        raise UserError("only text messages are understood: send the question as text")
    return "".join(str(part.get("text", "")) for part in content)


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict]]:
    """(question, history): the last message is the user's question, the user/assistant turns before it its history."""
    turns = [{"role": m.role, "content": _text(m.content)} for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or messages[-1].role != "user":
        raise UserError('the last message must be the question, with role "user"')
    return turns[-1]["content"], turns[:-1]


def _crash(e: Exception) -> ApiError:
    return ApiError(500, f"something went wrong while answering ({e.__class__.__name__}); see the server log",
                    "server_error")


def _finish(first: str | Answer | None, items: Iterator[str | Answer]) -> tuple[Answer, int]:
    """Read a pipeline stream to its verified Answer; also how many pieces the model streamed."""
    pieces = 0
    item = first
    while not isinstance(item, Answer):
        if item is None:
            raise AssertionError("Pipeline.stream ended without an Answer")  # it always ends with one
        pieces += 1
        item = next(items, None)
    return item, pieces


def _close(items: Iterator) -> None:
    """Close a pipeline stream early: its backend releases the model (Pipeline.stream is a generator)."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _usage(answer: Answer, pieces: int) -> dict:
    # The prompt as the backend counts it (exact for llama.cpp, estimated for Ollama); the completion as the pieces
    # the model streamed (about a token each for llama.cpp, a word each for the fake model).
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": pieces,
            "total_tokens": answer.prompt_tokens + pieces}


def create_app(settings: Settings, api_key: str | None = None) -> FastAPI:
    """The API over these settings; with `api_key`, every request needs `Authorization: Bearer <api_key>`."""
    started = int(time.time())

    def check_key(request: Request) -> None:
        if not api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "invalid API key: send the key given to `rag serve` as Authorization: Bearer KEY",
                           code="invalid_api_key")

    app = FastAPI(title="rag-news", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(check_key)])

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RagError)
    async def rag_error(request: Request, e: RagError) -> JSONResponse:
        err = ApiError.of(e)
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        err = ApiError(400, f"invalid request: {where or 'body'}: {first.get('msg', 'not understood')}")
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:  # a bug: say so; the log has the traceback
        return JSONResponse(_crash(e).body(), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if e.status_code == 404 else None
        return JSONResponse(ApiError(e.status_code, str(e.detail), code=code).body(), status_code=e.status_code)

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": started, "owned_by": OWNER}

    @app.get("/v1/models")
    def list_models() -> dict:
        return {"object": "list", "data": [model_card(n) for n in collections(settings)]}

    @app.get("/v1/models/{name}")
    def get_model(name: str) -> dict:
        collection_settings(settings, name)
        return model_card(name)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        question, history = split_messages(req.messages)
        pipe = await run_in_threadpool(pipeline, collection_settings(settings, req.model))
        items = pipe.stream(question, history)
        # Up to the first token (or the abstention) before answering at all: an empty question, a missing model
        # or a backend that is down is then an HTTP error with its status, not a broken stream.
        try:
            first = await run_in_threadpool(next, items, None)
        except BaseException:
            _close(items)
            raise
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not req.stream:
            try:
                answer, pieces = await run_in_threadpool(_finish, first, items)
            finally:
                _close(items)
            message = {"role": "assistant", "content": answer.text,
                       "rag": RagExtras.of(answer, req.model).model_dump()}
            return {"id": reply_id, "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                    "usage": _usage(answer, pieces)}
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        return StreamingResponse(_sse(first, items, reply_id, created, req.model, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    add_ask_route(app, settings)
    return app


def add_ask_route(app: FastAPI, settings: Settings) -> None:
    """POST /rag/ask on `app`: `rag serve`'s own app, or the one Gradio serves `rag ui` on (ui/app.py). It turns
    the pipeline's errors into OpenAI-shaped replies itself, so it needs none of create_app's handlers."""

    @app.post(ASK_PATH)
    async def rag_ask(req: AskRequest) -> JSONResponse:
        try:
            pipe = await run_in_threadpool(pipeline, collection_settings(settings, req.collection))
            answer = await run_in_threadpool(pipe.ask, req.question, None, req.documents)
        except RagError as e:
            err = ApiError.of(e)
            return JSONResponse(err.body(), status_code=err.status, headers={PID_HEADER: str(os.getpid())})
        return JSONResponse(answer.to_dict(), headers={PID_HEADER: str(os.getpid())})


async def _sse(first, items, reply_id: str, created: int, model: str, include_usage: bool) -> AsyncIterator[str]:
    def event(choices: list[dict], **extra) -> str:
        body = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def choice(delta: dict, finish: str | None = None) -> list[dict]:
        return [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]

    try:
        yield event(choice({"role": "assistant", "content": ""}))
        try:
            answer, pieces = await run_in_threadpool(_finish, first, items)
        except RagError as e:  # mid-answer (a backend that stopped): OpenAI's clients raise on an error event
            yield f"data: {json.dumps(ApiError.of(e).body())}\n\n"
            return
        except Exception as e:
            log.error("answering failed", exc_info=e)
            err = _crash(e)
            yield f"data: {json.dumps(err.body())}\n\n"
            return
        yield event(choice({"content": answer.text}))
        yield event(choice({}, "stop"), rag=RagExtras.of(answer, model).model_dump())
        if include_usage:
            yield event([], usage=_usage(answer, pieces))
        yield "data: [DONE]\n\n"
    finally:
        _close(items)  # also when the client went away mid-answer


# --- serving ---------------------------------------------------------------------------------------------------
def check_exposure(host: str, api_key: str | None) -> None:
    """Listening beyond loopback needs an API key."""
    if not is_loopback(host) and not api_key:
        raise UserError(f"refusing to listen on {host} without an API key: pass --api-key KEY (or set "
                        "RAG_API_KEY), or keep the default --host 127.0.0.1")


@dataclass
class Running:
    """A server started with block=False: its base URL (…/v1) and how to stop it."""

    url: str
    server: object
    thread: threading.Thread
    record: Path | None = None  # its record for `rag ask` (rag/running.py), removed when it stops

    def close(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(10)
        if self.record is not None:
            remove_record(self.record)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as e:
        raise SetupError(f"cannot listen on {host}:{port} ({e.strerror or e}): pick another --port") from None


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, api_key: str | None = None,
          block: bool = True) -> Running | None:
    """Sync the corpus, then serve the API on host:port (loopback unless an API key is given) and print its URL.

    With block=False the server runs in a background thread and a `Running` is returned (tests close it).
    """
    import uvicorn

    api_key = api_key or None
    check_exposure(host, api_key)
    report = pipeline(settings).ingest()
    sock = _listen(host, port)  # bound before the URL is printed, so a client that reads it can connect
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/v1"
    config = uvicorn.Config(create_app(settings, api_key), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    record = _record(settings, host, sock.getsockname()[1], bool(api_key))  # before the URL is printed, too
    print(f"corpus: {report.summary()}", flush=True)
    print(f"OpenAI-compatible API on {url}" + (" (API key required)" if api_key else ""), flush=True)
    if block:
        # uvicorn shuts down gracefully on SIGTERM, then raises it again under the handler it found: exit through
        # the `finally` then, so that the record goes too.
        signal.signal(signal.SIGTERM, exit_on_signal)
        try:
            server.run(sockets=[sock])
        finally:
            if record is not None:
                remove_record(record)
        return None
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="rag-api")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            if record is not None:
                remove_record(record)
            raise SetupError("the API server did not start; see the log above")
        time.sleep(0.01)
    return Running(url=url, server=server, thread=thread, record=record)


def exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _record(settings: Settings, host: str, port: int, api_key: bool) -> Path | None:
    """Tell a fresh `rag ask` on this machine that this server answers for these settings (rag/running.py). A
    server that cannot write its record still serves; one on a non-loopback address only leaves none."""
    url = local_url(host, port)
    if url is None:
        return None
    try:
        return write_record(settings, url, pipeline(settings).folder(), api_key, kind="serve")
    except OSError as e:
        log.warning("cannot record this server for `rag ask` (%s): it answers only the clients told its URL", e)
        return None
