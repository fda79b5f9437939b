"""The visible text of an HTML page: what a reader sees of the page's own content, one paragraph per line.

The page is parsed by Lexbor (through selectolax), a WHATWG HTML5 parser, so the tree is the one a browser builds:
a `<head>` without `</head>`, a self-closing `<svg/>`, unclosed `<p>` and `<li>` and stray end tags all mean what
they mean in a browser. The walk over that tree then leaves out:

- what never shows: script, style, noscript, template, iframe, object, embed, svg, canvas, form controls
  (button, select, textarea), a `<dialog>` that is not open, and comments;
- what is hidden: the `hidden` attribute, `aria-hidden="true"`, and CSS that hides an element, written inline
  (`style="..."`) or in the page's own `<style>` rules: `display: none`, `visibility: hidden` (a descendant may
  set it back to `visible`), `opacity: 0`, `font-size: 0` (a descendant may set a size again),
  `content-visibility: hidden`, and text pushed 1000px or more off the page (`text-indent` / `left` / `top`).
  CSS is read by tinycss2, so comments (`display:/**/none`), escapes and `!important` do not get past it;
- what is not the page's content: `nav`, `aside`, a page-level `header` / `footer` (one that is not inside an
  article, section, main or aside), the ARIA landmarks navigation, banner, contentinfo, complementary and search,
  and elements whose class or id names them a nav bar, menu, sidebar, breadcrumb or footer. When the page marks
  its content with `<main>` (or `role="main"`), only that is read.

It leaves out, deliberately: external stylesheets (never fetched), `@media` rules, the CSS cascade beyond "a rule
that shows the element wins over one that hides it", scripts that hide or reveal text, text coloured like its
background, clipping (`.sr-only`), and boilerplate that no markup names (a "Related articles" list in a `<div>`).

Cost is linear in the size of the page. An HTML5 parser's cost grows with how deep elements stay open (each new
block scans the open elements), so a cheap pre-pass measures that depth first: unclosed attribute-less inline tags
(`<span>` x 100,000) are unwrapped, and a page still nested deeper than MAX_DEPTH is refused with a clear error
rather than parsed in quadratic time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingest.errors import UnreadableFile

MAX_DEPTH = 512  # elements open at once; browsers stop nesting at 512 too (Chromium's parser limit)

_DROP = {"script", "style", "noscript", "template", "iframe", "frame", "frameset", "object", "embed", "applet",
         "svg", "canvas", "head", "title", "nav", "aside", "button", "select", "textarea", "datalist", "input",
         "audio", "video", "map"}
_BLOCK = {"address", "article", "aside", "blockquote", "body", "br", "caption", "center", "dd", "details", "dialog",
          "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
          "header", "hgroup", "hr", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary", "table",
          "tbody", "tfoot", "thead", "tr", "ul"}
_CELL = {"td", "th"}
_HEADING = {"h1", "h2", "h3", "h4", "h5", "h6"}
_SECTIONING = {"article", "section", "main", "aside", "nav"}  # a header/footer inside one belongs to it
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar"}
# A class or id that names the whole element chrome: "footer", "site-footer", "navbar", "main-menu", "nav-panel".
# Not "content-sidebar-wrap" or "nav-content": a wrapper may hold the content too.
_CHROME = re.compile(r"^(?:[a-z]+[-_])?(?:nav|navbar|navigation|menu|sidebar|footer|breadcrumbs?|skip-?links?)"
                     r"(?:[-_](?:panel|bar|links|menu|list))?$", re.I)
# A "header" div is site chrome when it is mostly links (texinfo's "Next: ..., Up: ..." panel), but asciidoc puts
# the page's title and NAME section in one: so these names count only for a block that is at least half links.
_MAYBE_CHROME = re.compile(r"^(?:[a-z]+[-_])?(?:header|masthead|topbar|top-bar)$", re.I)
_PERMALINK = {"headerlink", "anchorjs-link", "heading-anchor"}  # the "¶" after a Sphinx / MkDocs heading
_HIDING = ("display", "visibility", "opacity", "font-size", "content-visibility", "text-indent", "left", "top")


@dataclass
class PageText:
    """The visible text (paragraphs separated by a blank line) and what the page says about itself."""

    text: str
    title: str = ""
    author: str = ""
    date: str = ""
    headings: list[tuple[int, str]] = field(default_factory=list)  # (offset in text, heading text)


def extract(html: str) -> PageText:
    """Visible text and metadata of a page. Raises UnreadableFile for a page nested deeper than MAX_DEPTH."""
    from selectolax.lexbor import LexborHTMLParser

    html = _bounded(html)
    tree = LexborHTMLParser(html)
    sheet = _Stylesheet(tree)
    out = _Text()
    roots = _main_roots(tree, sheet) or [n for n in (tree.body,) if n is not None]
    for root in roots:
        _walk(root, sheet, out)
    if roots and roots[0] is not tree.body and not out.paragraphs and tree.body is not None:
        _walk(tree.body, sheet, out)  # an empty <main> (filled by a script): read the body after all
    text = "\n\n".join(out.paragraphs) + "\n"
    return PageText(text=text, title=_title(tree), author=_meta(tree, _AUTHOR_META), date=_date(tree),
                    headings=out.headings)


# --- the walk ------------------------------------------------------------------------------------------------------
class _Text:
    """Paragraphs as they are completed, with the offset each will have in the joined text."""

    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.size = 0  # length of the text so far, separators included
        self.buf: list[str] = []
        self.headings: list[tuple[int, str]] = []

    def add(self, s: str) -> None:
        self.buf.append(s)

    def end_paragraph(self) -> None:
        line = " ".join("".join(self.buf).split())
        self.buf = []
        if line:
            self.size += (2 if self.paragraphs else 0) + len(line)
            self.paragraphs.append(line)

    def next_offset(self) -> int:
        return self.size + (2 if self.paragraphs else 0)


@dataclass(frozen=True)
class _State:
    invisible: bool = False  # visibility: hidden (a descendant may say visible)
    sized_zero: bool = False  # font-size: 0 (a descendant may set a size)
    sectioned: bool = False  # inside article / section / main / aside / nav
    pre: bool = False


def _walk(root, sheet: _Stylesheet, out: _Text) -> None:
    # Iterative: a page may nest hundreds of elements deep, past Python's recursion limit.
    stack: list[tuple] = [(root, _State(), None)]
    while stack:
        node, state, exit_of = stack.pop()
        if node is None:  # the exit marker of an element
            tag, start, n_before = exit_of
            if tag in _BLOCK or tag in _HEADING:
                out.end_paragraph()
            if tag in _HEADING and len(out.paragraphs) > n_before:
                out.headings.append((start, " ".join(out.paragraphs[n_before:])))
            continue
        if node.is_text_node:
            if not (state.invisible or state.sized_zero):
                data = node.text_content or ""
                if state.pre:
                    lines = data.split("\n")
                    for i, line in enumerate(lines):
                        if i:
                            out.end_paragraph()
                        out.add(line)
                else:
                    out.add(data)
            continue
        if not node.is_element_node:
            continue  # comments, doctype
        tag = node.tag
        child_state = _enter(node, tag, state, sheet)
        if child_state is None:
            continue
        if tag in _BLOCK or tag in _HEADING:
            out.end_paragraph()
        elif tag in _CELL:
            out.add(" ")
        stack.append((None, state, (tag, out.next_offset(), len(out.paragraphs))))
        children = []
        child = node.first_child
        while child is not None:
            children.append(child)
            child = child.next
        stack.extend((c, child_state, None) for c in reversed(children))


def _enter(node, tag: str, state: _State, sheet: _Stylesheet) -> _State | None:
    """The state inside this element, or None when nothing in it is shown."""
    if tag in _DROP or (tag == "dialog" and "open" not in node.attributes):
        return None
    attrs = node.attributes
    if "hidden" in attrs or (attrs.get("aria-hidden") or "").strip().lower() == "true":
        return None
    if (attrs.get("role") or "").strip().lower() in _DROP_ROLES:
        return None
    if tag in ("header", "footer") and not state.sectioned:
        return None
    names = [(attrs.get("id") or "").strip(), *(attrs.get("class") or "").split()]
    if any(_CHROME.match(name) or name in _PERMALINK for name in names):
        return None
    if any(_MAYBE_CHROME.match(name) for name in names) and _mostly_links(node):
        return None
    style = _declarations(attrs.get("style") or "")
    look = {p: v for p, v in sheet.look(node).items() if p not in style}  # inline style wins over the sheet
    look.update(style)
    if look.get("display") == "none" or look.get("opacity") == "zero" or look.get("content-visibility") == "hidden":
        return None
    if "far" in (look.get("text-indent"), look.get("left"), look.get("top")):
        return None
    invisible = {"hidden": True, "visible": False}.get(look.get("visibility", ""), state.invisible)
    sized_zero = {"zero": True, "size": False}.get(look.get("font-size", ""), state.sized_zero)
    return _State(invisible=invisible, sized_zero=sized_zero,
                  sectioned=state.sectioned or tag in _SECTIONING or attrs.get("role") in ("main", "article"),
                  pre=state.pre or tag in ("pre", "textarea", "listing", "plaintext"))


def _mostly_links(node) -> bool:
    text = len("".join(node.text().split()))
    links = sum(len("".join(a.text().split())) for a in node.css("a"))
    return text > 0 and links >= text / 2


def _main_roots(tree, sheet: _Stylesheet) -> list:
    """The page's `<main>` / role=main elements that are shown (not nested in another), if it marks any."""
    found = tree.css("main, [role=main]")
    ids = {n.mem_id for n in found}
    roots = []
    for node in found:
        shown, parent = True, node.parent
        while parent is not None and parent.is_element_node:
            if parent.mem_id in ids or _enter(parent, parent.tag, _State(sectioned=True), sheet) is None:
                shown = False
                break
            parent = parent.parent
        if shown and _enter(node, node.tag, _State(sectioned=True), sheet) is not None:
            roots.append(node)
    return roots


