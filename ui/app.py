"""The Gradio page: layout, event wiring and styling over ui/handlers.py; `build_app()` builds it, `launch()` serves it.

One question runs through `handlers.ask` (streaming into the chat), a click on a citation marker or a source entry
through `handlers.show_passage`. Gradio's queue bounds how many questions run at once (the local models answer one
at a time anyway) and shows each waiting tab its place in line. Nothing here answers, retrieves or renders text
itself, and the app serves no files: no `allowed_paths`, no links into the corpus folder.

Exposure: `launch()` serves loopback without a login; beyond loopback (or with a share link) it needs logins
(`load_auth`: RAG_UI_AUTH="user:password" or an auth file) unless the caller says `open_access` (`rag ui
--no-auth`). Gradio's upload route is live even though the page has no upload: its size is capped. A page on
loopback without a login also answers a fresh `rag ask` (POST /rag/ask, rag/running.py), so the CLI skips its
cold start while the page runs.
"""

from __future__ import annotations

import atexit
import logging
import signal
from pathlib import Path

import gradio as gr
from fastapi import FastAPI

from ingest.env import quiet
from rag import Settings, UserError, pipeline
from rag.running import is_loopback, remove_record, write_record
from rag.running import local_url as running_url
from rag.settings import BUNDLED_CORPUS
from ui import handlers
from ui.api import add_ask_route, exit_on_signal

log = logging.getLogger(__name__)

BUNDLED_EXAMPLES = [
    "How far did bitcoin fall after the leak?",
    "What is Claude Mythos?",
    "Why is the new model expensive to run?",
]
GENERIC_EXAMPLES = ["What are these articles about?", "Who is mentioned in the articles?"]

# Two at once: one request generates while the next does its retrieval and waits on the model's lock;
# Gradio's queue holds the rest and shows each tab its position.
ASK_CONCURRENCY = 2
QUEUE_SIZE = 64
MAX_FILE_SIZE = "50mb"  # Gradio's upload route; ingest's own limit (MAX_FILE_BYTES) is the same 50 MB

# A click on any `a.cite` link (in the chat or the sources list) opens that passage. The chat sanitizer keeps
# `href` but drops data-* attributes, so the link's target names the citation; one listener per page.
CITATION_JS = """
const doc = element.ownerDocument;
doc.__ragShowPassage = (ref) => trigger('click', {ref: ref});
if (!doc.__ragCitationClicks) {
  doc.__ragCitationClicks = true;
  doc.addEventListener('click', (event) => {
    const link = event.target.closest ? event.target.closest('a.cite') : null;
    if (!link) return;
    event.preventDefault();
    doc.__ragShowPassage(link.getAttribute('href'));
  });
}
watch('value', () => element.scrollIntoView({block: 'nearest'}));
"""

CSS = """
a.cite { font-weight: 600; text-decoration: none; cursor: pointer; color: var(--color-accent); }
a.cite:hover, a.cite:focus { text-decoration: underline; }
.rag-unsupported { text-decoration: underline wavy #c2410c; text-underline-offset: 3px;
                   background: rgba(251, 146, 60, 0.12); }
.rag-flag { color: #c2410c; font-size: 0.85em; font-style: normal; white-space: nowrap; }
.rag-abstained { border-left: 4px solid #64748b; padding-left: 0.6em; }
.rag-closest q, .rag-sources q { font-size: 0.9em; }
.rag-closest { padding-left: 1.5em; }
.rag-closest a.cite { font-weight: 500; }
.rag-draft { opacity: 0.75; }
.rag-status { padding: 0.35em 0.7em; border-radius: 6px; margin: 0.2em 0; }
.rag-status.rag-error { color: #991b1b; background: #fef2f2; border: 1px solid #fecaca; }
.rag-status.rag-waiting, .rag-muted { color: var(--body-text-color-subdued); }
.rag-status.rag-waiting::before { content: ""; display: inline-block; width: 0.55em; height: 0.55em;
  margin-right: 0.5em; border-radius: 50%; background: var(--color-accent);
  animation: rag-pulse 0.8s infinite alternate; }
@keyframes rag-pulse { from { opacity: 0.25; } to { opacity: 1; } }
.rag-warning { color: #c2410c; }
.rag-passage .rag-title { margin: 0 0 0.2em 0; }
.rag-passage .rag-file { margin: 0 0 0.5em 0; font-size: 0.85em; color: var(--body-text-color-subdued); }
.rag-context { white-space: pre-wrap; line-height: 1.5; }
.rag-passage mark { background: #fde68a; color: #111827; padding: 0 0.1em; border-radius: 2px; }
#timings :is(table, tr, td), #settings :is(table, tr, td) { border: none; }
#timings td, #settings td { padding: 0.1em 0.8em 0.1em 0; }
#passage { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 0.6em 0.8em; }
.rag-docs { font-size: 0.9em; width: 100%; }
.rag-docs td, .rag-docs th { padding: 0.1em 0.5em 0.1em 0; text-align: left; }
"""

