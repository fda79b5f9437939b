"""The `rag` command: ingest, ask, ui, eval, bench. It turns our errors into one line each and exits non-zero.

Heavy imports (Gradio, the eval) happen inside the command that needs them, so `rag ask` starts quickly.
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

from ingest.errors import RagError

# Quiet by default: no telemetry, no hub access, no tokenizer fork warnings.
QUIET_ENV = {"ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "GRADIO_ANALYTICS_ENABLED": "False"}


def _settings(**overrides):
    from rag.settings import Settings

    return Settings.from_env(**overrides)


class _Group(click.Group):
    """Runs a command and prints any error as one `error: ...` line (exit 1); a traceback only with -v."""

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


_store_opt = click.option("--store", help="store folder, or http://HOST:PORT for a Chroma server [RAG_STORE]")
_llm_opt = click.option("--llm", help="model id: llamacpp:default, llamacpp:small, llamacpp:PATH, ollama:MODEL, fake")


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="log what happens")
def main(verbose: bool) -> None:
    """Ask questions about a folder of news articles; every claim cites a checked passage."""
    for var, val in QUIET_ENV.items():
        os.environ.setdefault(var, val)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@main.command()
@click.argument("corpus", required=False, type=click.Path(path_type=Path))
@_store_opt
def ingest(corpus: Path | None, store: str | None) -> None:
    """Embed the articles in CORPUS (default: the bundled corpus) into the store."""
    from tqdm import tqdm

    from rag.answer import Pipeline

    pipe = Pipeline(_settings(corpus=corpus, store=store))
    bar = None

    def progress(done: int, total: int, doc_id: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="chunk", desc="embedding", file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(doc_id, refresh=True)

    try:
        report = pipe.ingest(progress=progress)
    finally:
        if bar is not None:
            bar.close()
    for message in report.skipped:
        click.echo(f"warning: {message}", err=True)
    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        for doc_id in ids:
            click.echo(f"{label}: {doc_id}")
    click.echo(report.summary())


@main.command()
@click.argument("question")
@click.option("--corpus", type=click.Path(path_type=Path), help="folder of articles [RAG_CORPUS]")
@_store_opt
@_llm_opt
@click.option("--top-k", type=int, help="chunks retrieved per search [RAG_TOP_K]")
@click.option("--json", "as_json", is_flag=True, help="print the whole Answer as JSON")
def ask(question: str, corpus, store, llm, top_k, as_json: bool) -> None:
    """Answer QUESTION from the articles, streaming, then list the numbered citations."""
    from rag.answer import Answer, pipeline

    pipe = pipeline(_settings(corpus=corpus, store=store, llm=llm, top_k=top_k))
    answer = None
    for item in pipe.stream(question):
        if isinstance(item, Answer):
            answer = item
        elif not as_json and sys.stdout.isatty():
            click.echo(item, nl=False)
    assert answer is not None
    if as_json:
        click.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    if sys.stdout.isatty():
        click.echo("\r\033[K", nl=False)  # the streamed draft is replaced by the verified answer
    click.echo(answer.text)
    flagged = [s.text for s in answer.sentences if not s.supported]
    for text in flagged:
        click.echo(f"  (unsupported by the articles: {text})")
    click.echo()
    listed = answer.citations if not answer.abstained else answer.closest
    if answer.abstained and listed:
        click.echo("Closest passages:")
    for c in listed:
        quote = textwrap.shorten(" ".join(c.quote.split()), 300)
        click.echo(f"[{c.number}] {c.title} ({c.doc_id}, chars {c.char_start}-{c.char_end})\n    \"{quote}\"")
    t = answer.timings
    click.echo(f"\n{answer.model or 'no model call'} · retrieve {t.get('retrieve', 0):.2f}s · first token "
               f"{t.get('first_token', 0):.2f}s · total {t.get('total', 0):.2f}s", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=7860, show_default=True, type=int)
@click.option("--share", is_flag=True, help="also open a public Gradio share link (needs a login)")
@click.option("--auth-file", type=click.Path(path_type=Path), help="logins, one user:password a line [or RAG_UI_AUTH]")
@click.option("--no-auth", is_flag=True, help="serve beyond loopback without a login (anyone can ask and re-ingest)")
@click.option("--corpus", type=click.Path(path_type=Path))
@_store_opt
@_llm_opt
def ui(host: str, port: int, share: bool, auth_file: Path | None, no_auth: bool, corpus, store, llm) -> None:
    """Start the chat web UI (loopback only unless --host says otherwise; beyond it, a login is required)."""
    try:
        from ui.app import check_exposure, launch, load_auth
    except ImportError as e:
        raise RagError(f"the UI is not available ({e}): pip install -e .") from None
    auth = load_auth(os.environ.get("RAG_UI_AUTH"), auth_file)
    check_exposure(host, share, auth, open_access=no_auth)  # before the corpus is synced
    launch(_settings(corpus=corpus, store=store, llm=llm), host=host, port=port, share=share, auth=auth,
           open_access=no_auth)


# `rag eval --help` and `rag bench --help` reach the sub-tool's own argument parser.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command(name="eval", context_settings=_PASS_THROUGH)
@click.pass_context
def eval_(ctx) -> None:
    """Score the pipeline on the gold question set (see `rag eval --help`)."""
    try:
        from eval.run import main as eval_main
    except ImportError as e:
        raise RagError(f"the eval is not available ({e}): pip install -e .") from None
    sys.exit(eval_main(ctx.args))


@main.command(context_settings=_PASS_THROUGH)
@click.pass_context
def bench(ctx) -> None:
    """Measure speed and memory against the bare engines (see `rag bench --help`)."""
    try:
        from eval.bench import main as bench_main
    except ImportError as e:
        raise RagError(f"the benchmark is not available ({e}): pip install -e .") from None
    sys.exit(bench_main(ctx.args))


if __name__ == "__main__":
    main()
