"""The `rag ui`, `rag serve` and `rag mcp` commands, registered through the `rag.commands` entry points (see
rag/cli.py); each imports its server only when it runs."""

from __future__ import annotations

import os
from pathlib import Path

import click

from rag.cli import collection_option, llm_option, settings_from, store_option
from rag.running import API_KEY_ENV


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--share", is_flag=True, help="also open a public Gradio share link (needs a login)")
@click.option("--auth-file", type=click.Path(path_type=Path), help="logins, one user:password a line [or RAG_UI_AUTH]")
@click.option("--no-auth", is_flag=True, help="serve beyond loopback without a login (anyone can ask and re-ingest)")
@click.option("--corpus", type=click.Path(path_type=Path))
@collection_option
@store_option
@llm_option
def ui(host: str, port: int, share: bool, auth_file: Path | None, no_auth: bool, corpus, collection, store,
       llm) -> None:
    """Start the chat web UI (loopback only unless --host says otherwise; beyond it, a login is required)."""
    from ui.app import check_exposure, launch, load_auth

    auth = load_auth(os.environ.get("RAG_UI_AUTH"), auth_file)
    check_exposure(host, share, auth, open_access=no_auth)  # before the corpus is synced
    launch(settings_from(corpus=corpus, collection=collection, store=store, llm=llm), host=host, port=port,
           share=share, auth=auth, open_access=no_auth)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on (beyond loopback "
              "only with an API key)")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--api-key", envvar=API_KEY_ENV, help="clients must send `Authorization: Bearer KEY` [RAG_API_KEY]")
@click.option("--corpus", type=click.Path(path_type=Path))
@collection_option
@store_option
@llm_option
def serve(host: str, port: int, api_key: str | None, corpus, collection, store, llm) -> None:
    """Serve an OpenAI-compatible API: POST /v1/chat/completions, GET /v1/models."""
    from ui.api import serve as serve_api

    serve_api(settings_from(corpus=corpus, collection=collection, store=store, llm=llm), host=host, port=port,
              api_key=api_key)


@click.command()
@click.option("--http", "http_port", type=int, help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio")
@click.option("--corpus", type=click.Path(path_type=Path))
@collection_option
@store_option
@llm_option
def mcp(http_port: int | None, corpus, collection, store, llm) -> None:
    """Run an MCP server (tools: ask, search) over stdio, for Claude Desktop and other MCP clients."""
    from ui.mcp_server import run

    run(settings_from(corpus=corpus, collection=collection, store=store, llm=llm), http_port=http_port)
