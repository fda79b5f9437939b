"""The query section: `Pipeline.ask` on the gold questions (retrieve, first token, total, prompt tokens), warm,
against bare llama-cpp-python given the identical prompt with the same settings (greedy, same model file, n_ctx,
threads, max_tokens). The model runs in two instances so neither reuses the other's prompt cache.

It leaves out Ollama's bare baseline (the server is the engine; there is none in-process to call), cold starts
(the process section) and the HTTP API's overhead (eval/bench/api.py).
"""

from __future__ import annotations

import time
from pathlib import Path

from eval.bench.measure import Log, pct, profiled
from ingest.errors import SetupError
from rag.answer import Answer, Pipeline, clean_question
from rag.llm import FakeLLM, LlamaCppLLM, check_llm_id
from rag.model_files import MODELS, ensure_model
from rag.policy import before_asking
from rag.settings import Settings


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


def bare_llm(settings: Settings) -> BareLlama | BareFake | None:
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


def bench_query(settings: Settings, questions: list[dict], log: Log, profile_dir: Path | None) -> dict:
    """Time each of `questions` (gold rows) through ask() and, where ask() calls the model, bare generation."""
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
        calls_model = before_asking(asked.question, bool(retrieval.sources), retrieval.best_similarity,
                                    retrieval.best_overlap, [src.text for src in retrieval.sources],
                                    s.min_relevance, s.min_overlap) is None
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
                             "model; Pipeline.stream's abstention test has changed: update eval/bench/query.py")
        rows.append(row)
        log(f"  {row['id']}: total {row['total']:.2f}s, first token {row['first_token']:.2f}s"
            + (f", bare {row['bare_total']:.2f}s" if "bare_total" in row else ""))
    if profile_dir is not None:
        with profiled(profile_dir, "query"):
            for q in questions[:5]:
                pipe.ask(q["question"], q.get("history") or [])
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
