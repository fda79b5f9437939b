"""LLM backends and the embedded model files: ids, the Ollama path (against a stand-in server), checksums."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag import Pipeline, SetupError, UserError, model_files
from rag.llm import OllamaLLM, get_llm

from .conftest import free_port
from .ollama_standin import OllamaStandIn

MSGS = [{"role": "system", "content": "Answer from sources."},
        {"role": "user", "content": "Sources:\n[1] Bitcoin slid to $66,000. More text.\n\nQuestion: bitcoin?"}]


def test_unknown_ids_and_missing_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="did you mean 'llamacpp'"):
        get_llm("llamacp:default", tmp_path)
    with pytest.raises(UserError, match="no GGUF file"):
        get_llm("llamacpp:/nowhere/model.gguf", tmp_path)
    with pytest.raises(UserError, match="ollama needs a model name"):
        get_llm("ollama:", tmp_path)


def test_ollama_backend_streams_from_the_standin(monkeypatch):
    # A stand-in for a real Ollama server (none can be installed here); see tests/ollama_standin.py.
    with OllamaStandIn() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        llm = OllamaLLM("qwen2.5:1.5b")
        text = "".join(llm.stream(MSGS, max_tokens=50, temperature=0.0, seed=7))
    assert text == "Bitcoin slid to $66,000 [1]."
    req = server.requests[-1]
    assert req["path"] == "/api/chat" and req["model"] == "qwen2.5:1.5b" and req["stream"] is True
    assert req["options"]["num_predict"] == 50 and req["options"]["seed"] == 7
    assert req["options"]["temperature"] == 0.0 and req["messages"][0]["role"] == "system"


def test_ask_through_ollama_gives_a_verified_answer(settings, monkeypatch):
    with OllamaStandIn() as server:  # stand-in for Ollama, see above
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        a = Pipeline(settings.model_copy(update={"llm": "ollama:qwen2.5:1.5b"})).ask(
            "How far did bitcoin fall after the leak?")
    assert not a.abstained and a.model == "ollama:qwen2.5:1.5b"
    assert any("66,000" in c.quote for c in a.citations)


def test_ollama_errors_say_what_to_do(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(SetupError, match="cannot reach Ollama.*ollama serve"):
        "".join(OllamaLLM("qwen2.5:1.5b").stream(MSGS, max_tokens=5, temperature=0, seed=0))
    with OllamaStandIn() as server:  # stand-in for Ollama
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        with pytest.raises(SetupError, match="ollama pull llama9"):
            "".join(OllamaLLM("llama9").stream(MSGS, max_tokens=5, temperature=0, seed=0))
    with OllamaStandIn(die_after_chunks=2) as server:  # stand-in that dies mid-answer
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        with pytest.raises(SetupError, match="Ollama"):
            "".join(OllamaLLM("qwen2.5:1.5b").stream(MSGS, max_tokens=5, temperature=0, seed=0))


class _TinyModel(model_files.EmbeddedModel):
    """Two small part files in tmp_path instead of wheels."""

    def part_path(self, i: int) -> Path:
        return Path(self.package) / f"part{i:02d}.bin"


def _tiny(tmp_path: Path, corrupt_part: bool = False) -> _TinyModel:
    parts = tmp_path / "parts"
    parts.mkdir(exist_ok=True)
    blobs = [b"GGUF" + b"a" * 1000, b"b" * 777]
    for i, blob in enumerate(blobs, start=1):
        (parts / f"part{i:02d}.bin").write_bytes(blob)
    whole = b"".join(blobs)
    if corrupt_part:
        (parts / "part02.bin").write_bytes(b"c" * 777)
    return _TinyModel("tiny", "tiny.gguf", str(parts), 2, len(whole), hashlib.sha256(whole).hexdigest())


def test_model_is_assembled_once_and_verified(tmp_path, monkeypatch):
    monkeypatch.setitem(model_files.MODELS, "tiny", _tiny(tmp_path))
    path = model_files.ensure_model("tiny", tmp_path / "cache")
    assert path.read_bytes().startswith(b"GGUF") and path.stat().st_size == 1781
    assert not list((tmp_path / "cache").glob("*.part-*"))


def test_corrupt_parts_or_cache_are_caught_before_loading(tmp_path, monkeypatch):
    monkeypatch.setitem(model_files.MODELS, "tiny", _tiny(tmp_path, corrupt_part=True))
    with pytest.raises(SetupError, match="do not add up.*reinstall"):
        model_files.ensure_model("tiny", tmp_path / "cache")
    assert not (tmp_path / "cache" / "tiny.gguf").exists()

    monkeypatch.setitem(model_files.MODELS, "tiny", _tiny(tmp_path))
    model_files._verified.clear()
    path = model_files.ensure_model("tiny", tmp_path / "cache")
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # flip one bit of the cached file: same size, wrong checksum
    path.write_bytes(bytes(data))
    model_files._verified.clear()
    with pytest.raises(SetupError, match="corrupt.*delete it"):
        model_files.ensure_model("tiny", tmp_path / "cache")


def test_missing_model_package_names_the_pip_install(tmp_path):
    model = model_files.EmbeddedModel("x", "x.gguf", "no-such-model-part", 3, 1, "0" * 64)
    with pytest.raises(SetupError, match="pip install no-such-model-part1"):
        model.part_path(1)
