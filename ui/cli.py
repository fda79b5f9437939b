"""The `rag ui` command (registered through the `rag.commands` entry point; see rag/cli.py)."""

from __future__ import annotations

from pathlib import Path

import click

from rag.cli import llm_option, settings_from, store_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--share", is_flag=True, help="also open a public Gradio share link")
@click.option("--corpus", type=click.Path(path_type=Path))
@store_option
@llm_option
def ui(host: str, port: int, share: bool, corpus, store, llm) -> None:
    """Start the chat web UI (loopback only unless --host says otherwise)."""
    from ui.app import launch

    launch(settings_from(corpus=corpus, store=store, llm=llm), host=host, port=port, share=share)
