"""What `rag eval` and `rag bench` share as commands: parse, run, and turn a RagError into one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

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
