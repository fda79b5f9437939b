"""Where a cold `rag ask` spends its time: one fresh process that does what `rag ask` does, one part after another,
each timed from the top of this module, and prints the parts as one JSON object.

    python -m eval.bench.coldparts --json QUESTION      (settings from the RAG_* environment, as `rag ask` reads them)

The parts, in order: python_start (process creation to this module's first line, from /proc; 0 where there is no
/proc), import_rag, import_chromadb, import_embedder_libs (the libraries the embedder's first use imports:
onnxruntime and tokenizers with its ONNX export cached in <home>/models, else sentence-transformers and torch; 0 with
the fake embedder),
import_llama_cpp (0 unless the model is llama.cpp), store_open (the Pipeline and its ChunkStore), index_build
(the first-use folder sync check and the lexical index), embedder_load (the first embedding of one string),
model_load, system_turn (the system prompt evaluated or restored from <home>/models/states; 0 for a backend without
`prepare`) and answer (Pipeline.ask, with its own timings). A real `rag ask` overlaps the model's loading with
retrieval (`rag.llm.preload`), so its wall time is not these parts' sum: they say where the time goes. This module
measures nothing else and judges nothing (the process section in eval/bench/process.py runs it and reports it).
"""

import time

_T0 = time.perf_counter()  # before any other import: every part is measured from here

import importlib  # noqa: E402  (after the clock: the imports are what is measured)
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# What was imported before this module's first line (by a package __init__ on the way here): those imports would be
# timed as python_start, not as their own parts, so the result names them.
_PREIMPORTED = [m for m in ("rag", "ingest", "chromadb", "sentence_transformers", "llama_cpp") if m in sys.modules]

PARTS = ("python_start", "import_rag", "import_chromadb", "import_embedder_libs", "import_llama_cpp", "store_open",
         "index_build", "embedder_load", "model_load", "system_turn", "answer")


def _python_start() -> float:
    """Seconds from this process's creation to the module's first line (interpreter start and site imports), from
    /proc (clock-tick resolution, 10 ms); 0 where /proc cannot tell."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of stat: start time after boot
    except (OSError, ValueError, IndexError):
        return 0.0
    now = time.perf_counter()
    return max(0.0, uptime - started - (now - _T0))


def measure(question: str) -> dict:
    """Each part's seconds, the answer's own timings, and the total from process creation to the answer."""
    start = _python_start()
    parts: dict[str, float] = {"python_start": start}
    skipped: list[str] = []
    mark = _T0

    def done(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        parts[name] = now - mark
        mark = now

    def skip(name: str) -> None:  # a part this process does not have: 0, and its clock runs on into the next
        skipped.append(name)
        parts[name] = 0.0

    import rag
    import rag.answer

    done("import_rag")
    import chromadb  # noqa: F401  (imported by the store when it opens; here on its own clock)

    done("import_chromadb")
    from rag.settings import Settings

    settings = Settings.from_env()
    from ingest.embed import MiniLMEmbedder, get_embedder

    embedder = get_embedder(settings.embedder, settings.model_dir)  # the one the Pipeline below gets
    libraries = embedder.libraries() if isinstance(embedder, MiniLMEmbedder) else ()
    if libraries:
        for name in libraries:
            importlib.import_module(name)
        done("import_embedder_libs")
    else:
        skip("import_embedder_libs")
    if settings.llm.partition(":")[0] == "llamacpp":
        import llama_cpp  # noqa: F401

        done("import_llama_cpp")
    else:
        skip("import_llama_cpp")
    pipe = rag.Pipeline(settings)  # opens its ChunkStore (the embedder is only named here: it loads on first use)
    done("store_open")
    pipe.retriever()
    done("index_build")
    pipe.embedder.embed(["a first string to embed"])
    done("embedder_load")
    llm = pipe.llm()
    done("model_load")
    prepare = getattr(llm, "prepare", None)
    if callable(prepare):
        prepare(rag.answer.SYSTEM_PROMPT)
        done("system_turn")
    else:
        skip("system_turn")
    answer = pipe.ask(question)
    done("answer")
    total = start + time.perf_counter() - _T0
    return {"parts": {name: round(parts[name], 4) for name in PARTS}, "total": round(total, 4), "skipped": skipped,
            "imported_before": _PREIMPORTED, "answer_timings": answer.timings, "abstained": answer.abstained,
            "llm": settings.llm, "embedder": settings.embedder, "embedder_libs": list(libraries),
            "embedder_engine": getattr(pipe.embedder, "engine", settings.embedder)}


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "--json"]
    if len(args) != 1:
        print("usage: python -m eval.bench.coldparts [--json] QUESTION", file=sys.stderr)
        return 2
    got = measure(args[0])
    if "--json" in argv:
        print(json.dumps(got))  # one line, the last of the output
    else:
        for name, seconds in got["parts"].items():
            print(f"{name:22} {seconds:8.3f} s")
        print(f"{'total':22} {got['total']:8.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
