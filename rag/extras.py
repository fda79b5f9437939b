"""The `rag` extras: an answer's citations, sentence flags and abstention as plain JSON, in one typed shape.

Every interface hands the same shape out: the `"rag"` extension field of the OpenAI-compatible API (ui/api.py),
the MCP tools' structured results (ui/mcp_server.py) and the metadata of llama-index responses (rag/llamaindex.py).
For every passage `document_text[char_start:char_end] == quote`. This module only converts; it answers nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from rag.answer import Answer, Citation
from rag.retrieve import Source


class Passage(BaseModel):
    """An exact span of one document: `document_text[char_start:char_end] == quote`."""

    number: int = Field(description="the [n] marker that cites it (for search results: its rank, from 1)")
    doc_id: str
    title: str
    quote: str
    char_start: int
    char_end: int
    page: int | None = Field(None, description="the page it is on, for paged documents (PDF); else null")
    score: float

    @classmethod
    def of(cls, c: Citation | Source) -> Passage:
        if isinstance(c, Source):
            return cls(number=c.number, doc_id=c.doc_id, title=c.title, quote=c.text, char_start=c.start,
                       char_end=c.end, page=getattr(c, "page", None), score=c.score)
        return cls(number=c.number, doc_id=c.doc_id, title=c.title, quote=c.quote, char_start=c.char_start,
                   char_end=c.char_end, page=getattr(c, "page", None), score=c.score)


class SentenceFlag(BaseModel):
    text: str
    citations: list[int] = Field(description="the [n] markers of this sentence")
    supported: bool = Field(description="the support judge found it in the passages it cites")
    score: float


class RagExtras(BaseModel):
    """What an answer's text alone does not say: what each marker cites, which sentences are supported, and
    whether the tool abstained (then `closest` lists the passages nearest the question)."""

    abstained: bool
    citations: list[Passage]
    sentences: list[SentenceFlag]
    closest: list[Passage] = Field(description="when abstained: the passages nearest the question; else []")
    abstain_reason: str = Field(description="why it abstained (rag/policy.py `Abstain`); empty when it answered")
    model: str = Field(description="the model that wrote the answer; empty when no model was called")
    prompt_tokens: int
    timings: dict[str, float] = Field(description="seconds: retrieve, first_token, generate, verify, total")
    collection: str | None = None

    @classmethod
    def of(cls, answer: Answer, collection: str | None = None) -> RagExtras:
        return cls(
            abstained=answer.abstained,
            citations=[Passage.of(c) for c in answer.citations],
            sentences=[SentenceFlag(text=s.text, citations=s.citations, supported=s.supported, score=s.score)
                       for s in answer.sentences],
            closest=[Passage.of(c) for c in answer.sources] if answer.abstained else [],
            abstain_reason=answer.abstain_reason,
            model=answer.model,
            prompt_tokens=answer.prompt_tokens,
            timings=answer.timings,
            collection=collection,
        )
