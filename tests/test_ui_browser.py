"""The real page in Debian's Chromium, driven by Playwright: the app is launched in-process on a free loopback port.

Fast tests use the fake model and embedder on a tmp store over a copy of the bundled corpus plus a hostile article;
the slow one uses the embedded model end to end. Never runs `playwright install`: Chromium comes from apt.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag import Settings, pipeline
from rag.settings import BUNDLED_CORPUS

from .conftest import free_port, require


def expect(target):
    """Playwright's expect, imported when a test runs (a missing playwright is reported by `require`)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "How far did bitcoin fall after the leak?"
HOSTILE_QUESTION = "What does the reactor report say about the hostile payload?"
HOSTILE = (
    'Payload <script>window.__pwned=1</script> & "quotes"\n\n'
    'The hostile payload <img src=x onerror="window.__pwned=1"> sits in the reactor report. '
    "The reactor report calls the payload harmless.\n"
)


@dataclass
class App:
    url: str
    settings: Settings
    demo: object


def _start(settings: Settings) -> App:
    from ui.app import launch

    port = free_port()
    demo = launch(settings, host="127.0.0.1", port=port, block=False)
    return App(url=f"http://127.0.0.1:{port}/", settings=settings, demo=demo)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    corpus = root / "corpus"
    shutil.copytree(BUNDLED_CORPUS, corpus)
    (corpus / "hostile.txt").write_text(HOSTILE, encoding="utf-8")
    running = _start(
        Settings(corpus=corpus, store=str(root / "store"), home=root / "home", llm="fake", embedder="fake")
    )
    yield running
    running.demo.close()


