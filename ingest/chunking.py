"""Split a document into sentences and chunks that keep exact character offsets.

Every span returned here is a (start, end) pair into `Document.text`, so `text[start:end]` is always the
chunk or sentence itself: nothing is normalised or rewritten. Residue spans (`Document.skip`) are never inside
a chunk, and no chunk runs across the start of a page or a section (`Document.pages`, `Document.sections`), so
the page and section a chunk records are the ones all of it is on. This module knows nothing of embeddings or stores.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.abc
import importlib.util
import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import SetupError
from ingest.loaders import Document

MAX_CHUNK_CHARS = 700

@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int
    start: int
    end: int
    text: str
    version: str = ""  # from the document's content hash: a changed document's chunks get new ids

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}::{self.version}::{self.index}" if self.version else f"{self.doc_id}::{self.index}"


class _Unavailable(importlib.abc.MetaPathFinder):
    """Makes some packages unimportable for a moment (see `_without_optional_extras`)."""

    def __init__(self, packages: set[str]) -> None:
        self.packages = packages

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"{name} is not imported while NLTK loads", name=name)
        return None


_OPTIONAL_EXTRAS = ("scipy", "sklearn")


@contextlib.contextmanager
def _without_optional_extras():
    """`import nltk` imports scipy.stats and scikit-learn for features Punkt never uses (collocation measures,
    classifiers), each guarded by `except ImportError`; that is most of its 0.9 s (1.7 s from a cold disk), paid
    by every fresh `rag ask` when it verifies its answer. While NLTK loads they are unimportable, so it takes its
    fallbacks and loads in 0.15 s. One that something else imported already stays as it is, and after this they
    all import as usual."""
    packages = {name for name in _OPTIONAL_EXTRAS if name not in sys.modules}
    if not packages or "nltk" in sys.modules:
        yield
        return
    finder = _Unavailable(packages)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def _punkt():
    """NLTK's Punkt sentence tokenizer for English, from the punkt_tab data that llama-index-core ships (nothing is
    downloaded); one per process."""
    global _tokenizer
    if _tokenizer is None:
        with _without_optional_extras():
            import nltk
            from nltk.tokenize.punkt import PunktTokenizer

        spec = importlib.util.find_spec("llama_index.core")
        if spec and spec.submodule_search_locations:
            data = Path(next(iter(spec.submodule_search_locations))) / "_static" / "nltk_cache"
            if str(data) not in nltk.data.path:
                nltk.data.path.append(str(data))
        try:
            tokenizer = PunktTokenizer("english")
        except LookupError:
            raise SetupError("NLTK's Punkt data (punkt_tab) is missing: pip install --force-reinstall "
                             "llama-index-core") from None
        tokenizer._params.abbrev_types.update(EXTRA_ABBREVIATIONS)
        _tokenizer = tokenizer
    return _tokenizer


_tokenizer = None
# Abbreviations Punkt's English model lacks, seen in news and documentation ("e.g. with a big window").
EXTRA_ABBREVIATIONS = {"e.g", "i.e", "etc", "approx", "fig", "no", "est", "dept", "sept", "cf", "al"}


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentences of text[start:end] as trimmed (start, end) spans: Punkt's exact offsets within each line (it knows
    "Dr.", "U.S." and "3 p.m. on Monday"); a line break always ends a sentence. Linear in the length of the text."""
    end = len(text) if end is None else end
    punkt = _punkt()
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        base = start + line.start()
        spans.extend((base + a, base + b) for a, b in punkt.span_tokenize(line.group(0)))
    return [s for s in (_trim(text, a, b) for a, b in spans) if s is not None]


def _trim(text: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if b > a else None


def _paragraphs(doc: Document) -> list[tuple[int, int]]:
    """Non-empty lines, minus residue. Linear: a page can have as many residue lines as lines."""
    skip = sorted(doc.skip)
    starts = [a for a, _ in skip]
    reach = list(itertools.accumulate((b for _, b in skip), max))  # the furthest end of a residue span so far
    out = []
    for m in re.finditer(r"[^\n]+", doc.text):
        span = _trim(doc.text, m.start(), m.end())
        if span is None:
            continue
        i = bisect.bisect_right(starts, span[0])  # residue spans that start at or before the line
        if not (i and reach[i - 1] >= span[1]):  # ...and none of them reaches past its end
            out.append(span)
    return out


def is_heading(text: str) -> bool:
    """A short line without closing punctuation: a section title, not a sentence."""
    line = text.strip()
    return len(line) <= 90 and not re.search(r"[.!?:;,\"”’]$", line) and not line.startswith(("-", "*", "•"))


def chunk_document(doc: Document, max_chars: int = MAX_CHUNK_CHARS) -> list[Chunk]:
    """Chunks of whole paragraphs (a heading stays with what follows it); a long paragraph is split at sentences."""
    pieces: list[tuple[int, int]] = []
    for a, b in _paragraphs(doc):
        if b - a <= max_chars:
            pieces.append((a, b))
            continue
        cur: tuple[int, int] | None = None
        for s, e in sentence_spans(doc.text, a, b):
            if cur and e - cur[0] > max_chars:
                pieces.append(cur)
                cur = None
            cur = (cur[0], e) if cur else (s, e)
        if cur:
            pieces.append(cur)

    boundaries = sorted({*doc.pages[1:], *(start for start, _ in doc.sections)})
    residue = sorted(start for start, _ in doc.skip)
    spans: list[tuple[int, int]] = []
    cur = None
    for a, b in pieces:
        if cur is None:
            cur = (a, b)
            continue
        i = bisect.bisect_right(boundaries, cur[1])
        new_page_or_section = i < len(boundaries) and boundaries[i] <= a
        j = bisect.bisect_left(residue, cur[1])
        gap_has_residue = new_page_or_section or (j < len(residue) and residue[j] < a)
        heading_before = is_heading(doc.text[cur[0] : cur[1]]) and cur[1] - cur[0] < 90
        small = (cur[1] - cur[0]) < max_chars // 3 and b - cur[0] <= max_chars
        if not gap_has_residue and (heading_before or small) and b - cur[0] <= max_chars + 200:
            cur = (cur[0], b)
        else:
            spans.append(cur)
            cur = (a, b)
    if cur:
        spans.append(cur)
    version = doc.content_hash[:12]
    return [Chunk(doc.doc_id, i, a, b, doc.text[a:b], version) for i, (a, b) in enumerate(spans)]