# --- CSS -----------------------------------------------------------------------------------------------------------
def _declarations(css: str) -> dict[str, str]:
    """The hiding-relevant properties of a declaration list, each as one word: display "none" / "shown",
    visibility "hidden" / "visible", opacity and font-size "zero" / "size", offsets "far" / "near"."""
    if not css or not any(p in css.lower() or "\\" in css for p in _HIDING):
        return {}
    import tinycss2

    out: dict[str, str] = {}
    for decl in tinycss2.parse_blocks_contents(css, skip_comments=True, skip_whitespace=True):
        if decl.type != "declaration" or decl.lower_name not in _HIDING:
            continue
        tokens = [t for t in decl.value if t.type not in ("whitespace", "comment")]
        if not tokens:
            continue
        first = tokens[0]
        word = getattr(first, "lower_value", None)
        number = getattr(first, "value", None) if first.type in ("number", "percentage", "dimension") else None
        name = decl.lower_name
        if name == "display":
            out[name] = "none" if word == "none" else "shown"
        elif name == "visibility":
            out[name] = "hidden" if word in ("hidden", "collapse") else "visible"
        elif name == "content-visibility":
            out[name] = "hidden" if word == "hidden" else "visible"
        elif name in ("opacity", "font-size"):
            out[name] = "zero" if number == 0 else "size"
        elif number is not None:  # text-indent / left / top
            unit = getattr(first, "lower_unit", None) or ""
            far = number <= -1000 if unit in ("px", "") else number <= -100
            out[name] = "far" if far else "near"
    return out


