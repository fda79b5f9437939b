"""Shared fixtures: every store, model cache and corpus lives under tmp_path; the fakes need no model."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from ingest.env import quiet

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus"

quiet()

# Property tests: 300 examples each in the full run; `--hypothesis-profile=dev` (the inner loop) runs 30.
settings.register_profile("full", database=None, deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", parent=settings.get_profile("full"), max_examples=30)
settings.load_profile("full")


def require(available: bool, what: str, fix: str) -> None:
    """Skip a test whose tool is missing, saying the command that fixes it; under CI (CI=true) fail instead, so a
    machine without the tool never passes by testing less."""
    if available:
        return
    message = f"{what} is missing: {fix}"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message} (CI=true: a missing tool fails the run)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A loopback port nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy of the bundled corpus that a test may change."""
    dst = tmp_path / "corpus"
    shutil.copytree(CORPUS, dst)
    return dst


@pytest.fixture
def settings(tmp_path: Path, corpus: Path):
    from rag import Settings

    return Settings(corpus=corpus, store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake",
                    embedder="fake")
