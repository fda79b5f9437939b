"""The `rag eval` and `rag bench` commands (registered through the `rag.commands` entry points; see rag/cli.py),
and what they share: parse, run, turn a RagError into one line and exit 2, and the run folder a command writes its
report to."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click

from ingest.errors import RagError


def run_command(parser: argparse.ArgumentParser, action: Callable[[argparse.Namespace], int],
                argv: list[str] | None) -> int:
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad flag (argparse has printed why)
        return int(e.code or 0)
    try:
        return action(args)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run_folder(out: Path | None, prefix: str) -> Path:
    """`out`, or a new runs/<prefix>-<timestamp>[-n]/ folder; created."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{prefix}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = Path("runs") / f"{prefix}-{stamp}-{n}"
    out.mkdir(parents=True, exist_ok=True)
    return out


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