class _Stylesheet:
    """What the page's own `<style>` rules say about each element's visibility.

    Only rules that set one of the hiding properties count; a rule with a pseudo-class or pseudo-element
    (`:hover`, `::before`) is skipped, as is every at-rule (`@media print { ... }`). Where rules disagree about an
    element (`.fade {opacity: 0}` and `.fade.in {opacity: 1}`), the one that shows it wins: when in doubt, text
    is kept."""

    MAX_RULES = 300  # hiding rules matched per page; a page with more is read with the first ones

    def __init__(self, tree) -> None:
        self._by_node: dict[int, dict[str, set[str]]] = {}
        css = "\n".join(node.text() for node in tree.css("style"))
        if not css.strip() or not any(p in css.lower() for p in _HIDING):
            return
        import tinycss2

        rules = 0
        for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
            if rule.type != "qualified-rule":
                continue
            look = _declarations(tinycss2.serialize(rule.content))
            if not look:
                continue
            selector = tinycss2.serialize(rule.prelude).strip()
            if ":" in selector or not selector:
                continue
            rules += 1
            if rules > self.MAX_RULES:
                break
            try:
                matched = tree.css(selector)
            except Exception:  # a selector Lexbor does not support: the rule is skipped
                continue
            for node in matched:
                seen = self._by_node.setdefault(node.mem_id, {})
                for prop, value in look.items():
                    seen.setdefault(prop, set()).add(value)

    def look(self, node) -> dict[str, str]:
        seen = self._by_node.get(node.mem_id)
        if not seen:
            return {}
        shown = {"display": "shown", "visibility": "visible", "opacity": "size", "font-size": "size",
                 "content-visibility": "visible", "text-indent": "near", "left": "near", "top": "near"}
        return {p: (shown[p] if shown[p] in values else next(iter(values))) for p, values in seen.items()}


