"""`rag mcp`: an MCP server (the official `mcp` SDK's MCPServer, formerly FastMCP) with two tools.

    ask(question, collection?)       the verified answer, its citations as exact spans and per-sentence flags
    search(query, collection?, k?)   the passages retrieval finds, as exact spans; retrieval only, no model call

Both return structured content (the shapes of rag/extras.py) with a JSON schema, so an MCP client can show the
cited passages itself. Transport: stdio (what Claude Desktop and most clients start), or streamable HTTP on
loopback with `--http PORT`. Errors come back as tool errors carrying the CLI's one-line message.
Left out: resources, prompts, chat history (a calling model rephrases a follow-up itself).
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations to build their JSON schemas.

import logging
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from ingest.errors import RagError
from rag import Settings, pipeline
from rag.answer import clean_question
from rag.extras import Passage, RagExtras
from ui.collections import collection_settings

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Answers questions about a folder of news articles with a local model. `ask` returns a short answer whose "
    "every sentence cites a passage that was checked to support it ([n] markers, each an exact character span of "
    "its document), or abstains when the articles do not say. `search` finds passages without an answer."
)


class AskResult(RagExtras):
    """The verified answer (`text`, with its [n] markers) and the `rag` extras."""

    text: str


class SearchResult(BaseModel):
    query: str
    passages: list[Passage] = Field(description="best first; document_text[char_start:char_end] == quote")


def build_server(settings: Settings) -> MCPServer:
    """The MCP server over these settings. Builds nothing costly: the pipeline is made by the first call."""
    server = MCPServer("rag-news", instructions=INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    named = (f"the collection to answer from (default: {settings.collection_name!r}; `rag collections` lists "
             "them)")

    @server.tool(annotations=read_only, structured_output=True)
    def ask(question: str, collection: Annotated[str, Field(description=named)] = "") -> AskResult:
        """Answer a question from the articles. Every sentence of `text` cites a checked passage with [n]; each
        entry of `citations` gives that passage as an exact span (doc_id, title, quote, char_start, char_end).
        `abstained` is true when the articles do not answer it (then `closest` lists the nearest passages)."""
        try:
            answer = pipeline(collection_settings(settings, collection)).ask(question)
        except RagError as e:
            raise ToolError(str(e)) from None
        return AskResult(text=answer.text, **RagExtras.of(answer, collection or settings.collection_name).model_dump())

    @server.tool(annotations=read_only, structured_output=True)
    def search(query: str, collection: Annotated[str, Field(description=named)] = "",
               k: Annotated[int, Field(ge=1, le=20, description="how many passages")] = 5) -> SearchResult:
        """Find the passages of the articles that best match a query (hybrid dense + BM25 search), best first,
        each an exact span of its document. Retrieval only: no answer is written and no model is called."""
        try:
            s = collection_settings(settings, collection)
            text = clean_question(query, s.max_question_chars)
            retrieval = pipeline(s).retrieve(text, max_sources=k)
        except RagError as e:
            raise ToolError(str(e)) from None
        return SearchResult(query=text, passages=[Passage.of(src) for src in retrieval.sources])

    return server


def run(settings: Settings, http_port: int | None = None) -> None:
    """Sync the corpus, then serve MCP over stdio (or streamable HTTP on 127.0.0.1:http_port/mcp) until closed."""
    # Synced before the first request so a client does not wait on (or time out during) the first ingest. Nothing
    # may be printed: over stdio, stdout is the protocol (logging goes to stderr).
    report = pipeline(settings).ingest()
    log.info("corpus: %s", report.summary())
    server = build_server(settings)
    if http_port is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=http_port)
