"""Language-model backends behind one small interface, picked by a string id.

    llamacpp:default        the embedded Qwen2.5-Coder-1.5B-Instruct (assembled from PyPI parts, verified)
    llamacpp:small          the embedded Qwen2.5-Coder-0.5B-Instruct (faster, weaker)
    llamacpp:/path/x.gguf   any GGUF file
    ollama:<model>          a model served by Ollama (host from OLLAMA_HOST), via llama-index's Ollama integration
    fake                    a deterministic stand-in that cites the sources it is given (tests, UI development)

A backend's library is imported only when that backend is chosen. Each backend streams text deltas and says how
many prompt tokens a request costs; nothing here knows about retrieval or citations.
"""

from __future__ import annotations

import atexit
import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from ingest.errors import SetupError, UserError
from rag.model_files import MODELS, ensure_model

_KEPT_STATES = 8  # evaluated system turns kept on disk (about 6 MB each)
_loading_llama = threading.Lock()  # _without_repack swaps a function of llama_cpp's for the length of one load


def _without_repack(llama_class, **kwargs):
    """A llama_cpp.Llama whose weights stay in the mapped model file: llama.cpp's CPU backend otherwise copies most
    of them into a repacked layout (q4_K_8x8 here), 597 MiB more resident memory and about 0.9 s more loading, to
    generate about a tenth faster; prompt evaluation is as fast either way (measured on 2 cores: load 1.45 -> 0.55 s,
    RSS 1888 -> 1292 MiB, prompt 50-58 tok/s both, generation 20-22 -> 18-20 tok/s). Llama() takes no option for
    it (llama_model_params.use_extra_bufts), so the default parameters it asks llama_cpp for are amended while it
    loads."""
    import llama_cpp.llama as high

    low = high.llama_cpp
    with _loading_llama:
        default = low.llama_model_default_params

        def params():
            p = default()
            p.use_extra_bufts = False
            return p

        low.llama_model_default_params = params
        try:
            return llama_class(**kwargs)
        finally:
            low.llama_model_default_params = default

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}

# Placeholders for message content while a chat template is rendered (private-use characters: no text has them).
_SLOT, _SLOT_END = "\ue000", "\ue001"
_SLOTS = re.compile(f"{_SLOT}(\\d+){_SLOT_END}")
# Strings that chat templates use as turn markers: <|im_start|>, <|eot_id|>, <｜begin▁of▁sentence｜>, [INST], <<SYS>>,
# <start_of_turn>, </s>. A server that applies the template itself (Ollama) parses them in the text it is sent.
_CONTROLS = re.compile(r"<[|｜][^|｜<>\n]{1,40}[|｜]>|\[/?INST\]|<</?SYS>>|"
                       r"</?(?:start_of_turn|end_of_turn|s|bos|eos|pad|unk)>", re.I)


def neutralise_controls(text: str) -> str:
    """`text` without chat-template markers (each becomes a space), so it cannot open or close a turn."""
    return _CONTROLS.sub(" ", text)


class LLM(Protocol):
    name: str
    lock: threading.Lock  # held while a request runs; the UI reads it to say that a question is waiting

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float, seed: int,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Text deltas of the assistant's reply; once `cancel` is set it stops (or never starts) generating."""
        ...

    def prompt_tokens(self, messages: list[Message]) -> int:
        """How many tokens the model reads for these messages."""
        ...


class FakeLLM:
    """Answers by quoting the first sentence of the first two sources, each with its marker; deterministic.

    It reads the numbered sources from the last user message (lines like `[2] text`) and says NOT_FOUND when
    there are none, so the whole pipeline (verification, repair, abstention) runs without a model.
    """

    name = "fake"

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def _reply(self, messages: list[Message]) -> str:
        prompt = messages[-1]["content"]
        sources = re.findall(r"^\[(\d+)\]\s*(?:\([^)]*\)\s*)?(.+)$", prompt, re.M)
        if not sources:
            return "NOT_FOUND"
        parts = []
        for number, text in sources[:2]:
            first = re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0].rstrip(".!?")
            parts.append(f"{first} [{number}].")
        return " ".join(parts)

    def stream(self, messages, *, max_tokens, temperature, seed, cancel=None):
        words = self._reply(messages).split(" ")[: max_tokens]
        for i, w in enumerate(words):
            if cancel is not None and cancel.is_set():
                return
            yield w if i == 0 else " " + w

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)


