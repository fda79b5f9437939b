"""The OpenAI-compatible API's overhead: the same questions asked in-process and through `rag serve`'s HTTP API.

    from eval.bench.api import api_overhead_bench
    api_overhead_bench(spaced_questions(QUESTIONS, 12), settings)   # -> dict; target: overhead p50 <= 50 ms

The server runs in this process on loopback over the very same `Pipeline` (one per Settings), called with the
official `openai` client, non-streaming. Two figures per question:
  overhead_ms          API wall time minus an in-process `Pipeline.ask` of the same question (paired; the two run
                       in alternating order, so neither is always second); includes the model's run-to-run jitter
  overhead_request_ms  API wall time minus that same request's own `timings.total` (from the `rag` extras): HTTP,
                       JSON, threads and the client, without any model variance
It measures; `rag bench` decides where the figures go. Streaming and concurrent load are not timed here.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from eval.bench.measure import pct
from rag.answer import pipeline
from rag.settings import Settings


def _question(q: dict | str) -> tuple[str, str, list[dict]]:
    if isinstance(q, str):
        return q, q, []
    return str(q.get("id", q["question"])), q["question"], list(q.get("history") or [])


def api_overhead_bench(questions: list[dict] | list[str], settings: Settings) -> dict:
    """Time each question in-process and through the API (warm, one untimed round first); see the module doc."""
    from openai import OpenAI

    from ui.api import serve

    qs = [_question(q) for q in questions]
    if not qs:
        raise ValueError("api_overhead_bench needs at least one question")
    pipe = pipeline(settings)  # the pipeline the server answers with: pipeline() shares one per Settings
    running = serve(settings, host="127.0.0.1", port=0, block=False)
    assert running is not None
    client = OpenAI(base_url=running.url, api_key="unused", max_retries=0, timeout=600)

    def direct(question: str, history: list[dict]) -> tuple[float, str]:
        t = time.perf_counter()
        answer = pipe.ask(question, history)
        return time.perf_counter() - t, answer.text

    def via_api(question: str, history: list[dict]) -> tuple[float, str, float]:
        t = time.perf_counter()
        messages: list[Any] = [*history, {"role": "user", "content": question}]  # plain role/content dicts
        reply = client.chat.completions.create(model=settings.collection_name, messages=messages)
        wall = time.perf_counter() - t
        message = reply.choices[0].message
        return wall, message.content or "", float(message.rag["timings"]["total"])  # type: ignore[attr-defined]

    rows: list[dict[str, Any]] = []
    try:
        _, question, history = qs[-1]  # warm, untimed: model loaded, server threads and connection up
        direct(question, history)
        via_api(question, history)
        for i, (qid, question, history) in enumerate(qs):
            if i % 2:
                api_s, api_text, served_total = via_api(question, history)
                ask_s, ask_text = direct(question, history)
            else:
                ask_s, ask_text = direct(question, history)
                api_s, api_text, served_total = via_api(question, history)
            rows.append({"id": qid, "ask_s": ask_s, "api_s": api_s, "api_first": bool(i % 2),
                         "overhead_ms": (api_s - ask_s) * 1000, "overhead_request_ms": (api_s - served_total) * 1000,
                         "same_text": api_text == ask_text})
    finally:
        running.close()
    overhead = [r["overhead_ms"] for r in rows]
    return {
        "n": len(rows), "model": settings.llm, "embedder": settings.embedder,
        "ask": pct([r["ask_s"] for r in rows]), "api": pct([r["api_s"] for r in rows]),
        "overhead_ms": pct(overhead), "overhead_request_ms": pct([r["overhead_request_ms"] for r in rows]),
        "overhead_p50_ms": statistics.median(overhead),
        "same_text": sum(r["same_text"] for r in rows),
        "how": "warm; each question asked in-process (Pipeline.ask) and via the openai client against the API "
               "served in this process on loopback over the same pipeline, alternating which goes first; "
               "overhead = API wall time - in-process wall time, and API wall time - the request's timings.total",
        "questions": rows,
    }
