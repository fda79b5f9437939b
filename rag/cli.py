"""The `rag` command: its group, and the commands of this package (ingest, ask). It turns our errors into one
line each and exits non-zero.

The command line is the composition root, so it must sit above `ui` and `eval` without `rag` importing them:
the packages above contribute their own commands (`ui`, `eval`, `bench`, ...) through the `rag.commands` entry
points declared in pyproject.toml, and a command's module is imported only when that command runs, so
`rag ask` starts quickly.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
import traceback
from pathlib import Path

import click

from ingest.env import quiet
from ingest.errors import RagError

COMMANDS_GROUP = "rag.commands"  # entry points: name = "package.module:click_command"


def settings_from(**overrides):
    """Settings from the environment, then the flags given (None means not given)."""
    from rag.settings import Settings

    return Settings.from_env(**overrides)


def _plugin_commands() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMANDS_GROUP)}


class _Group(click.Group):
    """Runs a command and prints any error as one `error: ...` line (exit 1; a traceback only with -v); finds the
    commands of the packages above through entry points, loading one only when it is asked for."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(_plugin_commands()))

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        ep = _plugin_commands().get(cmd_name)
        if ep is None:
            return None
        try:
            return ep.load()
        except ImportError as e:
            raise click.ClickException(f"`rag {cmd_name}` is not available ({e}): pip install -e .") from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RagError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors and --help: click prints them itself
        except Exception as e:  # a bug, or a library error we do not know yet (a store or HTTP failure)
            message = " ".join(str(e).split())
            message = message if len(message) <= 300 else message[:299] + "…"
            if ctx.params.get("verbose"):
                traceback.print_exc()
                click.echo(f"error: unexpected {e.__class__.__name__}: {message}", err=True)
            else:
                click.echo(f"error: unexpected {e.__class__.__name__}: {message} (run with -v for the traceback)",
                           err=True)
            sys.exit(1)


store_option = click.option("--store", help="store folder, or http://HOST:PORT for a Chroma server [RAG_STORE]")
collection_option = click.option("--collection", help="collection name (default: named after the folder; 'default' "
                                 "for the bundled corpus) [RAG_COLLECTION]")
llm_option = click.option("--llm", help="model id: llamacpp:default, llamacpp:small, llamacpp:PATH, ollama:MODEL, fake")


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="log what happens")
def main(verbose: bool) -> None:
    """Ask questions about a folder of news articles; every claim cites a checked passage."""
    quiet()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command()