# --- metadata ------------------------------------------------------------------------------------------------------
_AUTHOR_META = ("author", "dc.creator", "citation_author", "article:author")
_DATE_META = ("article:published_time", "date", "dc.date", "dc.date.issued", "citation_publication_date",
              "pubdate", "publish-date")


def _title(tree) -> str:
    for node in tree.css("title"):
        parent = node.parent
        if parent is not None and parent.tag == "head":
            return " ".join(node.text().split())
    return _meta(tree, ("og:title",))


def _meta(tree, names: tuple[str, ...]) -> str:
    for node in tree.css("meta"):
        key = (node.attributes.get("name") or node.attributes.get("property") or "").strip().lower()
        value = " ".join((node.attributes.get("content") or "").split())
        if key in names and value and not value.startswith(("http://", "https://")):
            return value[:200]
    return ""


def _date(tree) -> str:
    value = _meta(tree, _DATE_META)
    if not value:
        node = tree.css_first("time[datetime]")
        value = (node.attributes.get("datetime") or "").strip() if node is not None else ""
    m = re.match(r"\d{4}-\d{2}-\d{2}", value)
    return m.group(0) if m else value[:40]


# --- the depth pre-pass --------------------------------------------------------------------------------------------
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
         "param", "keygen", "basefont", "bgsound", "frame", "image"}
