"""What the web UI does, as plain functions: ask (streaming, optionally scoped to some documents), show a cited
passage, pick a collection, upload files into it (or into a new one), list and remove its documents, re-ingest.

Every function here takes `Settings` and plain values and returns strings of HTML or chat messages, so it is
tested in-process without Gradio or a server; ui/app.py only lays out components and wires them to these.
All text that comes from a document, the model or the user is escaped before it is put into HTML: nothing here
ever emits markup it did not write itself. Citation links carry their target in `href` ("#cite-<turn>-<n>" or
"#src-<turn>-<n>") because the chat sanitizer strips data-* attributes; app.py turns a click into `show_passage`.

Deliberately left out: Gradio imports, layout and CSS (ui/app.py), and any answering logic (rag/).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import NamedTuple

from rag import Answer, Citation, RagError, Settings, UserError, pipeline
from rag.answer import clean_question
from rag.settings import BUNDLED_CORPUS
from ui.collections import collection_settings, collections, new_collection_settings

log = logging.getLogger(__name__)

CONTEXT_CHARS = 600  # at most this much of the paragraph is shown on each side of a quote
_REF = re.compile(r"^#?(cite|src)-(\d{1,9})-(\d{1,9})$")  # bounded: int() of 4,300+ digits raises
_MARKER = re.compile(r"\[(\d+)\]")


@dataclass
class Turn:
    """One answered question of a conversation; a citation link names its turn by position."""

    question: str
    answer: Answer
    settings: Settings | None = None  # the collection that answered: its citations are looked up there


class View(NamedTuple):
    """What one step of `ask` shows; None means "leave that part of the page as it is"."""

    chat: list[dict] | None
    turns: list[Turn] | None
    status: str | None
    sources: str | None
    timings: str | None
    question: str | None


def _h(text: object) -> str:
    return escape(str(text), quote=True)


# --- status line -----------------------------------------------------------------------------------------------
def status_html(message: str, kind: str = "info") -> str:
    """A one-line status; kind is "info", "waiting" or "error" (errors are announced to screen readers)."""
    if not message:
        return ""
    role = "alert" if kind == "error" else "status"
    return f'<div class="rag-status rag-{_h(kind)}" role="{role}">{_h(message)}</div>'


# --- chat -------------------------------------------------------------------------------------------------------
def history(turns: list[Turn]) -> list[dict]:
    """The conversation so far in the shape `Pipeline.stream(question, history)` takes."""
    out: list[dict] = []
    for t in turns:
        out += [{"role": "user", "content": t.question}, {"role": "assistant", "content": t.answer.text}]
    return out


def chat_messages(turns: list[Turn], question: str | None = None, draft: str = "") -> list[dict]:
    """Chat messages (HTML content) for the answered turns, then a question in progress and its streamed draft.

    Until the first token there is no answer message, so the chat shows its own "pending" dots.
    """
    out: list[dict] = []
    for i, t in enumerate(turns):
        out.append({"role": "user", "content": _h(t.question)})
        out.append({"role": "assistant", "content": render_answer(t.answer, i)})
    if question is not None:
        out.append({"role": "user", "content": _h(question)})
        if draft:
            out.append({"role": "assistant", "content": draft_html(draft)})
    return out


def draft_html(text: str) -> str:
    """The answer as it streams in: plain escaped text; markers become links only once it is verified."""
    return f'<span class="rag-draft">{_h(text)}</span>'


def _link(kind: str, turn: int, number: int, label: str, title: str) -> str:
    return f'<a class="cite" href="#{kind}-{turn}-{number}" title="{_h(title)}">{label}</a>'


def _where(c: Citation) -> str:
    """ "page 3 · Chapter Two" beside a citation's title, for a document that has pages or sections ("" if not)."""
    parts = [f"page {c.page}" if c.page else "", c.section]
    label = " · ".join(p for p in parts if p)
    return f' <span class="rag-where">({_h(label)})</span>' if label else ""