@click.argument("corpus", required=False, type=click.Path(path_type=Path))
@store_option
@collection_option
@click.option("--repoint", is_flag=True, help="let the collection mirror CORPUS instead of the folder it mirrors")
@click.option("--rebuild", is_flag=True, help="embed every document again from scratch")
def ingest(corpus: Path | None, store: str | None, collection: str | None, repoint: bool, rebuild: bool) -> None:
    """Embed the articles in CORPUS (default: the collection's folder, or the bundled corpus) into the store.

    Each collection mirrors one folder: new and changed files are embedded, deleted ones removed."""
    from tqdm import tqdm

    from rag.answer import Pipeline

    pipe = Pipeline(settings_from(corpus=corpus, store=store, collection=collection))
    bar = None

    def progress(done: int, total: int, doc_id: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="chunk", desc="embedding", file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(doc_id, refresh=True)

    try:
        report = pipe.ingest(progress=progress, repoint=repoint, rebuild=rebuild)
    finally:
        if bar is not None:
            bar.close()
    for message in report.skipped:
        click.echo(f"warning: {message}", err=True)
    for doc_id in report.kept:
        click.echo(f"warning: {doc_id}: its file cannot be read now; its last good version stays", err=True)
    if report.reembedded:
        click.echo("note: embedded every document again (a new embedding model, or --rebuild)", err=True)
    click.echo(f"collection {pipe.store.collection!r} mirrors {pipe.folder()}", err=True)
    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for doc_id in ids:
            click.echo(f"{label}: {doc_id}")
    click.echo(report.summary())


@main.command()
@click.argument("question")
@click.option("--corpus", type=click.Path(path_type=Path), help="folder of articles [RAG_CORPUS]")
@collection_option
@store_option
@llm_option
@click.option("--top-k", type=int, help="chunks retrieved per search [RAG_TOP_K]")
@click.option("--doc", "docs", multiple=True, help="only this document (a doc id; repeat for several)")
@click.option("--json", "as_json", is_flag=True, help="print the whole Answer as JSON")
@click.option("--local", is_flag=True, envvar="RAG_LOCAL", help="answer in this process, even when a `rag serve` "
              "for the same store, collection and model is running [RAG_LOCAL=1]")
def ask(question: str, corpus, collection, store, llm, top_k, docs, as_json: bool, local: bool) -> None:
    """Answer QUESTION from the articles, streaming, then list the numbered citations.

    When a `rag serve` for the same settings is running, it answers and nothing is loaded here (--local: not)."""
    settings = settings_from(corpus=corpus, collection=collection, store=store, llm=llm, top_k=top_k)
    documents = list(docs) or None
    global _exit_now
    answer = None
    if not local:
        from rag.running import ask_running

        answer = ask_running(settings, question, documents)
        _exit_now = answer is not None
    if answer is None:
        answer = _ask_here(settings, question, documents, stream_draft=not as_json and sys.stdout.isatty())
    _print_answer(answer, as_json)


def _ask_here(settings, question: str, documents: list[str] | None, stream_draft: bool):
    """The Answer from a pipeline in this process; on a terminal, the model's draft as it is written."""
    from rag.answer import Answer, pipeline, warm

    global _exit_now
    warm(settings)  # the model loads while the store opens (chromadb's import alone takes about 0.5 s)
    pipe = pipeline(settings)
    answer = None
    for item in pipe.stream(question, documents=documents):
        if isinstance(item, Answer):
            answer = item
        elif stream_draft:
            click.echo(item, nl=False)
    assert answer is not None
    _exit_now = not pipe.store.wrote
    return answer


def _print_answer(answer, as_json: bool) -> None:
    """An Answer as `rag ask` prints it, wherever it was answered: JSON, or the text, then the numbered citations
    (an abstention's closest passages), then the model and timings on stderr."""
    if as_json:
        click.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    if sys.stdout.isatty():
        click.echo("\r\033[K", nl=False)  # a streamed draft is replaced by the verified answer
    click.echo(answer.text)
    flagged = [s.text for s in answer.sentences if not s.supported]
    for text in flagged:
        click.echo(f"  (unsupported by the articles: {text})")
    click.echo()
    listed = answer.citations if not answer.abstained else answer.sources
    if answer.abstained and listed:
        click.echo("Closest passages:")
    for c in listed:
        quote = textwrap.shorten(" ".join(c.quote.split()), 300)
        where = "".join([f", page {c.page}" if c.page else "", f", {c.section}" if c.section else ""])
        click.echo(f"[{c.number}] {c.title} ({c.doc_id}{where}, chars {c.char_start}-{c.char_end})\n    \"{quote}\"")
    t = answer.timings
    click.echo(f"\n{answer.model or 'no model call'} · retrieve {t.get('retrieve', 0):.2f}s · first token "
               f"{t.get('first_token', 0):.2f}s · total {t.get('total', 0):.2f}s", err=True)


@main.command("collections")
@store_option
def collections_command(store: str | None) -> None:
    """List the store's collections: name, folder, documents, chunks and last ingest."""
    import time

    from ingest.embed import get_embedder
    from ingest.store import list_collections

    s = settings_from(store=store)
    found = list_collections(s.store_location, get_embedder(s.embedder).name)
    if not found:
        click.echo("no collections yet: `rag ingest DIR` makes one")
    for c in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.ingested_at)) if c.ingested_at else "never"
        click.echo(f"{c.name}\t{c.n_docs} documents\t{c.n_chunks} chunks\tlast ingest {when}\t{c.folder or '-'}")


# Set by `rag ask` once it has answered without writing to the store: `run` then ends the process at once.
_exit_now = False


def run() -> None:
    """The `rag` command (pyproject.toml [project.scripts]). After an answer that wrote nothing, the process ends
    without the interpreter's teardown (freeing the model, Chroma's and onnxruntime's modules): about 0.4 s of a
    cold `rag ask` that nobody waits for. Our own files are written whole before that (os.replace), and a `rag ask`
    that ingested or wrote to the store exits the usual way, so Chroma closes its database itself."""
    try:
        main()
    except SystemExit as e:
        if not _exit_now:
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run()
