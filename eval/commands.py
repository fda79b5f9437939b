"""The `rag eval` and `rag bench` commands, registered through the `rag.commands` entry points (see rag/cli.py);
each imports its tool only when it runs."""

from __future__ import annotations

import sys

import click

# `rag eval --help` and `rag bench --help` reach the sub-tool's own argument parser.
_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command(name="eval", context_settings=_PASS_THROUGH)
@click.pass_context
def eval_command(ctx) -> None:
    """Score the pipeline on the gold question set (see `rag eval --help`)."""
    from eval.run import main as eval_main

    sys.exit(eval_main(ctx.args))


@click.command(name="bench", context_settings=_PASS_THROUGH)
@click.pass_context
def bench_command(ctx) -> None:
    """Measure speed and memory against the bare engines (see `rag bench --help`)."""
    from eval.bench import main as bench_main

    sys.exit(bench_main(ctx.args))
