"""Text out of each file format, with what the file says about itself: one reader per format.

Every reader returns an `Extracted`: the text a citation will point into (paragraphs separated by a blank line),
page start offsets (PDF), the headings or chapters and where they start (DOCX, EPUB, HTML), and the title, author
and date from the file's own metadata. Offsets are exact by construction: the text is assembled here from its
paragraphs, so each page or heading offset is where that piece begins in it. A file that cannot be read raises
`UnreadableFile` with a message that says why and what to do.

Libraries, and why these:
- PDF: pypdf. It extracts text in content-stream order, which is the order the producer wrote it (each column of
  a two-column page in turn, as LaTeX, Word and fpdf2 write them); pdfplumber (pdfminer) sorts characters into
  lines across the whole page, interleaving the columns line by line unless asked to follow the stream. pypdf is
  pure Python, reads the info dict and XMP, and says when a file is encrypted. Wrapped lines are joined into
  paragraphs here (a short line ends one); a hyphen at a line end is kept, not guessed away. No OCR: a PDF with
  no text layer is refused, saying so.
- DOCX: python-docx, reading the body's paragraphs and tables in document order (`iter_inner_content`); a
  paragraph styled Title or Heading N is a section heading. Page headers and footers, footnotes, comments and text
  boxes are left out.
- EPUB: zipfile and lxml, no EPUB library (ebooklib, the usual one, is AGPL-3.0): META-INF/container.xml names
  the package file (OPF), whose spine is read in order, skipping the navigation document. A chapter's title comes
  from the table of contents (the EPUB 3 navigation document, else the EPUB 2 NCX), else from its first heading;
  title, author and date from the package's Dublin Core. Each chapter's XHTML, head and `<style>` rules included,
  goes through the HTML reader (ingest/html.py), after lxml has re-serialised it as HTML so that XHTML's
  self-closed `<script .../>` or `<textarea/>` cannot swallow the rest of the chapter. A book whose chapters
  META-INF/encryption.xml lists as encrypted (DRM) is refused; font obfuscation is not encryption of the text.
  Left out: multiple renditions (the first package file is read) and what is not text (images, media overlays).
"""

from __future__ import annotations

import logging
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import UnreadableFile

log = logging.getLogger(__name__)

MAX_UNZIPPED_BYTES = 500 * 1024 * 1024  # what a .docx/.epub may unpack to: a zip bomb is refused, not unpacked


@dataclass
class Extracted:
    text: str
    title: str = ""
    author: str = ""
    date: str = ""
    pages: list[int] = field(default_factory=list)  # PDF: offset where page i + 1 starts
    sections: list[tuple[int, str]] = field(default_factory=list)  # (offset where it starts, heading or chapter)