def _with_links(text: str, turn: int, citations: dict[int, Citation]) -> str:
    """Escape a sentence and turn its [n] markers (only those of real citations) into links."""

    def link(m: re.Match) -> str:
        c = citations.get(int(m.group(1)))
        return _link("cite", turn, c.number, f"[{c.number}]", f"Show the passage: {c.title}") if c else m.group(0)

    return _MARKER.sub(link, _h(text))


def render_answer(answer: Answer, turn: int) -> str:
    """The verified answer as HTML: clickable markers, unsupported sentences flagged, abstentions with passages."""
    if answer.abstained:
        items = "".join(
            f"<li>{_link('src', turn, c.number, _h(c.title), 'Show this passage')}{_where(c)}: "
            f"<q>{_h(_shorten(c.quote, 160))}</q></li>"
            for c in answer.sources
        )
        closest = f'<p>Closest passages:</p><ol class="rag-closest">{items}</ol>' if items else ""
        return (
            f'<div class="rag-abstained"><p><strong>{_h(answer.text)}</strong> The articles do not answer this, '
            f"so nothing was made up.</p>{closest}</div>"
        )
    by_number = {c.number: c for c in answer.citations}
    if not answer.sentences:
        return f'<div class="rag-answer">{_with_links(answer.text, turn, by_number)}</div>'
    parts = []
    for s in answer.sentences:
        body = _with_links(s.text, turn, by_number)
        if s.supported:
            parts.append(f'<span class="rag-sentence">{body}</span>')
        else:
            parts.append(
                f'<span class="rag-unsupported" title="The articles do not support this sentence">{body}</span> '
                '<em class="rag-flag">(⚠ not supported by the articles)</em>'
            )
    return f'<div class="rag-answer">{" ".join(parts)}</div>'


def render_sources(answer: Answer | None, turn: int) -> str:
    """The side list of what the last answer cites (or, for an abstention, the closest passages)."""
    if answer is None:
        return '<p class="rag-muted">The sources of an answer appear here.</p>'
    kind, heading, listed = (
        ("src", "Closest passages", answer.sources) if answer.abstained else ("cite", "Sources", answer.citations)
    )
    if not listed:
        return f'<p class="rag-muted">{heading}: none.</p>'
    items = "".join(
        f"<li>{_link(kind, turn, c.number, f'[{c.number}] {_h(c.title)}', 'Show this passage in context')}"
        f'{_where(c)}<br><q class="rag-muted">{_h(_shorten(c.quote, 200))}</q></li>'
        for c in listed
    )
    return f'<p><strong>{heading}</strong> (click one to read it in context)</p><ol class="rag-sources">{items}</ol>'


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rsplit(" ", 1)[0] + "…"


# --- the passage viewer -----------------------------------------------------------------------------------------
def find_citation(turns: list[Turn], ref: str) -> Citation | None:
    """The citation a link ("#cite-<turn>-<n>" or "#src-<turn>-<n>") points to, or None."""
    m = _REF.match(ref or "")
    if not m:
        return None
    kind, turn, number = m.group(1), int(m.group(2)), int(m.group(3))
    if turn >= len(turns):
        return None
    answer = turns[turn].answer
    listed = answer.citations if kind == "cite" else answer.sources
    return next((c for c in listed if c.number == number), None)


def paragraph_around(text: str, start: int, end: int, limit: int = CONTEXT_CHARS) -> tuple[str, str]:
    """The text of the paragraph(s) before and after text[start:end], clipped to `limit` characters a side."""
    a = text.rfind("\n", 0, start) + 1
    b = text.find("\n", end)
    before, after = text[a:start], text[end : len(text) if b < 0 else b]
    if len(before) > limit:
        before = "…" + before[-limit:].split(" ", 1)[-1]
    if len(after) > limit:
        after = after[:limit].rsplit(" ", 1)[0] + "…"
    return before, after