@pytest.fixture(scope="module")
def browser():
    require(importlib.util.find_spec("playwright") is not None, "the playwright package",
            'pip install -e ".[test]"')
    require(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM}", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser):
    contexts = []

    def make(url: str):
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        page.goto(url)
        expect(page.locator("#corpus")).to_contain_text("documents")  # the page is up and has loaded its data
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def ask(page, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()


def answer_message(page):
    """The last assistant message, once the verified answer (with its citation links) has replaced the draft."""
    page.locator("#chat a.cite").first.wait_for()
    return page.locator("#chat .message-content").last


def test_answer_and_a_citation_click_highlight_the_cited_span(app, new_page, tmp_path):
    page = new_page(app.url)
    ask(page, QUESTION)
    message = answer_message(page)
    pipe = pipeline(app.settings)
    expected = pipe.ask(QUESTION)  # the fake model is deterministic: the page shows this same answer
    assert " ".join(message.inner_text().split()) == " ".join(expected.text.split())

    for c in expected.citations:
        page.locator(f'#chat a.cite[href="#cite-0-{c.number}"]').click()
        mark = page.locator("#passage mark")
        expect(mark).to_be_visible()
        doc = pipe.documents()[c.doc_id]
        expect(mark).to_have_text(doc.text[c.char_start : c.char_end])
        assert mark.text_content() == doc.text[c.char_start : c.char_end] == c.quote
        expect(page.locator("#passage .rag-title")).to_have_text(c.title)
        expect(page.locator("#passage .rag-file")).to_contain_text(Path(doc.path).name)

    # The sources panel opens the same passages.
    first = expected.citations[0]
    page.locator("#sources a.cite").first.click()
    expect(page.locator("#passage mark")).to_have_text(first.quote)
    expect(page.locator("#timings")).to_contain_text("total")
    shot = tmp_path / "answer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_empty_question_shows_an_error_message(app, new_page):
    page = new_page(app.url)
    page.locator("#ask").click()
    alert = page.locator('#status [role="alert"]')
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("the question is empty")
    assert page.locator("#chat .message").count() == 0


def test_two_tabs_asking_at_once_both_get_answers_and_the_second_shows_it_waits(app, new_page, monkeypatch):
    # Make the fake model slow and one-at-a-time, like llama.cpp, so that the two requests overlap.
    llm = pipeline(app.settings).llm()
    lock = threading.Lock()
    fast_stream = llm.stream

    def slow_stream(messages, **kwargs):
        with lock:
            for delta in fast_stream(messages, **kwargs):
                time.sleep(0.06)
                yield delta

    monkeypatch.setattr(llm, "stream", slow_stream)
    monkeypatch.setattr(llm, "lock", lock, raising=False)

    one, two = new_page(app.url), new_page(app.url)
    ask(one, QUESTION)
    # Tokens stream into the first tab before the answer is verified.
    one.wait_for_function(
        "() => { const d = document.querySelector('#chat .rag-draft');"
        " return d !== null && d.textContent.trim().length > 10; }"
    )
    ask(two, "What is Claude Mythos?")
    expect(two.locator("#status")).to_contain_text("Waiting for the model")
    for page, question in ((one, QUESTION), (two, "What is Claude Mythos?")):
        message = answer_message(page)
        expect(page.locator("#chat .rag-draft")).to_have_count(0)
        assert message.locator("a.cite").count() >= 1
        expect(page.locator("#chat .message-content").first).to_have_text(question)
        expect(page.locator('#status [role="alert"]')).to_have_count(0)


def test_example_then_follow_up_then_new_conversation(app, new_page):
    from ui.app import GENERIC_EXAMPLES

    page = new_page(app.url)
    page.locator("#chat").get_by_text(GENERIC_EXAMPLES[0]).click()
    answer_message(page)
    expect(page.locator("#chat .message-content").first).to_have_text(GENERIC_EXAMPLES[0])
    expect(page.locator("#question textarea")).to_be_enabled()  # unlocked once the answer is in
    ask(page, QUESTION)
    second_turn = page.locator('#chat a.cite[href*="-1-"]')  # cited, or the closest passages of an abstention
    expect(second_turn.first).to_be_visible()
    expect(page.locator("#chat .message-content")).to_have_count(4)
    page.locator('#chat a.cite[href*="-0-"]').first.click()  # the first turn's links still work
    expect(page.locator("#passage mark")).to_be_visible()
    page.locator("#clear").click()
    expect(page.locator("#chat .message-content")).to_have_count(0)
    expect(page.locator("#sources")).to_contain_text("The sources of an answer appear here")


def test_hostile_document_payloads_stay_inert(app, new_page):
    page = new_page(app.url)
    ask(page, HOSTILE_QUESTION)
    answer_message(page)
    hostile = next(c for c in pipeline(app.settings).ask(HOSTILE_QUESTION).citations if c.doc_id == "hostile")
    page.locator(f'#chat a.cite[href="#cite-0-{hostile.number}"]').click()
    expect(page.locator("#passage mark")).to_have_text(hostile.quote)
    page.locator("#corpus summary").click()  # the document list shows the hostile title
    expect(page.locator("#corpus")).to_contain_text("<script>window.__pwned=1</script>")
    expect(page.locator("#passage")).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(page.locator("#chat")).to_contain_text('<img src=x onerror="window.__pwned=1">')
    regions = "#chat, #passage, #sources, #corpus"
    assert page.locator(f":is({regions}) img, :is({regions}) script, :is({regions}) b").count() == 0
    # A control image that is meant to fail: once its onerror has fired, a payload's would have too.
    page.evaluate("() => { const i = new Image(); i.onerror = () => { window.__control = 1; }; i.src = 'x'; }")
    page.wait_for_function("() => window.__control === 1")
    assert page.evaluate("() => window.__pwned") is None


def test_reingest_button_reports_the_sync(app, new_page):
    page = new_page(app.url)
    page.locator("#reingest").click()
    expect(page.locator("#ingest-status")).to_contain_text("Re-ingested: 0 added, 0 changed, 0 removed, 4 unchanged")


def test_no_file_is_served_from_the_disk(app):
    corpus_file = next(Path(app.settings.corpus).glob("*.txt"))
    for path in (corpus_file, Path("/etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{app.url}gradio_api/file={path}", timeout=10)
        assert e.value.code in (403, 404)


@pytest.mark.slow
def test_real_model_answers_with_the_figure_and_highlights_it(tmp_path, new_page):
    settings = Settings(store=str(tmp_path / "store"), llm="llamacpp:default", embedder="minilm")
    running = _start(settings)
    try:
        page = new_page(running.url)
        page.set_default_timeout(240_000)
        ask(page, QUESTION)
        message = answer_message(page)
        assert "66,000" in message.inner_text()
        links = message.locator("a.cite")
        quotes = []
        for i in range(links.count()):
            number = links.nth(i).inner_text()  # "[n]"
            links.nth(i).click()
            expect(page.locator("#passage .rag-file")).to_contain_text(number)
            quotes.append(page.locator("#passage mark").text_content())
            if "66,000" in quotes[-1]:
                break
        assert any("66,000" in q for q in quotes), quotes
    finally:
        running.demo.close()


PDF_FACT = "The Kelso zephyr turbine produces exactly 912 megawatts of power."
PDF_QUESTION = "How many megawatts does the Kelso zephyr turbine produce?"


def _two_page_pdf(path: Path) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Harbour almanac\n\nThe harbour opens at dawn every day. Fishing boats leave before the "
                         "sun is up and return with their catch by noon.")
    pdf.add_page()
    pdf.multi_cell(0, 8, f"{PDF_FACT} Engineers inspect the turbine every spring.")
    pdf.output(str(path))
    return path


def test_upload_a_pdf_into_a_new_collection_and_cite_its_second_page(app, new_page, tmp_path):
    from ui.collections import collection_settings

    pdf = _two_page_pdf(tmp_path / "almanac.pdf")
    page = new_page(app.url)
    page.locator("#upload input[type=file]").set_input_files(str(pdf))
    expect(page.locator("#upload")).to_contain_text("KB")  # Gradio has taken the upload (it shows its size)
    page.locator("#new-collection input, #new-collection textarea").first.fill("pdfs")
    page.locator("#add-files").click()
    expect(page.locator("#docs-status")).to_contain_text("1 added")
    expect(page.locator("#docs-status")).to_contain_text("added: almanac")
    expect(page.locator("#documents")).to_contain_text("Collection pdfs")
    row = page.locator("#documents tr[data-doc]")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text("pdf")
    expect(row.locator("td").nth(3)).to_have_text("2")
    assert app.settings.corpus.joinpath("almanac.pdf").exists() is False  # the new collection has its own folder

    ask(page, PDF_QUESTION)
    answer_message(page)
    expected = pipeline(collection_settings(app.settings, "pdfs")).ask(PDF_QUESTION)
    on_page_2 = next(c for c in expected.citations if c.page == 2 and "912 megawatts" in c.quote)
    page.locator(f'#chat a.cite[href="#cite-0-{on_page_2.number}"]').click()
    expect(page.locator("#passage mark")).to_have_text(on_page_2.quote)
    expect(page.locator("#passage .rag-file")).to_contain_text("page 2")
    expect(page.locator("#passage .rag-file")).to_contain_text("almanac.pdf")