class LlamaCppLLM:
    """A GGUF model run in-process with llama-cpp-python. One request at a time: llama.cpp is not thread-safe."""

    def __init__(self, model_path: Path, n_ctx: int = 2048, n_threads: int | None = None,
                 state_dir: Path | None = None) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise SetupError("llama-cpp-python is not installed: pip install llama-cpp-python") from None
        self.name = f"llamacpp:{model_path.name}"
        try:
            self.llama = _without_repack(Llama, model_path=str(model_path), n_ctx=n_ctx, verbose=False, n_batch=512,
                                         n_threads=n_threads or os.cpu_count())  # eval/bench/query.py times it bare
        except (ValueError, RuntimeError) as e:
            raise SetupError(f"llama.cpp could not load {model_path} ({e}): check that it is a GGUF model") from None
        meta = self.llama.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise SetupError(f"{model_path} has no chat template: use an instruct/chat GGUF model")
        vocab = self.llama._model
        eos = vocab.token_get_text(self.llama.token_eos()) if self.llama.token_eos() >= 0 else ""
        bos = vocab.token_get_text(self.llama.token_bos()) if self.llama.token_bos() >= 0 else ""
        self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self._eos = eos
        # Tokens no text may become: control tokens, and user-defined ones (such as Qwen's <tool_call>), which
        # llama.cpp matches even when asked not to parse special tokens.
        from llama_cpp import LLAMA_TOKEN_ATTR_CONTROL, LLAMA_TOKEN_ATTR_USER_DEFINED
        self._model_path = model_path
        self._state_dir = state_dir  # where an evaluated system turn is kept for the next process (None: nowhere)
        self._special = self._special_tokens(lambda: {t for t in range(vocab.n_vocab()) if vocab.token_get_attr(t)
                                                      & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED)})
        self.n_ctx = n_ctx
        self.lock = threading.Lock()  # public so callers can tell the UI that a request is waiting
        self._anchors: dict[str, list[int]] = {}  # system prompt -> its tokens before the user's message
        # Free the model before the interpreter tears down llama_cpp's globals (else a noisy __del__ at exit).
        atexit.register(self.llama.close)

    def encode(self, messages: list[Message]) -> tuple[list[int], list[str]]:
        """The prompt's tokens under the model's chat template, and the strings that end a reply.

        Only the template's own markers become control tokens: the template is rendered around placeholders, its
        pieces are tokenized with special tokens and each message's content without, so an article (or a
        question) that contains `<|im_end|>\n<|im_start|>system` reads as those characters, not as a new turn.
        """
        marked = [{**m, "content": f"{_SLOT}{i}{_SLOT_END}"} for i, m in enumerate(messages)]
        out = self._format(messages=marked)  # type: ignore[arg-type]  # plain role/content dicts are valid
        stop = out.stop if isinstance(out.stop, list) else [out.stop] if out.stop else []
        stop = [s for s in stop + [self._eos, "<|im_end|>", "<|endoftext|>"] if s]
        pieces = _SLOTS.split(out.prompt)  # template, index, template, index, ..., template
        if [int(i) for i in pieces[1::2]] != list(range(len(messages))):
            # A template that copies or drops a message's content: render it with control strings taken out.
            plain = [{**m, "content": neutralise_controls(m["content"])} for m in messages]
            prompt = self._format(messages=plain).prompt  # type: ignore[arg-type]
            return self.llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True), stop
        tokens: list[int] = []
        for n, piece in enumerate(pieces):
            if n % 2:  # a message's content: never control tokens
                tokens += self._text_tokens(messages[int(piece)]["content"])
            elif piece:
                tokens += self.llama.tokenize(piece.encode("utf-8"), add_bos=False, special=True)
        return tokens, stop

    def _special_tokens(self, scan: Callable[[], set[int]]) -> set[int]:
        """The model's control and user-defined tokens: `scan()` asks llama.cpp about every token of the vocabulary
        (0.2 s of Python for Qwen's 151,936, on a cold `rag ask`'s path), so its result is kept beside the kept
        system turns, under a key of the model file and llama.cpp's version."""
        import hashlib

        import llama_cpp

        path = None
        if self._state_dir is not None:
            try:
                stat = self._model_path.stat()
            except OSError:
                return scan()
            key = hashlib.sha256(repr((self._model_path.name, stat.st_size, stat.st_mtime_ns,
                                       getattr(llama_cpp, "__version__", ""))).encode()).hexdigest()[:32]
            path = self._state_dir / f"special-{key}.json"
            try:
                kept = json.loads(path.read_text())
                if isinstance(kept, list) and all(isinstance(t, int) for t in kept):
                    return set(kept)
            except (OSError, ValueError):
                pass
        found = scan()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(sorted(found)))
                os.replace(tmp, path)
            except OSError:  # a read-only home: the next process scans again
                pass
        return found

    def _text_tokens(self, text: str) -> list[int]:
        """Tokens of `text` read as plain text: a special token's string is spelt out in ordinary tokens."""
        out: list[int] = []
        for t in self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False):
            if t in self._special:
                spelt = self.llama._model.token_get_text(t)
                if len(spelt) > 1:  # (a one-character special token is dropped: it cannot be spelt out)
                    out += self._text_tokens(spelt[:1]) + self._text_tokens(spelt[1:])
            else:
                out.append(t)
        return out

    def prompt_tokens(self, messages):
        return len(self.encode(messages)[0])

    def stream(self, messages, *, max_tokens, temperature, seed, cancel=None):
        tokens, stop = self.encode(messages)
        if len(tokens) >= self.n_ctx:  # llama.cpp would raise a bare ValueError
            raise UserError(f"the question and its sources are {len(tokens):,} tokens, more than the model's context "
                            f"of {self.n_ctx:,}: ask a shorter question")
        if not _acquire(self.lock, cancel):
            return
        try:
            self._from_anchor(tokens, messages)
            parts = self.llama.create_completion(tokens, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                                 stop=stop, stream=True, top_k=1 if temperature == 0 else 40,
                                                 repeat_penalty=1.0)
            try:
                for part in parts:
                    text = part["choices"][0]["text"]
                    if text:
                        yield text
                    if cancel is not None and cancel.is_set():
                        return
            finally:
                parts.close()  # while the lock is held: llama.cpp is not thread-safe
        finally:
            self.lock.release()

    def yes_probability(self, messages: list[Message]) -> float:
        """P(the reply starts with "yes") against "no", read from the model's next-token logits after the prompt
        (no sampling): a graded yes/no verdict that a judge can calibrate and threshold."""
        import numpy as np

        tokens, _ = self.encode(messages)
        with self.lock:
            self._from_anchor(tokens, messages)
            llama = self.llama
            if llama.n_tokens > len(tokens) or list(llama.input_ids[: llama.n_tokens]) != tokens[: llama.n_tokens]:
                llama.reset()
            llama.eval(tokens[llama.n_tokens :])
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)
        yes, no = self._yes_no_ids()
        top = max(logits[yes].max(), logits[no].max())
        p_yes, p_no = np.exp(logits[yes] - top).sum(), np.exp(logits[no] - top).sum()
        return float(p_yes / (p_yes + p_no))

    def _yes_no_ids(self) -> tuple[list[int], list[int]]:
        if not hasattr(self, "_yes_no"):
            def ids(words):
                found = set()
                for w in words:
                    t = self.llama.tokenize(w.encode(), add_bos=False, special=False)
                    if len(t) == 1:
                        found.add(t[0])
                return sorted(found)
            self._yes_no = (ids(["yes", "Yes", " yes", " Yes", "YES"]), ids(["no", "No", " no", " No", "NO"]))
        return self._yes_no

    def _from_anchor(self, tokens: list[int], messages: list[Message]) -> None:
        """Make the prompt's evaluation independent of what was asked before, so that the same prompt gives the
        same answer (issue: one prompt, asked six times between others, gave two different answers).

        llama.cpp reuses the longest cached prefix of the previous prompt, so the rest is evaluated in other batch
        shapes, with other floating-point roundings, depending on the previous question. Here the cache is cut back
        to the prompt's *anchor*, the tokens before the user's message (the system turn), which is evaluated on its
        own once per system prompt; every prompt then runs as anchor + the same batches of its own tokens. The
        system turn stays cached, so a warm prompt costs only its sources and question, as before."""
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        anchor = self._anchors.get(system)
        if anchor is None:
            probe, _ = self.encode([*(m for m in messages if m["role"] == "system"), {"role": "user", "content": ""}])
            n = next((i for i, (a, b) in enumerate(zip(probe, tokens)) if a != b), min(len(probe), len(tokens)))
            anchor = self._anchors[system] = probe[:n]
        llama = self.llama
        if len(anchor) >= len(tokens):
            llama.reset()
            return
        if llama.n_tokens >= len(anchor) and list(llama.input_ids[: len(anchor)]) == anchor:
            llama.n_tokens = len(anchor)  # generate() keeps exactly the anchor and evaluates the rest afresh
        elif not self._restore(anchor):
            llama.reset()
            llama.eval(anchor)
            self._keep(anchor)

    def prepare(self, system: str) -> None:
        """Evaluate (or restore) the system turn now, so that the first prompt that starts with it costs only its
        own tokens (`preload` runs this while the first question is being retrieved)."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": "?"}]
        tokens, _ = self.encode(messages)
        with self.lock:
            self._from_anchor(tokens, messages)

    # --- the evaluated system turn, kept on disk ----------------------------------------------------------------
    # A cold `rag ask` spent about 3 s evaluating the system turn (209 tokens) before it read the question. Its
    # state (the KV cache, about 6 MB) is the same bytes in every process of one machine and build, so it is kept
    # in <home>/models/states/, under a key of everything that shapes those bytes: the model file, the tokens,
    # the context and batch sizes, llama.cpp's version and the CPU (another CPU takes other floating-point paths).
    def _state_path(self, anchor: list[int]) -> Path | None:
        if self._state_dir is None:
            return None
        import hashlib
        import platform

        import llama_cpp

        try:
            stat = self._model_path.stat()
            cpu = Path("/proc/cpuinfo").read_text(errors="replace") if Path("/proc/cpuinfo").is_file() else ""
            # the build itself (another CMAKE_ARGS build of one version takes other SIMD paths)
            build = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                           for p in (Path(llama_cpp.__file__).parent / "lib").glob("*.so*"))
        except OSError:
            return None
        cpu = "\n".join(sorted({ln for ln in cpu.splitlines() if ln.startswith(("model name", "flags"))}))
        key = hashlib.sha256(repr((self._model_path.name, stat.st_size, stat.st_mtime_ns, anchor, self.n_ctx,
                                   self.llama.n_batch, "no-repack", getattr(llama_cpp, "__version__", ""), build,
                                   platform.machine(), cpu)).encode()).hexdigest()[:32]
        return self._state_dir / f"{key}.kv"

    def _restore(self, anchor: list[int]) -> bool:
        """Load the kept state of this system turn; False (and nothing changed) when there is none that fits."""
        import ctypes

        import llama_cpp

        path = self._state_path(anchor)
        try:
            data = path.read_bytes() if path is not None else b""
        except OSError:
            return False
        if not data:
            return False
        llama = self.llama
        llama.reset()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_set_data(llama._ctx.ctx, buf, len(data)) != len(data):
            llama.reset()  # a truncated or foreign file: evaluate instead
            llama._ctx.kv_cache_clear()
            return False
        llama.input_ids[: len(anchor)] = anchor
        llama.n_tokens = len(anchor)
        return True

    def _keep(self, anchor: list[int]) -> None:
        import ctypes

        import llama_cpp

        path = self._state_path(anchor)
        if path is None:
            return
        ctx = self.llama._ctx.ctx
        size = llama_cpp.llama_state_get_size(ctx)
        buf = (ctypes.c_uint8 * size)()
        n = llama_cpp.llama_state_get_data(ctx, buf, size)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bytes(buf)[:n])
            os.replace(tmp, path)  # whole or not at all: a reader never sees half a file
            kept = sorted(path.parent.glob("*.kv"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[_KEPT_STATES:]:  # other prompts, builds or models: the newest few stay
                old.unlink(missing_ok=True)
        except OSError:  # a read-only home: the next process evaluates it again
            pass


class OllamaLLM:
    """A model served by Ollama, through llama-index's Ollama integration."""

    def __init__(self, model: str, host: str | None = None, n_ctx: int = 2048, timeout: float = 120.0) -> None:
        try:
            from llama_index.llms.ollama import Ollama
        except ImportError:
            raise SetupError("the Ollama backend needs llama-index-llms-ollama: "
                             "pip install llama-index-llms-ollama") from None
        self.name = f"ollama:{model}"
        self.host = _ollama_host(host or os.environ.get("OLLAMA_HOST", ""))
        # context_window is given so the integration never calls /api/show just to learn it
        self._llm = Ollama(model=model, base_url=self.host, context_window=n_ctx, request_timeout=timeout)
        self.lock = threading.Lock()  # Ollama queues requests itself; this only orders our own

    def prompt_tokens(self, messages):
        # Ollama reports the exact count only after answering; before, estimate 4 characters a token.
        return sum(len(m["content"]) for m in messages) // 4

    def stream(self, messages, *, max_tokens, temperature, seed, cancel=None):
        import httpx
        from llama_index.core.llms import ChatMessage
        from ollama import ResponseError

        self._llm.temperature = temperature
        self._llm.additional_kwargs = {"num_predict": max_tokens, "seed": seed}
        # Ollama applies the chat template itself and parses its markers in what it is sent: take them out.
        chat = [ChatMessage(role=m["role"], content=neutralise_controls(m["content"])) for m in messages]
        try:
            for r in self._llm.stream_chat(chat):
                if cancel is not None and cancel.is_set():
                    return  # closing the stream closes the connection, and Ollama stops generating
                if r.delta:
                    yield r.delta
        except (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError) as e:
            raise SetupError(f"cannot reach Ollama at {self.host} ({e.__class__.__name__}): start it with "
                             "`ollama serve`, or set OLLAMA_HOST to where it runs") from None
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout) as e:
            raise SetupError(f"Ollama at {self.host} stopped answering mid-reply ({e.__class__.__name__}): "
                             "check the server and ask again") from None
        except ResponseError as e:
            hint = f"run `ollama pull {self.name.split(':', 1)[1]}`" if e.status_code == 404 else "check the server"
            raise SetupError(f"Ollama at {self.host} answered {e.status_code}: {e.error}: {hint}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:  # a bad address (ftp://, bad port), a proxy, a write error
            raise SetupError(f"cannot talk to Ollama at {self.host} ({e.__class__.__name__}: {e}): check OLLAMA_HOST "
                             "(http://HOST:PORT) and the server") from None


def _acquire(lock: threading.Lock, cancel: threading.Event | None) -> bool:
    """Wait for the model's lock; False (and the lock not held) if `cancel` is set first."""
    if cancel is None:
        lock.acquire()
        return True
    while not lock.acquire(timeout=0.1):
        if cancel.is_set():
            return False
    if cancel.is_set():
        lock.release()
        return False
    return True


def _ollama_host(value: str) -> str:
    value = value.strip() or "http://127.0.0.1:11434"
    if "://" not in value:
        value = "http://" + value
    if re.match(r"^https?://[^/:]+$", value):
        value += ":11434"
    return value.rstrip("/")


_BACKENDS = ("llamacpp", "ollama", "fake")
_cache: dict[tuple, LLM] = {}
_cache_lock = threading.Lock()
_loading: set[tuple[str, str, int]] = set()  # keys a preload thread is loading now


def check_llm_id(llm_id: str) -> tuple[str, str]:
    """(backend, argument) of a model id; a UserError that suggests the right spelling otherwise."""
    kind, _, arg = llm_id.partition(":")
    if kind not in _BACKENDS:
        close = difflib.get_close_matches(kind, _BACKENDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown model id {llm_id!r}: {hint}use llamacpp:default, llamacpp:small, "
                        "llamacpp:/path/model.gguf, ollama:<model> or fake")
    if kind == "ollama" and not arg:
        raise UserError("ollama needs a model name: --llm ollama:qwen2.5:1.5b (after `ollama pull`)")
    return kind, arg


def preload(llm_id: str, model_dir: Path, n_ctx: int, system: str) -> None:
    """Start loading a model that is not loaded yet, and preparing its system turn, in a thread of its own: a cold
    process then loads it while it imports the embedder and retrieves (llama.cpp's loading releases the GIL). The
    thread is not a daemon, so a process that exits meanwhile waits for it instead of tearing the model down
    half-loaded. Errors are left to the caller's own `get_llm`, which raises them."""
    key = (llm_id, str(model_dir), n_ctx)
    if key in _loading:  # asked before the lock, which get_llm holds while it loads
        return
    with _cache_lock:
        if key in _cache or key in _loading:
            return
        _loading.add(key)

    def load() -> None:
        try:
            llm = get_llm(llm_id, model_dir, n_ctx)
            prepare = getattr(llm, "prepare", None)
            if callable(prepare):
                prepare(system)
        except Exception:  # noqa: BLE001  (reported when the answer asks for the model)
            pass
        finally:
            _loading.discard(key)

    threading.Thread(target=load, name="rag-preload").start()


def get_llm(llm_id: str, model_dir: Path, n_ctx: int = 2048) -> LLM:
    """The backend for an id; loaded models are shared within the process."""
    kind, arg = check_llm_id(llm_id)
    key = (llm_id, str(model_dir), n_ctx)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        if kind == "fake":
            llm: LLM = FakeLLM()
        elif kind == "ollama":
            llm = OllamaLLM(arg, n_ctx=n_ctx)
        else:
            arg = arg or "default"
            if arg in MODELS:
                path = ensure_model(arg, model_dir)
            else:
                path = Path(arg).expanduser()
                if not path.is_file():
                    raise UserError(f"no GGUF file at {path}: use llamacpp:default, llamacpp:small "
                                    "or llamacpp:/path/to/model.gguf")
            llm = LlamaCppLLM(path, n_ctx=n_ctx, state_dir=model_dir / "states")
        _cache[key] = llm
        return llm