_RAW = {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript"}
# An element of this kind closes an open one of the same kind (or its sibling kind) unless a container between
# them (the second set) starts a new level: "<li>a<li>b", "<td>a<td>b", "<p>a<p>b".
_IMPLIED = {"p": ("p", ()), "li": ("li", ("ul", "ol", "menu")), "dt": ("dd dt", ("dl",)),
            "dd": ("dd dt", ("dl",)), "option": ("option", ("select", "datalist")), "tr": ("tr", ("table",)),
            "td": ("td th", ("tr", "table")), "th": ("td th", ("tr", "table")),
            "thead": ("thead tbody tfoot", ("table",)), "tbody": ("thead tbody tfoot", ("table",)),
            "tfoot": ("thead tbody tfoot", ("table",)), "h1": ("h1 h2 h3 h4 h5 h6", ()),
            "h2": ("h1 h2 h3 h4 h5 h6", ()), "h3": ("h1 h2 h3 h4 h5 h6", ()), "h4": ("h1 h2 h3 h4 h5 h6", ()),
            "h5": ("h1 h2 h3 h4 h5 h6", ()), "h6": ("h1 h2 h3 h4 h5 h6", ())}
_CLOSES_P = _BLOCK - {"br", "body", "caption", "tbody", "tfoot", "thead", "tr", "legend", "summary", "dd", "dt"}
# No quote handling: a ">" inside an attribute value only ends that tag early. Searches end at the page's last
# ">", so every "<name" found has a ">" after it and no search runs to the end of the page and back.
_TAG = re.compile(r"<!--|<(/?)([a-zA-Z][a-zA-Z0-9:-]*)([^>]*)>")
_PLAIN_INLINE = re.compile(r"</?(?:span|b|i|u|s|em|strong|font|small|big|code|tt|a|abbr|cite|q|mark|sub|sup|"
                           r"time|label|var|kbd|samp|dfn|bdi|bdo|data|ins|del|strike|nobr)\s*>", re.I)


def _bounded(html: str) -> str:
    """The page, or the page with its bare inline tags unwrapped when they nest too deep; raises UnreadableFile
    when it still nests more than MAX_DEPTH elements deep (an HTML5 parser would take quadratic time)."""
    depth = _depth(html)
    if depth <= MAX_DEPTH:
        return html
    unwrapped = _PLAIN_INLINE.sub("", html)  # "<span>" and "<b>" without attributes change nothing that is shown
    depth = _depth(unwrapped)
    if depth <= MAX_DEPTH:
        return unwrapped
    raise UnreadableFile(f"nests more than {MAX_DEPTH} elements deep (unclosed tags?); a page this broken is not "
                         "read: repair it or save it as text")


def _depth(html: str) -> int:
    """How deep elements stay open, as an HTML5 parser would keep them (approximately, a little high rather than
    low), stopping once past MAX_DEPTH. Linear: each element is pushed and popped once, and no scan goes deeper
    than MAX_DEPTH."""
    stack: list[str] = []
    open_count: dict[str, int] = {}
    foreign = 0  # inside svg / math, where "<path/>" closes itself
    deepest = 0
    pos, n = 0, len(html)
    last = html.rfind(">") + 1

    def pop_to(i: int) -> None:
        nonlocal foreign
        while len(stack) > i:
            tag = stack.pop()
            open_count[tag] -= 1
            if tag in ("svg", "math"):
                foreign -= 1

    while pos < n:
        m = _TAG.search(html, pos, last)
        if m is None:
            break
        if m.group(0) == "<!--":
            end = html.find("-->", m.end())
            pos = n if end < 0 else end + 3
            continue
        pos = m.end()
        closing, tag, rest = m.group(1), m.group(2).lower(), m.group(3)
        if closing:
            if open_count.get(tag):
                pop_to(len(stack) - 1 - stack[::-1].index(tag))
            continue
        if tag in _VOID:
            continue
        if rest.rstrip().endswith("/") and foreign:
            continue
        if tag in _RAW:
            end = _find_ci(html, f"</{tag}", pos)
            pos = n if end < 0 else end
            continue
        implied = _IMPLIED.get(tag)
        if implied:
            kinds, boundaries = implied
            for i in range(len(stack) - 1, -1, -1):
                if stack[i] in boundaries:
                    break
                if stack[i] in kinds.split():
                    pop_to(i)
                    break
        if tag in _CLOSES_P and open_count.get("p"):
            pop_to(len(stack) - 1 - stack[::-1].index("p"))
        stack.append(tag)
        open_count[tag] = open_count.get(tag, 0) + 1
        if tag in ("svg", "math"):
            foreign += 1
        deepest = max(deepest, len(stack))
        if deepest > MAX_DEPTH:
            return deepest
    return deepest


_END_TAGS: dict[str, re.Pattern] = {}


def _find_ci(text: str, needle: str, start: int) -> int:
    """`text.lower().find(needle, start)` without lowering the whole page for every raw-text element."""
    pattern = _END_TAGS.get(needle) or _END_TAGS.setdefault(needle, re.compile(re.escape(needle), re.I))
    m = pattern.search(text, start)
    return m.start() if m else -1