def render_passage(c: Citation, doc_text: str | None, doc_path: str, corpus: Path, author: str = "",
                   date: str = "") -> str:
    """A cited passage inside its paragraph with the quoted span in <mark>, under its title, byline and file."""
    try:
        shown_path = str(Path(doc_path).resolve().relative_to(Path(corpus).resolve()))
    except (ValueError, OSError):
        shown_path = Path(doc_path).name if doc_path else c.doc_id
    header = (
        f'<h3 class="rag-title">{_h(c.title)}</h3>'
        + (f'<p class="rag-byline">{_h(" · ".join(x for x in (author, date) if x))}</p>' if author or date else "")
        + f'<p class="rag-file">[{c.number}] file <code>{_h(shown_path)}</code>{_where(c)}, '
        f"characters {c.char_start:,}–{c.char_end:,}</p>"
    )
    if doc_text is not None and doc_text[c.char_start : c.char_end] == c.quote:
        before, after = paragraph_around(doc_text, c.char_start, c.char_end)
        body = f'<p class="rag-context">{_h(before)}<mark>{_h(c.quote)}</mark>{_h(after)}</p>'
    else:  # the document changed or went away since this answer: show what was cited, and say so
        body = (
            f'<p class="rag-context"><mark>{_h(c.quote)}</mark></p><p class="rag-muted">The document has '
            "changed since this answer was given (re-ingested); the quote is shown as it was cited.</p>"
        )
    return f'<article class="rag-passage">{header}{body}</article>'


def show_passage(settings: Settings, turns: list[Turn], ref: str) -> str:
    """The passage viewer's content for a clicked citation link."""
    c = find_citation(turns or [], ref)
    if c is None:
        return status_html("That citation belongs to an earlier conversation: ask again to see its sources.", "error")
    m = _REF.match(ref)
    if m is not None:  # find_citation found it, so the ref parsed
        settings = turns[int(m.group(2))].settings or settings  # the collection that gave this answer
    try:
        record = pipeline(settings).documents().get(c.doc_id)
    except RagError as e:
        return status_html(str(e), "error")
    except Exception as e:  # a store failure: a message in the page, the details in the log
        log.exception("showing a passage failed")
        return status_html(_unexpected("showing the passage", e), "error")
    if record is None:
        return render_passage(c, None, "", settings.corpus)
    return render_passage(c, record.text, record.path, settings.corpus, record.author, record.date)


# --- asking -----------------------------------------------------------------------------------------------------
POLL_SECONDS = 0.25  # how often a request that has no token yet re-checks whether it is waiting for the model


class _Line:
    """The questions this process is answering, oldest first: tells a request how many are ahead of it.

    The local backends answer one request at a time (their `lock`), so a request that has others ahead of it
    while the lock is held is waiting for the model, not working.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: list[object] = []

    @contextmanager
    def join(self) -> Iterator[Callable[[], int]]:
        ticket = object()
        with self._lock:
            self._tickets.append(ticket)
        try:
            yield lambda: self._ahead(ticket)
        finally:
            with self._lock:
                self._tickets.remove(ticket)

    def size(self) -> int:
        with self._lock:
            return len(self._tickets)

    def _ahead(self, ticket: object) -> int:
        with self._lock:
            return self._tickets.index(ticket)


_line = _Line()


def _pump(items: Iterator, out: queue.Queue, stop: threading.Event) -> None:
    """Run the pipeline's stream in a worker thread so the page can be told it is waiting meanwhile."""
    try:
        for item in items:
            if stop.is_set():  # the page went away: stop generating (closing releases the model)
                break
            out.put(("item", item))
        out.put(("end", None))
    except BaseException as e:  # handed to the page's thread, which reports it
        out.put(("error", e))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def queued(
    settings: Settings, question: str, turns: list[Turn] | None, capacity: int
) -> tuple[list[dict] | None, str | None]:
    """Echo the question at once, before the queue starts `ask` for it: (chat, status), or Nones to leave the page.

    `capacity` is how many questions the app answers at once; beyond it, the new question waits in line.
    """
    try:
        question = clean_question(question or "", settings.max_question_chars)
    except RagError:
        return None, None  # `ask` reports it
    busy = _line.size()
    status = (
        f"Waiting in line: {busy} question{'s are' if busy > 1 else ' is'} being answered before yours."
        if busy >= capacity
        else "Reading the articles…"
    )
    return chat_messages(list(turns or []), question), status_html(status, "waiting")


