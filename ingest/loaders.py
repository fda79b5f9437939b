"""Read article files into `Document`s: text, metadata, pages and sections, and the spans worth indexing.

A document's `text` is what citations point into: for `.txt` and `.md` it is the file's content exactly as
decoded from UTF-8, so `text[a:b]` is a slice of the original file; for `.html`, `.pdf`, `.docx` and `.epub` it
is the text extracted from the file (ingest/html.py, ingest/formats.py), since raw markup or a PDF's bytes are not
something a reader can check. A PDF document knows where each page starts (`pages`), a DOCX, EPUB or HTML one the
headings or chapters it has (`sections`). Title, author and date come from the file's own metadata where it has
them (HTML meta tags, the PDF info dict or XMP, DOCX core properties, EPUB Dublin Core), else from the text.

Scraped residue (a tag line, "3 min read", a trailing "Published:") is not removed from `text`: it is listed in
`skip` so the chunker leaves it out without moving any offset. A file that cannot be read (binary, not UTF-8,
corrupt, encrypted, scanned, over the size limit) raises `UnreadableFile`, whose message is one line for the
ingest report. This module does no chunking and no embedding.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import UnreadableFile
from ingest.formats import Extracted, read_docx, read_epub, read_pdf
from ingest.html import extract as extract_html

log = logging.getLogger(__name__)

FORMATS = {".txt": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".pdf": "pdf",
           ".docx": "docx", ".epub": "epub"}
SUFFIXES = tuple(FORMATS)
MAX_FILE_BYTES = 50 * 1024 * 1024  # a PDF, DOCX or EPUB larger than this is skipped, saying so
MAX_TEXT_BYTES = 10 * 1024 * 1024  # a .txt, .md or .html file larger than this (some 2,500 pages of prose) too
_READERS = {"pdf": read_pdf, "docx": read_docx, "epub": read_epub}

__all__ = ["Document", "FORMATS", "MAX_FILE_BYTES", "MAX_TEXT_BYTES", "SUFFIXES", "UnreadableFile", "find_files",
           "html_to_text", "load_document", "read_text"]


@dataclass
class Document:
    doc_id: str
    path: str
    text: str
    title: str
    author: str = ""
    date: str = ""
    skip: list[tuple[int, int]] = field(default_factory=list)  # residue spans the chunker must leave out
    format: str = "txt"  # "txt", "md", "html", "pdf", "docx" or "epub"
    pages: list[int] = field(default_factory=list)  # PDF: the offset where page i + 1 starts; [] otherwise
    sections: list[tuple[int, str]] = field(default_factory=list)  # (offset, heading or chapter), in order

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def page_at(self, offset: int) -> int | None:
        """The page (from 1) that text[offset] is on, or None for a document without pages."""
        return bisect.bisect_right(self.pages, offset) if self.pages else None

    def section_at(self, offset: int) -> str:
        """The heading or chapter that text[offset] sits under ("" before the first, or without sections)."""
        i = bisect.bisect_right([start for start, _ in self.sections], offset)
        return self.sections[i - 1][1] if i else ""


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise UnreadableFile(f"{path.name}: looks binary, skipped")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableFile(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start}), skipped") from None
    return text[1:] if text.startswith("\ufeff") else text


def load_document(path: Path) -> Document:
    """Load one file. Raises UnreadableFile (one line saying why) for a file that cannot be read as an article."""
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = FORMATS.get(suffix, "txt")
    limit = MAX_FILE_BYTES if fmt in _READERS else MAX_TEXT_BYTES
    size = path.stat().st_size
    if size > limit:
        name = "MAX_FILE_BYTES" if fmt in _READERS else "MAX_TEXT_BYTES"
        raise UnreadableFile(f"{path.name}: {_size(size)}, over the {_size(limit)} limit for a .{fmt} file ({name} "
                             "in ingest/loaders.py), skipped")
    if fmt in _READERS:
        got = _READERS[fmt](path)
    elif fmt == "html":
        try:
            page = extract_html(read_text(path))
        except UnreadableFile as e:
            raise UnreadableFile(f"{path.name}: {e}, skipped") from None
        got = Extracted(text=page.text, title=page.title, author=page.author, date=page.date,
                        sections=page.headings)
    else:
        got = Extracted(text=read_text(path))
    text = got.text
    lines = _lines(text)
    skip = _residue(text, lines)
    title, title_line = _find_title(text, lines, skip, suffix, got.title)
    author = got.author or _find_author(text, lines, title)
    date = got.date or _find_date(text)
    if title_line is not None:
        skip.append(title_line)
        skip += _signature(text, lines, title)
    return Document(
        doc_id=path.stem,
        path=str(path),
        text=text,
        title=title or _derive_title(text, skip),
        author=author,
        date=date,
        skip=sorted(skip),
        format=fmt,
        pages=got.pages,
        sections=got.sections,
    )


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MB".replace(".0 MB", " MB") if n >= 2**20 else f"{n:,} bytes"


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line, end excluding the newline.

    Lines end at "\n" only, as they do for the chunker: `str.splitlines` also breaks at "\r", "\u2028" and
    other separators, and a residue line found that way sat inside a chunker line, so it ended up in a chunk.
    """
    out, pos = [], 0
    for line in re.findall(r"[^\n]*\n|[^\n]+$", text):
        stripped = line.rstrip("\r\n")
        out.append((pos, pos + len(stripped)))
        pos += len(line)
    return out


