"""One typed settings object, passed explicitly. Environment variables are read in one place: `Settings.from_env`.

| field      | env var        | default                                  |
|------------|----------------|------------------------------------------|
| corpus     | RAG_CORPUS     | the bundled `data/corpus/` (or the collection's folder) |
| collection | RAG_COLLECTION | named after the corpus folder; `default` for the bundled one |
| store      | RAG_STORE      | `<home>/store` (or `http://HOST:PORT`)    |
| llm        | RAG_LLM        | `llamacpp:default`                       |
| embedder   | RAG_EMBEDDER   | `minilm`                                 |
| top_k      | RAG_TOP_K      | 4                                        |
| home       | RAG_HOME       | `~/.cache/rag-news` (models, store)      |
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ingest.store import DEFAULT_COLLECTION, check_collection_name, collection_slug
from rag import policy

BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
DEFAULT_HOME = Path("~/.cache/rag-news").expanduser()

_ENV = {"corpus": "RAG_CORPUS", "collection": "RAG_COLLECTION", "store": "RAG_STORE", "llm": "RAG_LLM",
        "embedder": "RAG_EMBEDDER",
        "top_k": "RAG_TOP_K", "home": "RAG_HOME"}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    corpus: Path = BUNDLED_CORPUS
    collection: str = ""  # empty: named after the corpus folder ("default" for the bundled corpus)
    store: str = ""  # empty: <home>/store
    llm: str = "llamacpp:default"
    embedder: str = "minilm"
    home: Path = DEFAULT_HOME

    top_k: int = Field(4, ge=1, le=50, description="chunks retrieved by each of dense and lexical search")
    max_sources: int = Field(4, ge=1, le=20, description="numbered passages given to the model")
    context_chars: int = Field(900, ge=100, description="character budget for all passages in the prompt")
    max_tokens: int = Field(120, ge=8, description="answer length limit in tokens")
    temperature: float = 0.0
    seed: int = 0
    n_ctx: int = 2048
    min_relevance: float = Field(
        policy.MIN_RELEVANCE, description="best dense similarity below which ask() abstains unasked, "
                                 "unless a sentence has min_overlap of the question's words")
    min_overlap: float = Field(
        policy.MIN_OVERLAP, description="share of the question's content words (IDF-weighted) in one "
                               "sentence that makes it worth asking the model despite a low similarity")
    support_threshold: float = Field(0.5, description="support-judge probability a citation needs")
    max_question_chars: int = 4000
    meaning_judge: bool = Field(False, description="after the word-overlap judge, ask the model whether each kept "
                                "source says what the sentence says (llama.cpp backend only; one short prompt each)")

    @field_validator("collection")
    @classmethod
    def _named(cls, value: str) -> str:
        return check_collection_name(value) if value else value

    @property
    def collection_name(self) -> str:
        """The collection these settings answer from: the one named, else one named after the corpus folder."""
        if self.collection:
            return self.collection
        if Path(self.corpus).expanduser().resolve() == BUNDLED_CORPUS:
            return DEFAULT_COLLECTION
        return collection_slug(Path(self.corpus).expanduser().resolve())

    @property
    def corpus_given(self) -> bool:
        """Was a corpus folder asked for (else a named collection answers from the folder it mirrors)?"""
        return "corpus" in self.model_fields_set

    @property
    def store_location(self) -> str:
        return self.store or str(self.home / "store")

    @property
    def model_dir(self) -> Path:
        return self.home / "models"

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Defaults, then RAG_* environment variables, then the keyword arguments given here."""
        values: dict = {k: os.environ[v] for k, v in _ENV.items() if os.environ.get(v)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