def ask(settings: Settings, question: str, turns: list[Turn] | None,
        documents: list[str] | None = None) -> Iterator[View]:
    """Answer `question` as a follow-up to `turns`: yields the page as the answer streams, then the verified one.

    `documents` (doc ids of the settings' collection) keeps the question to those documents; empty or None: all.
    """
    turns = list(turns or [])
    before = chat_messages(turns)

    def failed(message: str) -> View:
        return View(before, None, status_html(message, "error"), None, None, None)

    def pending(draft: str, status: str) -> View:
        return View(chat_messages(turns, question, draft), None, status_html(status, "waiting"), None, None, None)

    try:
        question = clean_question(question or "", settings.max_question_chars)
        pipe = pipeline(settings)
        lock = pipe.llm().lock  # llama.cpp and Ollama answer one request at a time
    except RagError as e:
        yield failed(str(e))
        return
    draft, answer, error = "", None, None
    items: queue.Queue = queue.Queue()
    stop = threading.Event()
    with _line.join() as ahead:
        scoped = {"documents": list(documents)} if documents else {}  # unscoped: the whole collection
        threading.Thread(
            target=_pump, args=(pipe.stream(question, history(turns), cancel=stop, **scoped), items, stop),
            daemon=True, name="rag-ask",
        ).start()
        try:
            while True:
                try:
                    kind, value = items.get(timeout=POLL_SECONDS if not draft else None)
                except queue.Empty:
                    kind, value = "poll", None
                if kind == "end":
                    break
                if kind == "error":
                    error = value
                    break
                if isinstance(value, Answer):
                    answer = value
                    continue
                if kind == "item":
                    draft += value
                    yield pending(draft, "Writing the answer…")
                    continue
                n = ahead()
                now = (
                    f"Waiting for the model: {n} question{'s' if n > 1 else ''} ahead of yours."
                    if lock is not None and lock.locked() and n
                    else "Reading the articles…"
                )
                # Yielded at every poll, changed or not: Gradio can close this generator only between yields, so a
                # tab that went away is noticed within POLL_SECONDS, not at the first token (Gradio sends only what
                # changed between two views, here nothing).
                yield pending("", now)
        finally:
            # Also when Gradio closes this generator because the tab went away: the worker then makes no model
            # call, stops waiting for the model's lock, or stops generating at the next token.
            stop.set()
    if isinstance(error, RagError):
        yield failed(str(error))
        return
    if error is not None:  # a bug or a backend crash: say so in the page, keep the details in the log
        log.error("answering %r failed", question, exc_info=error)
        yield failed(_unexpected("answering", error))
        return
    if answer is None:  # Pipeline.stream always ends with an Answer; guard against a broken backend anyway
        yield failed("The model gave no answer. Try again.")
        return
    turns.append(Turn(question, answer, settings))
    hint = "" if answer.abstained else " Click a [n] marker to read its passage."
    yield View(
        chat_messages(turns),
        turns,
        status_html(f"Answered in {answer.timings.get('total', 0):.1f} s.{hint}"),
        render_sources(answer, len(turns) - 1),
        timings_html(answer),
        "",
    )


def _unexpected(doing: str, error: BaseException) -> str:
    return (f"Something went wrong while {doing} ({error.__class__.__name__}); the details are in the server log. "
            "Try again.")


# --- side panel ---------------------------------------------------------------------------------------------------
def timings_html(answer: Answer | None) -> str:
    if answer is None:
        return '<p class="rag-muted">Timings of the last answer appear here.</p>'
    t = answer.timings
    rows = [
        ("retrieve", "retrieval"),
        ("first_token", "first token"),
        ("generate", "generation"),
        ("verify", "verification"),
        ("total", "total"),
    ]
    cells = "".join(f"<tr><td>{label}</td><td>{t[k]:.2f} s</td></tr>" for k, label in rows if k in t)
    return (
        f'<table class="rag-timings">{cells}<tr><td>prompt tokens</td><td>{answer.prompt_tokens:,}</td></tr>'
        f"<tr><td>model</td><td><code>{_h(answer.model or 'none (no model call)')}</code></td></tr></table>"
    )