class _Builder:
    """Paragraphs joined by a blank line, with the offset of each as it is added."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def add(self, paragraph: str) -> int | None:
        """Append a paragraph (whitespace trimmed); returns its offset, or None if it was empty."""
        paragraph = paragraph.strip()
        if not paragraph:
            return None
        start = self.size + (2 if self.parts else 0)
        self.parts.append(paragraph)
        self.size = start + len(paragraph)
        return start

    def offset(self) -> int:
        """Where the next paragraph will start."""
        return self.size + (2 if self.parts else 0)

    def text(self) -> str:
        return "\n\n".join(self.parts) + "\n" if self.parts else ""


def _iso_date(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    value = str(value).strip()
    m = re.match(r"\d{4}-\d{2}-\d{2}", value)
    return m.group(0) if m else value[:40]


def _clean(value) -> str:
    return " ".join(str(value or "").split())[:300]


# --- PDF -----------------------------------------------------------------------------------------------------------
def read_pdf(path: Path) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd files are ours to report
    name = path.name
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile(f"{name}: the PDF is encrypted with a password; save an unprotected copy, skipped")
        pages = list(reader.pages)
    except UnreadableFile:
        raise
    except (FileNotDecryptedError, DependencyError) as e:
        raise UnreadableFile(f"{name}: the PDF is encrypted and cannot be opened ({e}), skipped") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError, OSError) as e:
        raise UnreadableFile(f"{name}: not a readable PDF, truncated or damaged ({e.__class__.__name__}: {e}); "
                             "re-export or re-download it, skipped") from None
    out = _Builder()
    starts = []
    failed = 0
    for page in pages:
        starts.append(out.offset())
        try:
            raw = page.extract_text() or ""
        except Exception as e:  # one damaged page costs that page, not the document
            log.info("%s: a page could not be read (%s)", name, e)
            failed += 1
            continue
        for paragraph in _pdf_paragraphs(raw):
            out.add(paragraph)
    text = out.text()
    if failed == len(pages) and pages:
        raise UnreadableFile(f"{name}: not a readable PDF (no page could be read); re-export it, skipped")
    if not text.strip():
        raise UnreadableFile(f"{name}: the PDF has no text layer (a scan or images only); OCR is not done here: "
                             "run it through OCR first, skipped")
    if failed:
        log.warning("%s: %d of %d pages could not be read and are left out", name, failed, len(pages))
    title, author, date = _pdf_metadata(reader)
    return Extracted(text=text, title=title, author=author, date=date, pages=starts)


def _pdf_paragraphs(raw: str) -> list[str]:
    """Join a page's wrapped lines into paragraphs. A blank line or a short line (a heading, the end of a
    paragraph: under 70% of the page's usual line length) ends a paragraph."""
    lines = [" ".join(line.split()) for line in raw.replace("\r", "\n").split("\n")]
    lengths = sorted(len(line) for line in lines if line)
    if not lengths:
        return []
    usual = lengths[(len(lengths) * 3) // 4]
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            if current:
                paragraphs.append(current)
            current = ""
            continue
        if not current:
            current = line
        elif current.endswith("-") and len(current) > 1 and current[-2].isalpha():
            current += line  # "well-" + "known": the hyphen stays, no space is invented
        else:
            current += " " + line
        if len(line) < 0.7 * usual:
            paragraphs.append(current)
            current = ""
    if current:
        paragraphs.append(current)
    return paragraphs


def _pdf_metadata(reader) -> tuple[str, str, str]:
    title = author = date = ""
    try:
        info = reader.metadata
    except Exception:  # a damaged info dict: the text is still good
        info = None
    if info is not None:
        title, author = _clean(info.title), _clean(info.author)
        try:
            date = _iso_date(info.creation_date)
        except Exception:  # an unparsable date string
            date = ""
    if not (title and author and date):
        try:
            xmp = reader.xmp_metadata
        except Exception:
            xmp = None
        if xmp is not None:
            try:
                title = title or _clean(next(iter((xmp.dc_title or {}).values()), ""))
                author = author or _clean(", ".join(xmp.dc_creator or []))
                date = date or _iso_date((xmp.dc_date or [None])[0] or xmp.xmp_create_date)
            except Exception:  # malformed XMP
                pass
    if re.match(r"^(untitled|microsoft word - .*|.*\.(docx?|pdf|indd|tex))$", title, re.I):
        title = ""  # a producer's placeholder or a file name, not a title
    return title, author, date


# --- DOCX ----------------------------------------------------------------------------------------------------------
_TEMPLATE_AUTHORS = {"python-docx", "author", "unknown"}  # what templates put there, not a person


def _check_zip(path: Path, what: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnreadableFile(f"{path.name}: not a readable {what}, truncated or damaged ({e}); re-save it, "
                             "skipped") from None
    if unpacked > MAX_UNZIPPED_BYTES:
        raise UnreadableFile(f"{path.name}: unpacks to {unpacked / 2**20:,.0f} MB, over the "
                             f"{MAX_UNZIPPED_BYTES / 2**20:,.0f} MB limit (MAX_UNZIPPED_BYTES), skipped")


def read_docx(path: Path) -> Extracted:
    import docx
    from docx.table import Table

    _check_zip(path, "Word .docx file")
    try:
        document = docx.Document(str(path))
        blocks = list(document.iter_inner_content())
    except Exception as e:  # python-docx raises KeyError, ValueError, lxml and package errors for broken files
        raise UnreadableFile(f"{path.name}: not a readable Word .docx file ({e.__class__.__name__}: {e}); re-save "
                             "it from Word, skipped") from None
    out = _Builder()
    sections: list[tuple[int, str]] = []
    first_title = ""
    for block in blocks:
        if isinstance(block, Table):
            for row in block.rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) not in seen:  # a merged cell is listed once per column it spans
                        seen.add(id(cell._tc))
                        cells.append(" ".join(cell.text.split()))
                out.add(" ".join(c for c in cells if c))
            continue
        text = block.text
        style = block.style
        style_name = (style.name or "") if style is not None else ""
        start = out.add(text)
        if start is not None and (style_name == "Title" or style_name.startswith("Heading")):
            heading = " ".join(text.split())
            sections.append((start, heading))
            if style_name == "Title" and not first_title:
                first_title = heading
    props = document.core_properties
    author = _clean(props.author)
    return Extracted(text=out.text(), title=_clean(props.title) or first_title,
                     author="" if author.lower() in _TEMPLATE_AUTHORS else author,
                     date=_iso_date(props.created), sections=sections)


# --- EPUB ----------------------------------------------------------------------------------------------------------
_CONTAINER_NS = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF_NS = "{http://www.idpf.org/2007/opf}"
_DC_NS = "{http://purl.org/dc/elements/1.1/}"
_NCX_NS = "{http://www.daisy.org/z3986/2005/ncx/}"
_XMLENC_NS = "{http://www.w3.org/2001/04/xmlenc#}"
# Font obfuscation (IDPF, Adobe) is listed in encryption.xml too, but it scrambles only fonts, never the text.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}


class _BadEpub(Exception):
    """What is wrong with the EPUB's structure, said for people."""


@dataclass
class _EpubBook:
    spine: list[str]  # zip paths of the spine's documents, in reading order, the navigation document left out
    toc: dict[str, str]  # zip path -> the first table-of-contents title that points into it
    metadata: dict[str, str]  # Dublin Core element -> its first value


def read_epub(path: Path) -> Extracted:
    from ingest.html import extract

    _check_zip(path, "EPUB")
    try:
        with zipfile.ZipFile(path) as z:
            book = _epub_book(z, path.name)
            chapters = [(name, _zip_read(z, name)) for name in book.spine]
    except _BadEpub as e:
        raise UnreadableFile(f"{path.name}: not a readable EPUB ({e}); re-export it, skipped") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError) as e:  # CRC, inflate errors
        raise UnreadableFile(f"{path.name}: not a readable EPUB ({e.__class__.__name__}: {e}); re-export it, "
                             "skipped") from None
    out = _Builder()
    sections: list[tuple[int, str]] = []
    for name, content in chapters:
        try:
            page = extract(_xhtml_as_html(content))
        except UnreadableFile as e:
            log.warning("%s: chapter %s skipped: %s", path.name, name, e)
            continue
        chapter_start = out.offset()
        base = chapter_start
        added = False
        for paragraph in page.text.split("\n\n"):
            if out.add(paragraph) is not None:
                added = True
        if not added:
            continue
        # Not the chapter's <title>: in most books every chapter's <title> is the book's title.
        chapter = book.toc.get(name) or (page.headings[0][1] if page.headings else "")
        if chapter:
            sections.append((chapter_start, chapter))
        for offset, heading in page.headings:
            if offset > 0:  # the chapter's own first heading is the chapter
                sections.append((base + offset, heading))
    text = out.text()
    if not text.strip():
        raise UnreadableFile(f"{path.name}: the EPUB has no text in its chapters, skipped")
    meta = book.metadata
    return Extracted(text=text, title=meta.get("title", ""), author=meta.get("creator", ""),
                     date=_iso_date(meta.get("date", "")), sections=sections)


