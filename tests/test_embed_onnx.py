"""The `minilm` embedder through onnxruntime: the same vectors as sentence-transformers, an export made once and
kept, a bad file replaced, a failure that falls back, and a cold process that embeds without importing torch.

Real MiniLM (small and fast on CPU); the export in the module fixture takes a few seconds, so these are integration.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from ingest import embed_onnx
from ingest.embed import MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus"

pytestmark = pytest.mark.integration

LONG = " ".join(f"word{i} and its neighbour" for i in range(200))  # ~1,000 tokens: truncated at 256
TEXTS = ["", "a", "How far did bitcoin fall after the leak?", "  leading and trailing spaces  ",
         "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, emoji 🎉🚀 and a zero-width\u200bjoiner",
         "The central bank raised rates by a quarter point on Wednesday, its third rise this year. " * 6,
         LONG, LONG + " and a different ending that only matters past the limit", "UPPER case TEXT", "x" * 300]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A model cache folder holding one export, made through the embedder's own first use."""
    folder = tmp_path_factory.mktemp("models")
    emb = MiniLMEmbedder(cache_dir=folder)
    emb.embed(["warm"])
    assert emb.engine == "onnxruntime"
    return folder


@pytest.fixture(scope="module")
def reference() -> MiniLMEmbedder:
    emb = MiniLMEmbedder()  # no cache folder: sentence-transformers
    return emb


def _onnx_file(folder: Path) -> Path:
    found = list(folder.glob("minilm-*.onnx"))
    assert len(found) == 1, found
    return found[0]


def test_onnx_vectors_equal_sentence_transformers(exported, reference):
    onnx = MiniLMEmbedder(cache_dir=exported)
    got = onnx.embed(TEXTS)
    want = reference.embed(TEXTS)
    assert onnx.engine == "onnxruntime" and reference.engine == "sentence-transformers"
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - want).max(axis=1).max() <= 1e-5, np.abs(got - want).max(axis=1)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # One at a time (no padding) gives the vectors the mixed batch gave (padding to the longest text).
    alone = np.stack([onnx.embed([t])[0] for t in TEXTS])
    assert np.abs(alone - got).max() <= 1e-5
    # The long texts differ only past the limit: truncated at 256 tokens, they are one vector; at 512 they would not be.
    folder = MiniLMEmbedder.model_dir()
    whole = Tokenizer.from_file(str(folder / "tokenizer.json"))
    whole.no_truncation()
    assert len(whole.encode(LONG).ids) > 600 and embed_onnx.max_seq_length(folder) == 256
    assert len(embed_onnx.load_tokenizer(folder).encode(LONG).ids) == 256
    assert np.abs(got[6] - got[7]).max() <= 1e-6
    # In batches smaller than the input, sorted longest first and put back in order.
    small = MiniLMEmbedder(batch_size=3, cache_dir=exported)
    assert np.abs(small.embed(TEXTS) - want).max() <= 1e-5


def test_the_cached_export_is_reused_not_made_again(exported, monkeypatch):
    path = _onnx_file(exported)
    before = path.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported a second time")

    monkeypatch.setattr(embed_onnx, "export", no_export)
    emb = MiniLMEmbedder(cache_dir=exported)
    emb.embed(["a question"])
    assert emb.engine == "onnxruntime"
    assert emb._model is None, "sentence-transformers was loaded although the export was there"
    assert path.stat().st_mtime_ns == before


def test_a_half_written_onnx_file_is_replaced(exported, reference, tmp_path, caplog):
    good = _onnx_file(exported)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / good.name).write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    emb = MiniLMEmbedder(cache_dir=folder)
    with caplog.at_level(logging.WARNING, logger="ingest.embed"):
        got = emb.embed(["after the repair"])
    assert emb.engine == "onnxruntime"
    assert "cannot be loaded" in caplog.text
    assert (folder / good.name).stat().st_size == good.stat().st_size
    assert [p.name for p in folder.iterdir()] == [good.name], "a temporary file was left behind"
    assert np.abs(got - reference.embed(["after the repair"])).max() <= 1e-5


def test_an_export_failure_falls_back_to_sentence_transformers(reference, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(embed_onnx, "export", broken)
    folder = tmp_path / "models"
    emb = MiniLMEmbedder(cache_dir=folder)
    with caplog.at_level(logging.WARNING, logger="ingest.embed"):
        got = emb.embed(["still answered"])
        emb.embed(["and again"])  # not retried in the same process
    assert emb.engine == "sentence-transformers"
    assert caplog.text.count("using sentence-transformers") == 1 and "exporter exploded" in caplog.text
    assert not folder.exists() or not list(folder.iterdir())
    assert np.abs(got - reference.embed(["still answered"])).max() <= 1e-5


def test_an_export_that_gives_other_vectors_is_not_kept(tmp_path, monkeypatch, caplog):
    real_pool = embed_onnx.pool
    monkeypatch.setattr(embed_onnx, "pool", lambda hidden, mask: -real_pool(hidden, mask))
    folder = tmp_path / "models"
    emb = MiniLMEmbedder(cache_dir=folder)
    with caplog.at_level(logging.WARNING, logger="ingest.embed"):
        emb.embed(["checked before it is kept"])
    assert emb.engine == "sentence-transformers"
    assert "differ from sentence-transformers" in caplog.text
    assert not list(folder.glob("*")), "a wrong or temporary file was left in the cache"


IMPORTED = """
import atexit, json, os, sys
def _report():
    with open(os.environ["IMPORTED_REPORT"], "w") as f:
        json.dump([m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules], f)
atexit.register(_report)
"""


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), IMPORTED_REPORT=str(tmp_path / "imported.json"), **extra)
    return env


def test_a_process_that_embeds_a_question_never_imports_torch(exported, tmp_path):
    script = IMPORTED + (
        "from pathlib import Path\nfrom ingest.embed import get_embedder\n"
        "e = get_embedder('minilm', Path(sys.argv[1]))\nv = e.embed(['How far did bitcoin fall?'])\n"
        "print(e.engine, v.shape)\n")
    run = subprocess.run([sys.executable, "-c", script, str(exported)], env=_clean_env(tmp_path), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["onnxruntime", "(1,", "384)"]
    assert run.stderr == "", run.stderr[-2000:]
    assert json.loads((tmp_path / "imported.json").read_text()) == []


def test_a_cold_rag_ask_never_imports_torch(exported, tmp_path):
    # The whole `rag ask` on the real embedder (fake LLM), first ingest of a small corpus included: with the export
    # in <home>/models, neither torch nor sentence-transformers is imported.
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copy(_onnx_file(exported), home / "models")
    bootstrap = IMPORTED + "import runpy; sys.argv = sys.argv[1:]; runpy.run_module('rag.cli', run_name='__main__')"
    env = _clean_env(tmp_path, RAG_LLM="fake", RAG_EMBEDDER="minilm", RAG_CORPUS=str(CORPUS),
                     RAG_STORE=str(tmp_path / "store"), RAG_HOME=str(home))
    run = subprocess.run([sys.executable, "-c", bootstrap, "rag", "ask", "How far did bitcoin fall after the leak?"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "66,000" in run.stdout, run.stdout
    assert json.loads((tmp_path / "imported.json").read_text()) == []
    assert sorted(p.name for p in (home / "models").glob("*.onnx")) == [_onnx_file(exported).name]