def settings_html(settings: Settings) -> str:
    s = settings
    rows = [
        ("model", s.llm),
        ("embedder", s.embedder),
        ("top-k", s.top_k),
        ("passages per answer", s.max_sources),
        ("corpus", s.corpus),
        ("store", s.store_location),
    ]
    cells = "".join(f"<tr><td>{k}</td><td><code>{_h(v)}</code></td></tr>" for k, v in rows)
    return f'<table class="rag-settings">{cells}</table>'


def corpus_html(settings: Settings) -> str:
    """Documents and chunks in the store, the last ingest of this process, and the document list."""
    try:
        pipe = pipeline(settings)
        docs = [d for d in pipe.documents().values() if not d.pending]
        chunks = pipe.store.count()
    except RagError as e:
        return status_html(str(e), "error")
    except Exception as e:
        log.exception("describing the corpus failed")
        return status_html(_unexpected("reading the corpus", e), "error")
    last = pipe.last_ingest
    lines = [f"<p><strong>{len(docs):,}</strong> documents, <strong>{chunks:,}</strong> chunks</p>"]
    if last is None:
        lines.append('<p class="rag-muted">Not synced with the folder yet in this session.</p>')
    else:
        lines.append(f"<p>Last ingest: {_h(last.summary())}</p>")
        lines += [f'<p class="rag-warning">⚠ {_h(msg)}</p>' for msg in last.skipped]
    items = "".join(
        f"<li>{_h(d.title)} <code>{_h(Path(d.path).name)}</code></li>"
        for d in sorted(docs, key=lambda d: d.title.lower())
    )
    if items:
        lines.append(f"<details><summary>Documents</summary><ul>{items}</ul></details>")
    return "".join(lines)


def reingest(settings: Settings, progress: Callable[[int, int, str], None] | None = None) -> tuple[str, str]:
    """Sync the store with the corpus folder; returns (corpus panel HTML, status HTML)."""
    try:
        report = pipeline(settings).ingest(progress=progress)
    except RagError as e:
        return corpus_html(settings), status_html(str(e), "error")
    except Exception as e:  # keep the page alive; the details go to the log
        log.exception("re-ingest failed")
        return corpus_html(settings), status_html(
            f"Re-ingest failed ({e.__class__.__name__}); see the server log.", "error"
        )
    return corpus_html(settings), status_html(f"Re-ingested: {report.summary()}")


# --- collections and their documents ------------------------------------------------------------------------------
class Pick(NamedTuple):
    """What the page shows for the chosen collection."""

    settings: Settings
    names: list[str]  # the collection picker's choices
    table: str  # the document list
    choices: list[tuple[str, str]]  # (label, doc id) for the remove and filter dropdowns
    status: str


def collection_names(settings: Settings) -> list[str]:
    """The collection picker's choices; the configured one alone when the store cannot be read."""
    try:
        return collections(settings)
    except Exception:  # the store is reported where it is used; the picker still offers the configured one
        log.exception("listing the collections failed")
        return [settings.collection_name]


def pick_collection(settings: Settings, name: str | None) -> Pick:
    """Switch to collection `name` (None or "": the configured one). An unknown name keeps the configured one."""
    status = ""
    try:
        chosen = collection_settings(settings, name)
    except RagError as e:
        chosen, status = settings, status_html(str(e), "error")
    table, choices, error = _documents(chosen)
    return Pick(chosen, collection_names(settings), table, choices, status or error)


def _live_docs(settings: Settings) -> list:
    docs = [d for d in pipeline(settings).documents().values() if not d.pending]
    return sorted(docs, key=lambda d: (d.title.lower(), d.doc_id))


def _documents(settings: Settings) -> tuple[str, list[tuple[str, str]], str]:
    """(document table HTML, dropdown choices, error status HTML or "")."""
    try:
        docs = _live_docs(settings)
    except RagError as e:
        return documents_table([], settings.collection_name), [], status_html(str(e), "error")
    except Exception as e:
        log.exception("listing the documents failed")
        return documents_table([], settings.collection_name), [], status_html(_unexpected("listing the documents", e),
                                                                             "error")
    return documents_table(docs, settings.collection_name), document_choices(docs), ""