def _epub_book(z: zipfile.ZipFile, name: str) -> _EpubBook:
    """container.xml -> the package file (OPF) -> its manifest, spine, Dublin Core and table of contents."""
    container = _zip_xml(z, "META-INF/container.xml")
    opf_path = next((r.get("full-path", "") for r in container.iter(f"{_CONTAINER_NS}rootfile")
                     if r.get("media-type") == "application/oebps-package+xml" and r.get("full-path")), "")
    if not opf_path:
        raise _BadEpub("META-INF/container.xml names no package file")
    opf = _zip_xml(z, opf_path)
    opf_dir = posixpath.dirname(opf_path)
    manifest, spine = opf.find(f"{_OPF_NS}manifest"), opf.find(f"{_OPF_NS}spine")
    if manifest is None or spine is None:
        raise _BadEpub(f"{opf_path} has no {'manifest' if manifest is None else 'spine'}")
    items: dict[str, tuple[str, str, list[str]]] = {}  # id -> (zip path, media type, properties)
    for item in manifest.iter(f"{_OPF_NS}item"):
        href = item.get("href", "")
        if item.get("id") and href:
            items.setdefault(item.get("id", ""), (_epub_join(opf_dir, href), item.get("media-type", ""),
                                                  item.get("properties", "").split()))
    nav = next((p for p, _media, props in items.values() if "nav" in props), "")
    documents = [items[ref.get("idref", "")][0] for ref in spine.iter(f"{_OPF_NS}itemref")
                 if ref.get("idref", "") in items]
    documents = [p for p in documents if p != nav]
    _refuse_encrypted(z, set(documents), name)
    metadata: dict[str, str] = {}
    block = opf.find(f"{_OPF_NS}metadata")
    for element in block if block is not None else []:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.startswith(_DC_NS):
            metadata.setdefault(tag[len(_DC_NS):], _clean(element.text))
    toc = _nav_titles(_zip_read(z, nav), posixpath.dirname(nav)) if nav and nav in z.NameToInfo else {}
    if not toc:  # EPUB 2, or a nav without a toc: the NCX the spine names, else the one in the manifest
        ncx = items.get(spine.get("toc", ""), ("", "", []))[0] or next(
            (p for p, media, _props in items.values() if media == "application/x-dtbncx+xml"), "")
        if ncx and ncx in z.NameToInfo:
            toc = _ncx_titles(_zip_xml(z, ncx), posixpath.dirname(ncx))
    return _EpubBook(spine=documents, toc=toc, metadata=metadata)


