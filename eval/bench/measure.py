"""The few measuring tools the bench's sections share: percentiles of a sample, the gold questions to time, and an
optional pyinstrument profile around a block.

It times nothing itself and knows no section; the clocks are `time.perf_counter` calls in each section, where the
work they time is in view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from eval.run import load_questions
from ingest.errors import SetupError

GB = 1024**3
Log = Callable[[str], None]  # a section's progress line (to stderr, unless --quiet)


def pct(values: list[float]) -> dict:
    """p50/p95/mean/min/max of a sample (linear interpolation); all None for an empty one."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "min": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


def spaced_questions(path: Path, n: int | None) -> list[dict]:
    """The gold questions, or n of them evenly spaced through the file (the first alone when n is 1)."""
    rows = load_questions(path)
    if n is not None and n < len(rows):
        rows = [rows[round(i * (len(rows) - 1) / max(1, n - 1))] for i in range(n)] if n > 1 else rows[:1]
    return rows


@contextmanager
def profiled(folder: Path, name: str) -> Iterator[None]:
    """Profile the block with pyinstrument into folder/profile-<name>.txt and .html (for `rag bench --profile`).

    A profiled block is run on top of the timed ones, never instead of them: the sampler slows what it watches.
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SetupError("--profile needs pyinstrument: pip install pyinstrument") from None
    prof = Profiler(interval=0.001)
    prof.start()
    try:
        yield
    finally:
        prof.stop()
    (folder / f"profile-{name}.txt").write_text(prof.output_text(unicode=True, show_all=False), encoding="utf-8")
    (folder / f"profile-{name}.html").write_text(prof.output_html(), encoding="utf-8")