_TAG_LINE = re.compile(r"^[a-z0-9][a-z0-9\-]{15,}$")  # "aianthropiccybersecurityindustry-trends"
_READ_TIME = re.compile(r"^\W*\d+\s*min(ute)?s?\s+read\W*$", re.I)
_PUBLISHED = re.compile(r"^\W*(published|posted|updated)\s*:?\s*\W*$", re.I)
_SHARE = re.compile(r"^\W*(share|tweet|subscribe|sign up|advertisement)\W*$", re.I)


def _residue(text: str, lines: list[tuple[int, int]]) -> list[tuple[int, int]]:
    skip = []
    for i, (a, b) in enumerate(lines):
        line = text[a:b].strip()
        if not line:
            continue
        if _READ_TIME.match(line) or _PUBLISHED.match(line) or _SHARE.match(line):
            skip.append((a, b))
        elif i < 3 and _TAG_LINE.match(line):
            skip.append((a, b))
    return skip


def _is_heading(line: str) -> bool:
    return 0 < len(line) <= 160 and not re.search(r"[.!?:,;]$", line) and len(line.split()) >= 2


def _find_title(
    text: str, lines: list[tuple[int, int]], skip: list[tuple[int, int]], suffix: str, meta_title: str
) -> tuple[str, tuple[int, int] | None]:
    if meta_title:  # the file's own metadata (HTML <title>, PDF info, DOCX core properties, EPUB DC)
        return meta_title, None
    skipped = set(skip)  # a page of "Share" lines has as many residue lines as lines: no list scans per line
    i = next((i for i, (a, b) in enumerate(lines) if (a, b) not in skipped and text[a:b].strip()), None)
    if i is None:
        return "", None
    a, b = lines[i]
    first = text[a:b].strip()
    if suffix in (".md", ".markdown") and first.startswith("#"):
        return first.lstrip("#").strip(), (a, b)
    # A title is a short heading-like first line followed by a blank line (prose starts straight away).
    nxt = lines[i + 1] if i + 1 < len(lines) else None
    followed_by_blank = nxt is None or not text[nxt[0] : nxt[1]].strip()
    if _is_heading(first) and followed_by_blank:
        return first, (a, b)
    return "", None


_AUTHOR_BY = re.compile(r"^\s*by\s+([A-Z][\w.'\-]+(?:\s+[A-Za-z][\w.'\-]+){0,4})\s*$", re.M)


def _find_author(text: str, lines: list[tuple[int, int]], title: str) -> str:
    m = _AUTHOR_BY.search(text[:2000])
    if m:
        return m.group(1).strip()
    # A closing signature line "<title> — <Name>", as blogs add when scraped.
    for a, b in reversed(lines[-3:]):
        name = _byline(text[a:b].strip(), title)
        if name:
            return name
    return ""


def _byline(line: str, title: str) -> str:
    """The name in a signature line "<title> — <Name>" (a name of one to five words), else ""."""
    if not title or not line.startswith(title) or "—" not in line[len(title) :]:
        return ""
    name = line[len(title) :].split("—", 1)[1].strip()
    return name if 0 < len(name.split()) <= 5 else ""


def _signature(text: str, lines: list[tuple[int, int]], title: str) -> list[tuple[int, int]]:
    """A last line that repeats the title with a byline, as scraped blog pages end; a last paragraph that only
    starts with the title's words ("Wombats dig burrows" under "# Wombats") is text, and stays."""
    content = [(a, b) for a, b in lines if text[a:b].strip()]
    if content and content[-1] != content[0] and _byline(text[slice(*content[-1])].strip(), title):
        return [content[-1]]
    return []


_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}}|(?:{_MONTHS})\s+\d{{1,2}},\s+\d{{4}}|\d{{1,2}}\s+(?:{_MONTHS})\s+\d{{4}})\b"
)


def _find_date(text: str) -> str:
    m = _DATE.search(text[:3000])
    return m.group(1) if m else ""


def _derive_title(text: str, skip: list[tuple[int, int]]) -> str:
    """A readable title for an untitled article: its first sentence, shortened at a word boundary."""
    start = 0
    for a, b in sorted(skip):
        if a <= start + 1 and b >= start:
            start = b
    body = " ".join(text[start:].split())
    first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0] if body else ""
    first = re.sub(r"^(Yesterday|Today|Picture this|This week|Last week),?:?\s+", "", first)
    if len(first) > 80:
        first = first[:80].rsplit(" ", 1)[0].rstrip(",;:—- ") + "…"
    return first[:1].upper() + first[1:] if first else "Untitled"


def html_to_text(html: str) -> tuple[str, str]:
    """(visible text with one paragraph per line, page title): see ingest/html.py."""
    page = extract_html(html)
    return page.text, page.title


def find_files(folder: Path) -> list[Path]:
    """Article files under `folder`, sorted; follows no symlink that leads outside it."""
    root = folder.resolve()
    out = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        real = path.resolve()
        if not real.is_relative_to(root):
            log.warning("%s: a link that leads outside the corpus folder, skipped", path.name)
            continue
        if real.is_file():
            out.append(path)
    return out
