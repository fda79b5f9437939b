"""A stand-in for an Ollama server, for tests only: no Ollama can be installed on this machine.

It speaks the part of Ollama's documented HTTP API that our backend uses: `POST /api/chat` with streamed NDJSON
chunks (`message.content` deltas, then a final chunk with `done: true` and `prompt_eval_count`/`eval_count`),
`GET /api/tags`, and a 404 `{"error": "model ... not found"}` for a model it does not have. Its "model" answers
like the fake LLM: the first sentence of the first source in the prompt, with its marker.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OllamaStandIn:
    def __init__(self, models=("qwen2.5:1.5b",), die_after_chunks: int | None = None) -> None:
        self.models = set(models)
        self.die_after_chunks = die_after_chunks
        self.requests: list[dict] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # streamed replies use chunked transfer encoding, as Ollama's do

            def _chunk(self, body: dict) -> None:
                data = (json.dumps(body) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args):  # keep test output clean
                pass

            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/api/tags":
                    self._json(200, {"models": [{"name": m, "model": m} for m in sorted(standin.models)]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                standin.requests.append({"path": self.path, **body})
                if self.path != "/api/chat":
                    return self._json(404, {"error": "not found"})
                if body.get("model") not in standin.models:
                    return self._json(404, {"error": f"model \"{body.get('model')}\" not found, try pulling it first"})
                reply = standin.reply(body["messages"])
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = reply.split(" ")
                for i, w in enumerate(words):
                    if standin.die_after_chunks is not None and i >= standin.die_after_chunks:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the server goes away mid-answer
                        return
                    chunk = {"model": body["model"], "created_at": "2026-11-22T00:00:00Z",
                             "message": {"role": "assistant", "content": w if i == 0 else " " + w}, "done": False}
                    self._chunk(chunk)
                prompt_chars = sum(len(m["content"]) for m in body["messages"])
                final = {"model": body["model"], "created_at": "2026-11-22T00:00:01Z",
                         "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                         "total_duration": 1000, "prompt_eval_count": prompt_chars // 4, "eval_count": len(words)}
                self._chunk(final)
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def reply(messages: list[dict]) -> str:
        sources = re.findall(r"^\[(\d+)\]\s*(.+)$", messages[-1]["content"], re.M)
        if not sources:
            return "NOT_FOUND"
        number, text = sources[0]
        first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0].rstrip(".!?")
        return f"{first} [{number}]."

    def __enter__(self) -> OllamaStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