def document_choices(docs: list) -> list[tuple[str, str]]:
    """(label, doc id) pairs for the dropdowns; Gradio shows the label as text, never as HTML."""
    return [(f"{d.title} ({Path(d.path).name})", d.doc_id) for d in docs]


def documents_table(docs: list, collection: str) -> str:
    """The collection's documents: title, file, format, pages and chunks."""
    if not docs:
        return f'<p class="rag-muted">Collection <code>{_h(collection)}</code> has no documents yet.</p>'
    rows = "".join(
        f'<tr data-doc="{_h(d.doc_id)}"><td>{_h(d.title)}</td><td><code>{_h(Path(d.path).name)}</code></td>'
        f"<td>{_h(d.format or Path(d.path).suffix.lstrip('.'))}</td><td>{d.pages or ''}</td>"
        f"<td>{d.n_chunks:,}</td></tr>"
        for d in docs
    )
    return (
        f'<p>Collection <code>{_h(collection)}</code>: <strong>{len(docs):,}</strong> documents</p>'
        '<table class="rag-docs"><thead><tr><th>title</th><th>file</th><th>format</th><th>pages</th>'
        f"<th>chunks</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def report_html(report) -> str:
    """An ingest report: its summary, then one line per added, changed or skipped file."""
    lines = [f"<p>{_h(report.summary())}</p>"]
    lines += [f'<p class="rag-added">added: {_h(d)}</p>' for d in report.added]
    lines += [f'<p class="rag-changed">changed: {_h(d)}</p>' for d in report.changed]
    lines += [f'<p class="rag-warning">⚠ skipped: {_h(m)}</p>' for m in report.skipped]
    return f'<div class="rag-report" role="status">{"".join(lines)}</div>'


def upload(
    settings: Settings, current: Settings, files: list[tuple[str, bytes]], new_name: str = "",
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[Pick, str]:
    """Add uploaded (name, content) files to the current collection, or to the collection `new_name` (made when
    it does not exist yet, under the home folder). Returns the page for the collection written to, and the ingest
    report (or an error) as HTML. `settings` are the app's own; `current` the session's collection."""
    try:
        if not files:
            raise UserError("choose one or more files to upload first")
        target = current
        new_name = (new_name or "").strip()
        if new_name:
            known = collection_names(settings)
            target = collection_settings(settings, new_name) if new_name in known else (
                new_collection_settings(settings, new_name))
        if pipeline(target).folder().expanduser().resolve() == BUNDLED_CORPUS.resolve():
            raise UserError("the bundled articles stay as shipped: name a new collection to add your files to")
        report = pipeline(target).add_files(list(files), progress)
    except RagError as e:
        return _stay(settings, current), status_html(str(e), "error")
    except Exception as e:  # a store failure: a message, the details in the log
        log.exception("upload failed")
        return _stay(settings, current), status_html(_unexpected("adding the files", e), "error")
    page = pick_collection(settings, target.collection_name)
    if target.collection_name not in page.names:  # e.g. every file was skipped: still answer from it
        page = page._replace(names=page.names + [target.collection_name])
    return page._replace(settings=target), report_html(report)


def _stay(settings: Settings, current: Settings) -> Pick:
    table, choices, _ = _documents(current)
    return Pick(current, collection_names(settings), table, choices, "")


def remove(current: Settings, doc_id: str | None) -> tuple[str, list[tuple[str, str]], str]:
    """Take one document out of the current collection; returns (document table, dropdown choices, status)."""
    if not doc_id:
        table, choices, error = _documents(current)
        return table, choices, error or status_html("Pick a document to remove first.", "error")
    try:
        title = next((d.title for d in _live_docs(current) if d.doc_id == doc_id), doc_id)
        pipeline(current).remove_document(doc_id)
    except RagError as e:
        table, choices, _ = _documents(current)
        return table, choices, status_html(str(e), "error")
    except Exception as e:
        log.exception("removing a document failed")
        table, choices, _ = _documents(current)
        return table, choices, status_html(_unexpected("removing the document", e), "error")
    table, choices, error = _documents(current)
    return table, choices, error or status_html(f"Removed {title}. Upload its file again to bring it back.")
