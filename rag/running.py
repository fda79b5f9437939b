"""A running `rag serve` or `rag ui`, found and asked by a fresh `rag ask` so that it skips a cold start (imports,
model load).

While it listens, `rag serve` keeps a record in `<home>/running/serve-<pid>-<port>.json`, and `rag ui` on loopback
without a login one in `ui-<pid>-<port>.json` (a UI with a login leaves none: a record would be a way around it).
A record holds its loopback URL, its pid, whether it needs an API key (never the key), and what it answers for
(`identity`: store, collection, model, embedder and every other setting that shapes an answer). `rag ask` looks
there first; a server whose identity is its own answers the question through `POST /rag/ask` (ui/api.py
`add_ask_route`), which returns `Answer.to_dict()`, and the CLI prints the rebuilt Answer exactly as it prints its
own. A record whose process is gone, or whose port nobody listens on, is removed.

Left out on purpose: any server beyond loopback (a record is only trusted when it points at this machine), the
chat history (a `rag ask` has none), and streaming the model's draft (the answer comes once it is checked). Every
failure is one line in the `-v` log and `None`: the caller answers the question itself. Only the standard library
is imported here, so finding and asking a server costs a fresh process almost nothing.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ingest.errors import UserError
from rag.settings import Settings

if TYPE_CHECKING:
    from rag.answer import Answer

log = logging.getLogger(__name__)

API_KEY_ENV = "RAG_API_KEY"  # the key `rag serve --api-key` takes from the environment, and `rag ask` sends
ASK_PATH = "/rag/ask"
PID_HEADER = "X-Rag-Pid"  # the answering server's own pid, on every /rag/ask reply
CONNECT_TIMEOUT_S = 0.5  # a loopback server that takes longer to accept is not worth waiting for
ANSWER_TIMEOUT_S = 600.0  # once connected: a busy server's model answers one question at a time
FORMAT = 1  # the record's layout; a record of another is ignored
KINDS = ("serve", "ui")  # the commands that record themselves: `rag serve`, and `rag ui` on loopback without a login


def identity(settings: Settings) -> dict:
    """What decides an answer, as a server records it and `rag ask` compares it: every setting but the corpus
    folder (compared on its own, see `serves`) and the home (the records live in it), with the store as a resolved
    path and the collection by its name."""
    store = settings.store_location
    if not store.startswith(("http://", "https://")):
        store = str(Path(store).expanduser().resolve())
    return {**settings.model_dump(mode="json", exclude={"corpus", "collection", "store", "home"}), "store": store,
            "collection": settings.collection_name}


def is_loopback(host: str) -> bool:
    """Is `host` (a name or an address, IPv6 with or without brackets) this machine's loopback?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def local_url(host: str, port: int) -> str | None:
    """The loopback URL a server on host:port answers this machine at (all interfaces include loopback); None when
    it listens on another address only."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if not is_loopback(host):
        return None
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass(frozen=True)
class Record:
    """One running server, as its file says."""

    path: Path
    url: str
    pid: int
    api_key: bool
    identity: dict
    folder: str  # the folder its collection mirrors
    kind: str = "serve"  # the command that runs it (KINDS)

    def serves(self, settings: Settings) -> bool:
        """Would it answer as these settings would? The same identity, and the same folder when one is named."""
        if self.identity != identity(settings):
            return False
        return not settings.corpus_given or Path(settings.corpus).expanduser().resolve() == Path(self.folder)


def records_folder(home: Path) -> Path:
    return Path(home).expanduser() / "running"


def write_record(settings: Settings, url: str, folder: Path, api_key: bool, kind: str = "serve") -> Path:
    """Record a server that listens at `url` (loopback) for these settings; written whole or not at all. `kind`
    is the command that runs it (one of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown server kind {kind!r}: one of {', '.join(KINDS)}")
    where = records_folder(settings.home)
    where.mkdir(parents=True, exist_ok=True)
    port = urlsplit(url).port
    path = where / f"{kind}-{os.getpid()}-{port}.json"
    body = {"format": FORMAT, "kind": kind, "url": url, "pid": os.getpid(), "api_key": api_key,
            "identity": identity(settings), "folder": str(Path(folder).expanduser().resolve()),
            "started": time.time()}
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
    tmp.replace(path)
    return path


def remove_record(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def records(home: Path) -> Iterator[Record]:
    """The records of live servers under `home`; a record whose process is gone is removed on the way."""
    for path in sorted(p for kind in KINDS for p in records_folder(home).glob(f"{kind}-*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            if body.get("format") != FORMAT:
                continue
            record = Record(path, str(body["url"]), int(body["pid"]), bool(body["api_key"]), dict(body["identity"]),
                            str(body["folder"]), str(body.get("kind", "serve")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.info("ignoring the server record %s (%s)", path, e)
            continue
        if not _alive(record.pid):
            log.info("removing the record of a server that is gone: %s (pid %d)", path, record.pid)
            remove_record(path)
            continue
        yield record


def _post(record: Record, body: dict, key: str | None) -> tuple[int, dict, str]:
    """POST body to the record's /rag/ask: (status, JSON reply, the answering pid). Connecting may take
    CONNECT_TIMEOUT_S, answering ANSWER_TIMEOUT_S; an OSError or a reply that is not JSON raises."""
    url = urlsplit(record.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=CONNECT_TIMEOUT_S)
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(ANSWER_TIMEOUT_S)
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        conn.request("POST", ASK_PATH, body=json.dumps(body).encode(), headers=headers)
        reply = conn.getresponse()
        data = json.loads(reply.read().decode("utf-8"))
        return reply.status, data, reply.getheader(PID_HEADER, "?")
    finally:
        conn.close()


def ask_running(settings: Settings, question: str, documents: list[str] | None = None) -> Answer | None:
    """The Answer of a running `rag serve` or `rag ui` that answers for these settings, or None (no such server, or it
    failed: the caller answers locally). A question the server refuses as the user's mistake raises that
    UserError, with the message a local answer would have given."""
    for record in records(settings.home):
        if not record.serves(settings):
            log.info("not using the server at %s: it answers for other settings", record.url)
            continue
        host = urlsplit(record.url).hostname or ""
        if not is_loopback(host):
            log.info("not using the server at %s: not on this machine's loopback", record.url)
            continue
        key = os.environ.get(API_KEY_ENV) or None
        if record.api_key and not key:
            log.info("not using the server at %s: it needs an API key and %s is not set", record.url, API_KEY_ENV)
            continue
        t0 = time.perf_counter()
        try:
            status, data, pid = _post(record, {"question": question, "documents": documents}, key)
        except ConnectionRefusedError:
            log.info("removing the record of a server nobody listens for: %s", record.url)
            remove_record(record.path)
            continue
        except (OSError, ValueError, http.client.HTTPException) as e:
            log.info("the server at %s did not answer (%s: %s); answering here", record.url, e.__class__.__name__, e)
            continue
        if status == 200:
            from rag.answer import Answer

            try:
                answer = Answer.from_dict(data)
            except (TypeError, KeyError, AttributeError) as e:
                log.info("the server at %s sent an answer this version cannot read (%s)", record.url, e)
                continue
            log.info("answered by `rag %s` at %s (pid %s) in %.2fs", record.kind, record.url, pid,
                     time.perf_counter() - t0)
            return answer
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        if status == 400 and error.get("code") == "invalid_request":  # the question itself: the same here
            raise UserError(str(error.get("message", "")))
        log.info("the server at %s answered %d (%s); answering here", record.url, status, error.get("message", ""))
    return None