def _refuse_encrypted(z: zipfile.ZipFile, documents: set[str], name: str) -> None:
    """DRM (Adobe ADEPT, Readium LCP, ...) lists each encrypted file in META-INF/encryption.xml."""
    if "META-INF/encryption.xml" not in z.NameToInfo:
        return
    for data in _zip_xml(z, "META-INF/encryption.xml").iter(f"{_XMLENC_NS}EncryptedData"):
        method = data.find(f"{_XMLENC_NS}EncryptionMethod")
        if method is not None and method.get("Algorithm", "") in _FONT_OBFUSCATION:
            continue
        for ref in data.iter(f"{_XMLENC_NS}CipherReference"):
            if _epub_join("", ref.get("URI", "").lstrip("/")) in documents:
                raise UnreadableFile(f"{name}: the EPUB's chapters are encrypted (DRM) and cannot be read; use a "
                                     "DRM-free copy, skipped")


def _nav_titles(data: bytes, base: str) -> dict[str, str]:
    """An EPUB 3 navigation document's `<nav epub:type="toc">`, read the way reading systems list it."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.document_fromstring(data, parser=lxml.html.HTMLParser(encoding="utf-8"))
    except (lxml.etree.ParserError, ValueError):
        return {}
    navs = root.xpath("//nav[@*='toc']")
    out: dict[str, str] = {}

    def walk(ol) -> None:
        for li in ol.findall("li") if ol is not None else []:
            link, children = li.find("a"), li.find("ol")
            if link is not None and link.get("href"):
                title = li[0].text_content() if children is not None else link.text_content()
                out.setdefault(_epub_join(base, link.get("href")), _clean(title))
            walk(children)

    if navs:
        walk(navs[0].find("ol"))
    return out


def _ncx_titles(ncx, base: str) -> dict[str, str]:
    """An EPUB 2 NCX's navMap: each navPoint's label and where it points, in document order."""
    out: dict[str, str] = {}
    for point in ncx.iter(f"{_NCX_NS}navPoint"):
        label, content = point.find(f"{_NCX_NS}navLabel/{_NCX_NS}text"), point.find(f"{_NCX_NS}content")
        if content is not None and content.get("src"):
            out.setdefault(_epub_join(base, content.get("src", "")), _clean(label.text if label is not None else ""))
    return out


def _epub_join(base: str, href: str) -> str:
    """The zip path an href (relative to a file in `base`, URL-quoted, maybe with a #fragment) points to."""
    from urllib.parse import unquote

    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))


def _zip_read(z: zipfile.ZipFile, name: str) -> bytes:
    try:
        return z.read(name)
    except KeyError:
        raise _BadEpub(f"{name} is missing") from None


def _zip_xml(z: zipfile.ZipFile, name: str):
    """A container, package, NCX or encryption file parsed leniently (as reading systems do), entities unresolved."""
    import lxml.etree

    parser = lxml.etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = lxml.etree.fromstring(_zip_read(z, name), parser=parser)
    except lxml.etree.XMLSyntaxError:
        root = None
    if root is None:
        raise _BadEpub(f"{name} is not XML")
    return root


def _xhtml_as_html(content: bytes) -> str:
    """A chapter's XHTML re-serialised as HTML (explicit end tags), or decoded as it is if it is not valid XML."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.etree.fromstring(content, parser=lxml.etree.XMLParser(resolve_entities=False, no_network=True,
                                                                          huge_tree=False))
        return lxml.html.tostring(root, method="html", encoding="unicode")
    except (lxml.etree.XMLSyntaxError, ValueError):
        return content.decode("utf-8", errors="replace")
