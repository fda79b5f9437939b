"""What `rag eval` and `rag bench` share as commands: parse, run, turn a RagError into one line and exit 2, and
the run folder a command writes its report to. (The click commands themselves are in eval/commands.py.)"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

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