_PASSAGE_HINT = '<p class="rag-muted">Click a citation marker such as [1] to read the passage it cites.</p>'


def build_app(settings: Settings, examples: list[str] | None = None) -> gr.Blocks:
    """The page for these settings. Does no work: the pipeline is built by the first request that needs it."""
    if examples is None:
        examples = BUNDLED_EXAMPLES if settings.corpus.resolve() == BUNDLED_CORPUS.resolve() else GENERIC_EXAMPLES

    def ask(question, turns, current, scope):
        views = handlers.ask(current, question, turns, scope)
        try:
            for view in views:
                yield tuple(gr.skip() if part is None else part for part in view)
        finally:
            views.close()  # a closed tab: Gradio closes this generator, and the handler stops its worker

    def echo(question, turns, current):
        # The question shows at once and the inputs are locked until its answer is in: one question at a time
        # per conversation, so a follow-up is never asked against a history that is still being written.
        chat, status = handlers.queued(current, question, turns, ASK_CONCURRENCY)
        off = gr.update(interactive=False)
        return (gr.skip(), gr.skip(), off, off) if chat is None else (chat, status, off, off)

    def unlock():
        return gr.update(interactive=True), gr.update(interactive=True)

    def show(turns, current, evt: gr.EventData):
        return handlers.show_passage(current, turns, getattr(evt, "ref", ""))

    def reingest(current, progress=gr.Progress()):
        def report(done: int, total: int, doc_id: str) -> None:
            progress((done, total), desc=f"embedding {doc_id}", unit="chunks")

        corpus_panel, status = handlers.reingest(current, report)
        return (corpus_panel, status, *_docs(handlers.pick_collection(settings, current.collection_name)))

    def _docs(page: handlers.Pick):
        """The document list, the remove dropdown and the filter (cleared) for a collection."""
        return (page.table, gr.update(choices=page.choices, value=None), gr.update(choices=page.choices, value=[]),
                [])

    def _page(page: handlers.Pick):
        return (page.settings, gr.update(choices=page.names, value=page.settings.collection_name), *_docs(page),
                handlers.corpus_html(page.settings))

    def pick(name):
        page = handlers.pick_collection(settings, name)
        return (*_page(page), page.status)

    def add(paths, new_name, current, progress=gr.Progress()):
        files = []
        paths = list(paths or [])
        for i, path in enumerate(paths):
            progress((i, len(paths)), desc=f"reading {Path(path).name}", unit="files")
            try:
                files.append((Path(path).name, Path(path).read_bytes()))
            except OSError as e:
                return (*_page(handlers._stay(settings, current)),
                        handlers.status_html(f"cannot read the upload {Path(path).name}: {e.strerror}", "error"),
                        gr.skip(), gr.skip())

        def report(done: int, total: int, doc_id: str) -> None:
            progress((done, total), desc=f"embedding {doc_id}", unit="chunks")

        page, status = handlers.upload(settings, current, files, new_name, report)
        ok = "rag-error" not in status
        return (*_page(page), status, None if ok else gr.skip(), "" if ok else gr.skip())

    def remove(doc_id, current):
        table, choices, status = handlers.remove(current, doc_id)
        return (table, gr.update(choices=choices, value=None), gr.update(choices=choices, value=[]), [], status,
                handlers.corpus_html(current))

    def pick_example(evt: gr.SelectData):
        return evt.value["text"] if isinstance(evt.value, dict) else str(evt.value)

    def clear():
        return [], [], "", handlers.render_sources(None, 0), handlers.timings_html(None), _PASSAGE_HINT

    with gr.Blocks(title="Ask the articles", analytics_enabled=False) as demo:
        turns = gr.State([])
        current = gr.State(settings)  # the chosen collection's settings
        scope = gr.State([])  # doc ids the next question is kept to; empty: the whole collection
        gr.Markdown(
            "## Ask the articles\nA local model answers from the articles only; every claim cites a "
            "passage that was checked to support it."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chat = gr.Chatbot(
                    label="Conversation",
                    elem_id="chat",
                    height=480,
                    render_markdown=False,
                    sanitize_html=True,
                    examples=[{"text": q} for q in examples],
                    placeholder="Ask a question about the articles, or pick an example.",
                    feedback_options=None,
                    buttons=["copy"],
                )
                status = gr.HTML("", elem_id="status", js_on_load=None)
                with gr.Row():
                    question = gr.Textbox(
                        elem_id="question",
                        show_label=False,
                        scale=6,
                        max_lines=4,
                        placeholder="Ask about the articles (follow-ups are understood)",
                    )
                    ask_btn = gr.Button("Ask", variant="primary", elem_id="ask", scale=1, min_width=80)
                    clear_btn = gr.Button(
                        "New conversation", elem_id="clear", variant="secondary", scale=1, min_width=80
                    )
            with gr.Column(scale=2):
                passage = gr.HTML(_PASSAGE_HINT, elem_id="passage", js_on_load=CITATION_JS)
                sources = gr.HTML(handlers.render_sources(None, 0), elem_id="sources", js_on_load=None)
                with gr.Accordion("Documents", open=True):
                    # Only the configured collection until the page loads: building the page does no work.
                    collection = gr.Dropdown(
                        [settings.collection_name], value=settings.collection_name, label="Collection",
                        elem_id="collection", interactive=True,
                    )
                    scope_pick = gr.Dropdown(
                        [], value=[], multiselect=True, label="Ask only these documents (empty: all)",
                        elem_id="scope", interactive=True,
                    )
                    documents = gr.HTML('<p class="rag-muted">Loading…</p>', elem_id="documents", js_on_load=None)
                    with gr.Row():
                        remove_pick = gr.Dropdown([], value=None, label="Document", elem_id="remove-doc",
                                                  interactive=True, scale=3)
                        remove_btn = gr.Button("Remove", elem_id="remove", size="sm", scale=1, min_width=80)
                    uploads = gr.File(file_count="multiple", label="Add files (.txt .md .html .pdf .docx .epub)",
                                      elem_id="upload", type="filepath")
                    new_name = gr.Textbox(label="…into a new collection named (empty: this one)", max_lines=1,
                                          elem_id="new-collection", placeholder="e.g. my-reports")
                    add_btn = gr.Button("Add to the collection", elem_id="add-files", size="sm")
                    docs_status = gr.HTML("", elem_id="docs-status", js_on_load=None)
                with gr.Accordion("Corpus", open=True):
                    corpus = gr.HTML('<p class="rag-muted">Loading…</p>', elem_id="corpus", js_on_load=None)
                    reingest_btn = gr.Button("Re-ingest the corpus", elem_id="reingest", size="sm")
                    ingest_status = gr.HTML("", elem_id="ingest-status", js_on_load=None)
                with gr.Accordion("Model and settings", open=False):
                    gr.HTML(handlers.settings_html(settings), elem_id="settings", js_on_load=None)
                with gr.Accordion("Last answer", open=True):
                    timings = gr.HTML(handlers.timings_html(None), elem_id="timings", js_on_load=None)

        outputs = [chat, turns, status, sources, timings, question]
        ask_options = dict(
            concurrency_limit=ASK_CONCURRENCY, concurrency_id="ask", show_progress="minimal", show_progress_on=[chat]
        )
        inputs = [question, ask_btn]
        # The question shows at once (unqueued), then waits for its turn in the queue; `then` runs even on failure.
        # `/ask` is the app's API for gradio_client (README): the question in, the page's outputs streamed out; the
        # conversation is the client session's state. The example chain runs the same function, undocumented.
        gr.on([ask_btn.click, question.submit], echo, [question, turns, current], [chat, status, *inputs],
              queue=False).then(
            ask, [question, turns, current, scope], outputs, api_name="ask", **ask_options
        ).then(unlock, None, inputs, queue=False)
        chat.example_select(pick_example, None, question, queue=False).then(
            echo, [question, turns, current], [chat, status, *inputs], queue=False
        ).then(ask, [question, turns, current, scope], outputs, api_visibility="undocumented", **ask_options).then(
            unlock, None, inputs, queue=False
        )
        passage.click(show, [turns, current], passage, concurrency_limit=4, show_progress="hidden")
        clear_btn.click(clear, None, [chat, turns, status, sources, timings, passage], queue=False)
        chat.clear(clear, None, [chat, turns, status, sources, timings, passage], queue=False)
        doc_outputs = [documents, remove_pick, scope_pick, scope]
        page_outputs = [current, collection, *doc_outputs, corpus]
        reingest_btn.click(reingest, [current], [corpus, ingest_status, *doc_outputs], concurrency_limit=1,
                           concurrency_id="ingest")
        collection.input(pick, [collection], [*page_outputs, docs_status], api_visibility="private")
        scope_pick.change(lambda ids: list(ids or []), [scope_pick], [scope], queue=False, api_visibility="private")
        add_btn.click(add, [uploads, new_name, current], [*page_outputs, docs_status, uploads, new_name],
                      concurrency_limit=1, concurrency_id="ingest", api_visibility="private")
        remove_btn.click(remove, [remove_pick, current], [*doc_outputs, docs_status, corpus], concurrency_limit=1,
                         concurrency_id="ingest", api_visibility="private")
        demo.load(lambda: _page(handlers.pick_collection(settings, None))[1:], None,
                  [collection, *doc_outputs, corpus])
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def load_auth(value: str | None = None, path: Path | None = None) -> list[tuple[str, str]]:
    """Logins from a "user:password" value (RAG_UI_AUTH) and from a file of such lines (blank lines and # comments
    are skipped). A malformed login is a UserError that names where it came from, never the password."""
    entries: list[tuple[str, str]] = []
    if value:
        entries.append(("RAG_UI_AUTH", value))
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read the auth file {path} ({e.__class__.__name__}): check the path") from None
        entries += [(f"{path} line {n}", line.strip()) for n, line in enumerate(lines, start=1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not any(where.startswith(str(path)) for where, _ in entries):
            raise UserError(f"the auth file {path} has no login: write one user:password a line")
    logins = []
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user.strip() or not password:
            raise UserError(f"{where} is not a login: write it as user:password")
        logins.append((user.strip(), password))
    return logins


def check_exposure(host: str, share: bool, auth: list[tuple[str, str]] | None, open_access: bool = False) -> None:
    """A page reachable from other machines needs a login, unless the caller chose to serve it open."""
    if (share or not is_loopback(host)) and not auth and not open_access:
        where = "through a share link" if share else f"on {host}"
        raise UserError(f"refusing to serve the UI {where} without a login: set RAG_UI_AUTH=user:password or pass "
                        "--auth-file FILE, or pass --no-auth to let anyone who reaches it ask and re-ingest")


def launch(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True,
    auth: list[tuple[str, str]] | None = None, open_access: bool = False,
) -> gr.Blocks:
    """Sync the corpus, then serve the page on host:port (loopback by default) and print its URL.

    `auth` is a list of (user, password) logins (see `load_auth`); beyond loopback one is required unless
    `open_access`. With block=False the server runs in a background thread and the running app is returned
    (tests close it).
    """
    check_exposure(host, share, auth, open_access)
    quiet()  # no Gradio analytics, no hub access (for callers that did not come through the `rag` command)
    report = pipeline(settings).ingest()
    print(f"corpus: {report.summary()}", flush=True)
    demo = build_app(settings)
    app, local_url, share_url = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        quiet=True,
        prevent_thread_lock=True,
        show_error=False,
        ssr_mode=False,
        css=CSS,
        auth=auth or None,
        auth_message="Log in to ask about the articles." if auth else None,
        max_file_size=MAX_FILE_SIZE,
    )
    record = _record(settings, app, host, demo.server_port) if not auth and not share else None
    print(f"Running on {local_url}" + (f" and {share_url}" if share_url else ""), flush=True)
    if block:
        signal.signal(signal.SIGTERM, exit_on_signal)  # a kill, as Ctrl-C does, goes through the `finally`
        try:
            demo.block_thread()
        finally:
            if record is not None:
                remove_record(record)
    return demo


def _record(settings: Settings, app: FastAPI, host: str, port: int) -> Path | None:
    """Let a fresh `rag ask` on this machine ask this page's process (rag/running.py): POST /rag/ask on Gradio's
    own app, and a record of it. Only for a page without a login (a record would be a way around one) that
    listens on loopback; one that cannot write its record still serves the page. The record goes when the process
    does (a later `rag ask` also removes one whose process or port is gone)."""
    url = running_url(host, port)
    if url is None:
        return None
    add_ask_route(app, settings)
    try:
        path = write_record(settings, url, pipeline(settings).folder(), api_key=False, kind="ui")
    except OSError as e:
        log.warning("cannot record this page for `rag ask` (%s): it answers only in the browser", e)
        return None
    atexit.register(remove_record, path)
    return path
