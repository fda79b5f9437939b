"""Read article files into `Document`s: text, metadata, and the spans worth indexing.

A document's `text` is what citations point into: for `.txt` and `.md` it is the file's content exactly as
decoded from UTF-8, so `text[a:b]` is a slice of the original file; for `.html` it is the visible text extracted
from the page (scripts, styles and hidden elements dropped), since raw markup is not something a reader can check.

Scraped residue (a tag line, "3 min read", a trailing "Published:") is not removed from `text`: it is listed in
`skip` so the chunker leaves it out without moving any offset. This module does no chunking and no embedding.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")


@dataclass
class Document:
    doc_id: str
    path: str
    text: str
    title: str
    author: str = ""
    date: str = ""
    skip: list[tuple[int, int]] = field(default_factory=list)  # residue spans the chunker must leave out

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


class UnreadableFile(ValueError):
    """A file that is binary or not UTF-8; ingest skips it with a warning."""


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
    """Load one file. Raises UnreadableFile for binary or non-UTF-8 content."""
    raw = read_text(path)
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        text, html_title = html_to_text(raw)
    else:
        text, html_title = raw, ""
    lines = _lines(text)
    skip = _residue(text, lines)
    title, title_line = _find_title(text, lines, skip, suffix, html_title)
    author = _find_author(text, lines, title)
    date = _find_date(text)
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
    )


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
    text: str, lines: list[tuple[int, int]], skip: list[tuple[int, int]], suffix: str, html_title: str
) -> tuple[str, tuple[int, int] | None]:
    if html_title:
        return html_title, None
    content = [(a, b) for a, b in lines if text[a:b].strip() and (a, b) not in skip]
    if not content:
        return "", None
    a, b = content[0]
    first = text[a:b].strip()
    if suffix in (".md", ".markdown") and first.startswith("#"):
        return first.lstrip("#").strip(), (a, b)
    # A title is a short heading-like first line followed by a blank line (prose starts straight away).
    nxt = lines[lines.index((a, b)) + 1] if lines.index((a, b)) + 1 < len(lines) else None
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
        line = text[a:b].strip()
        if title and line.startswith(title) and "—" in line[len(title) :]:
            name = line[len(title) :].split("—", 1)[1].strip()
            if 0 < len(name.split()) <= 5:
                return name
    return ""


def _signature(text: str, lines: list[tuple[int, int]], title: str) -> list[tuple[int, int]]:
    """A last line that repeats the title (with a byline), as scraped blog pages end."""
    content = [(a, b) for a, b in lines if text[a:b].strip()]
    if content and content[-1] != content[0] and text[slice(*content[-1])].strip().startswith(title):
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


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; drops script, style, template, head and hidden elements."""

    DROP = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "header",
             "footer", "blockquote", "pre", "ul", "ol", "table", "hr"}
    VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # per open element: its tag, and is it dropped?
        self.title: list[str] = []
        self.in_title = False

    def _dropped(self) -> bool:
        return any(dropped for _, dropped in self.stack)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        hidden = (
            "hidden" in a
            or a.get("aria-hidden") == "true"
            or re.search(r"display\s*:\s*none|visibility\s*:\s*hidden", a.get("style", ""), re.I) is not None
        )
        if tag == "title":
            self.in_title = True
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag not in self.VOID:
            self.stack.append((tag, tag in self.DROP or hidden))

    def handle_startendtag(self, tag, attrs):
        # HTML ignores the slash of "<div hidden/>" on a non-void element: what follows is inside it, as a browser
        # shows it, so a dropped element stays open (treating it as empty made the hidden text visible).
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and not (self.stack and self.stack[-1] == (tag, True)):
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        if tag in self.VOID:
            return
        # Close the matching open element and whatever was left open inside it; a stray end tag closes nothing.
        # (Popping one element per end tag let a stray "</p>" inside a hidden <div> end the hiding.)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title.append(data)
        elif not self._dropped():
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(visible text with one paragraph per line, page title)."""
    p = _HTMLText()
    p.feed(html)
    p.close()
    lines = [" ".join(line.split()) for line in "".join(p.parts).split("\n")]
    text = "\n\n".join(line for line in lines if line)
    return text + "\n", " ".join("".join(p.title).split())


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
