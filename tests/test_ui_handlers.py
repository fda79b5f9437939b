"""The UI handlers, in-process: fake model, fake embedder, a store under tmp_path, no server and no browser."""

from __future__ import annotations

import html
import re
import threading
import time
from html.parser import HTMLParser

import pytest

from rag import NOT_FOUND, Answer, Citation, Sentence, Settings, SetupError, pipeline
from rag.llm import FakeLLM
from rag.settings import BUNDLED_CORPUS
from ui import handlers

QUESTION = "How far did bitcoin fall after the leak?"
HOSTILE = (
    'Payload <script>window.__pwned=1</script> & "quotes"\n\n'
    'The hostile payload <img src=x onerror="window.__pwned=1"> sits in the reactor report. '
    "The reactor report calls the payload harmless <b>bold</b>.\n"
    "A second paragraph about the reactor follows here.\n"
)
CALM = "Calm news\n\nThe reactor in the calm town was inspected on Monday. Inspectors found no fault.\n"


@pytest.fixture
def settings(tmp_path):
    return Settings(store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake", embedder="fake")


@pytest.fixture
def hostile_settings(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "hostile.txt").write_text(HOSTILE, encoding="utf-8")
    (corpus / "calm.txt").write_text(CALM, encoding="utf-8")
    return Settings(corpus=corpus, store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake", embedder="fake")


def run(settings, question, turns=None):
    return list(handlers.ask(settings, question, turns or []))


def marked(passage_html: str) -> str:
    found = re.findall(r"<mark>(.*?)</mark>", passage_html, re.S)
    assert len(found) == 1, passage_html
    return html.unescape(found[0])


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)


def tags_and_attrs(*fragments: str) -> tuple[set[str], set[str]]:
    parser = _Tags()
    for f in fragments:
        parser.feed(f)
    return parser.tags, parser.attrs


def test_question_streams_then_shows_a_verified_answer_with_citation_links(settings):
    views = run(settings, QUESTION)
    *progress, final = views
    assert all("rag-waiting" in v.status and v.turns is None for v in progress)
    assert all(v.chat[0] == {"role": "user", "content": html.escape(QUESTION)} for v in progress)
    drafts = [v.chat[1]["content"] for v in progress if len(v.chat) == 2]
    assert len(drafts) > 3, "the answer should arrive token by token"
    assert all(d.startswith('<span class="rag-draft">') for d in drafts)
    assert [len(d) for d in drafts] == sorted(len(d) for d in drafts) and len(drafts[0]) < len(drafts[-1])

    answer = final.turns[0].answer
    assert not answer.abstained and answer.citations
    assert final.question == "", "the question box is cleared once answered"
    assert [m["role"] for m in final.chat] == ["user", "assistant"]
    assert final.chat[0]["content"] == html.escape(QUESTION)
    assert 'href="#cite-0-1"' in final.chat[1]["content"] and 'href="#cite-0-1"' in final.sources
    assert "total" in final.timings and "fake" in final.timings


def test_clicking_a_citation_shows_the_exact_document_span_in_its_paragraph(settings):
    final = run(settings, QUESTION)[-1]
    docs = pipeline(settings).documents()
    for c in final.turns[0].answer.citations:
        passage = handlers.show_passage(settings, final.turns, f"#cite-0-{c.number}")
        doc = docs[c.doc_id]
        assert marked(passage) == doc.text[c.char_start : c.char_end] == c.quote
        assert html.escape(c.title) in passage and doc.path.rsplit("/", 1)[-1] in passage
        visible = html.unescape(re.sub(r"<[^>]+>", "", passage))
        paragraph_start = doc.text.rfind("\n", 0, c.char_start) + 1
        assert doc.text[paragraph_start : c.char_end] in visible, "the quote is shown inside its paragraph"


def test_follow_up_passes_the_earlier_turns_as_history(settings, monkeypatch):
    pipe = pipeline(settings)
    seen = []
    real_stream = pipe.stream

    def spy(question, history=None, **options):
        seen.append(history)
        return real_stream(question, history, **options)

    monkeypatch.setattr(pipe, "stream", spy)
    first = run(settings, QUESTION)[-1]
    second = run(settings, "And what about the stocks?", first.turns)[-1]
    assert seen[0] == []
    assert seen[1] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.turns[0].answer.text},
    ]
    assert len(second.turns) == 2 and [m["role"] for m in second.chat] == ["user", "assistant"] * 2
    assert 'href="#cite-1-1"' in second.chat[3]["content"]
    c = second.turns[1].answer.citations[0]
    assert marked(handlers.show_passage(settings, second.turns, "#cite-1-1")) == c.quote


def test_a_question_behind_another_says_it_waits_for_the_model(settings, monkeypatch):
    # A backend that answers one request at a time (like llama.cpp): the first request holds the model until
    # the test lets it go, so the second one has to wait.
    llm = pipeline(settings).llm()
    lock, holding, release = threading.Lock(), threading.Event(), threading.Event()
    real_stream = llm.stream

    def one_at_a_time(messages, **kwargs):
        with lock:
            holding.set()
            release.wait(10)
            yield from real_stream(messages, **kwargs)

    monkeypatch.setattr(llm, "stream", one_at_a_time)
    monkeypatch.setattr(llm, "lock", lock, raising=False)
    first: list = []
    worker = threading.Thread(target=lambda: first.extend(run(settings, QUESTION)))
    worker.start()
    assert holding.wait(10)
    chat, status = handlers.queued(settings, "What is Claude Mythos?", [], capacity=1)
    assert "Waiting in line: 1 question is being answered before yours" in status and len(chat) == 1

    second = handlers.ask(settings, "What is Claude Mythos?", [])
    waiting = next(v for v in second if "Waiting for the model" in (v.status or ""))
    assert "1 question ahead of yours" in waiting.status
    assert waiting.chat == [{"role": "user", "content": "What is Claude Mythos?"}] and waiting.turns is None
    release.set()
    rest = list(second)
    worker.join(10)
    assert rest[-1].turns and rest[-1].turns[0].question == "What is Claude Mythos?"
    assert first[-1].turns and first[-1].turns[0].question == QUESTION


def test_queued_echoes_the_question_only_when_it_is_valid(settings):
    assert handlers.queued(settings, "   ", [], capacity=2) == (None, None)
    chat, status = handlers.queued(settings, "What <b>is</b> it?", [], capacity=2)
    assert chat == [{"role": "user", "content": "What &lt;b&gt;is&lt;/b&gt; it?"}]
    assert "Reading the articles" in status


@pytest.mark.parametrize(("question", "expected"), [("   ", "empty"), ("x" * 4001, "4,000")])
def test_bad_question_is_a_message_in_the_page(settings, question, expected):
    earlier = run(settings, QUESTION)[-1].turns
    views = run(settings, question, earlier)
    assert len(views) == 1
    view = views[0]
    assert 'role="alert"' in view.status and expected in view.status
    assert view.turns is None and view.question is None, "the conversation and the typed question are kept"
    assert view.chat == handlers.chat_messages(earlier)


def test_model_unavailable_is_a_message_not_a_traceback(tmp_path):
    settings = Settings(
        store=str(tmp_path / "store"), home=tmp_path / "home", llm="llamacpp:/nowhere/x.gguf", embedder="fake"
    )
    (view,) = run(settings, QUESTION)
    assert 'role="alert"' in view.status and "no GGUF file" in view.status and "Traceback" not in view.status


def test_backend_failure_mid_answer_restores_the_chat(settings, monkeypatch):
    pipe = pipeline(settings)

    def failing(question, history=None, cancel=None):
        yield "Partial"
        raise SetupError("cannot reach Ollama at http://127.0.0.1:11434: start it with `ollama serve`")

    monkeypatch.setattr(pipe, "stream", failing)
    views = run(settings, QUESTION)
    assert "Partial" in views[-2].chat[-1]["content"]
    assert views[-1].chat == [] and "ollama serve" in views[-1].status and 'role="alert"' in views[-1].status

    def crashing(question, history=None, cancel=None):
        raise KeyError("internal detail")
        yield  # a generator, like the real one

    monkeypatch.setattr(pipe, "stream", crashing)
    last = run(settings, QUESTION)[-1]
    assert "KeyError" in last.status and "internal detail" not in last.status and "server log" in last.status


def test_abstention_looks_like_one_and_lists_the_closest_passages(settings):
    strict = settings.model_copy(update={"min_relevance": 1.5, "min_overlap": 1.5})  # nothing is relevant enough
    final = run(strict, QUESTION)[-1]
    answer = final.turns[0].answer
    assert answer.abstained and answer.sources
    message = final.chat[1]["content"]
    assert "rag-abstained" in message and html.escape(NOT_FOUND) in message
    assert "cite" in message and 'href="#src-0-1"' in message and "Closest passages" in final.sources
    c = answer.sources[0]
    doc = pipeline(strict).documents()[c.doc_id]
    assert marked(handlers.show_passage(strict, final.turns, "#src-0-1")) == doc.text[c.char_start : c.char_end]


def test_unsupported_sentences_are_flagged():
    cite = Citation(number=1, doc_id="d", title="T", quote="q", char_start=0, char_end=1, score=0.9)
    answer = Answer(
        question="q",
        text="Backed [1]. Invented.",
        citations=[cite],
        abstained=False,
        sentences=[Sentence("Backed [1].", [1], True, 0.9), Sentence("Invented.", [], False, 0.1)],
        timings={},
    )
    out = handlers.render_answer(answer, 0)
    supported, unsupported = out.split('<span class="rag-unsupported"')
    assert 'href="#cite-0-1"' in supported and "not supported" not in supported
    assert "Invented." in unsupported and "not supported by the articles" in unsupported


def test_hostile_document_is_rendered_as_text(hostile_settings):
    final = run(hostile_settings, "What does the reactor report say about the hostile payload?")[-1]
    answer = final.turns[0].answer
    hostile = next(c for c in answer.citations if c.doc_id == "hostile")
    passage = handlers.show_passage(hostile_settings, final.turns, f"#cite-0-{hostile.number}")
    fragments = [m["content"] for m in final.chat] + [final.sources, passage, handlers.corpus_html(hostile_settings)]
    tags, attrs = tags_and_attrs(*fragments)
    assert tags <= {
        "a",
        "br",
        "code",
        "details",
        "div",
        "em",
        "h3",
        "li",
        "mark",
        "ol",
        "p",
        "q",
        "span",
        "strong",
        "summary",
        "ul",
        "article",
    }, tags
    assert not {a for a in attrs if a.startswith("on") or a in {"src", "style"}}, attrs
    everything = "".join(fragments)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in everything  # the title, shown as text
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in final.chat[1]["content"]
    assert marked(passage) == HOSTILE[hostile.char_start : hostile.char_end] == hostile.quote
    assert "<img" in hostile.quote


def test_reingest_reports_progress_and_refreshes_the_corpus_panel(hostile_settings):
    first, _ = handlers.reingest(hostile_settings)
    assert "<strong>2</strong> documents" in first
    (hostile_settings.corpus / "third.txt").write_text(
        "Third story\n\nA third article about the harbour.\n", encoding="utf-8"
    )
    calls = []
    panel, status = handlers.reingest(hostile_settings, lambda done, total, doc_id: calls.append((done, doc_id)))
    assert calls and calls[-1][1] == "third"
    assert "<strong>3</strong> documents" in panel and "1 added" in status and "1 added" in panel


def test_passage_of_a_changed_document_says_so(settings):
    final = run(settings, QUESTION)[-1]
    c = final.turns[0].answer.citations[0]
    out = handlers.render_passage(c, "completely different text", "/x/y.txt", BUNDLED_CORPUS)
    assert "rag-byline" not in out  # no author, no date: no empty byline
    dated = handlers.render_passage(c, "completely different text", "/x/y.txt", BUNDLED_CORPUS, "Ann Lee",
                                    "2026-03-01")
    assert '<p class="rag-byline">Ann Lee · 2026-03-01</p>' in dated
    assert marked(out) == c.quote and "changed since this answer" in out


def test_unknown_citation_link_is_a_message(settings):
    out = handlers.show_passage(settings, [], "#cite-3-1")
    assert 'role="alert"' in out and "earlier conversation" in out
    assert handlers.find_citation([], "javascript:alert(1)") is None


def test_building_the_app_does_no_work(settings, tmp_path):
    from ui.app import build_app

    demo = build_app(settings)
    assert demo.__class__.__name__ == "Blocks"
    assert not (tmp_path / "store").exists(), "building the page must not open the store"


def test_a_huge_citation_ref_is_a_message_not_an_exception(settings):
    turns = run(settings, QUESTION)[-1].turns
    for ref in ("#cite-0-" + "9" * 5000, "#src-" + "1" * 4400 + "-1", "#cite-99999999999-1"):
        shown = handlers.show_passage(settings, turns, ref)
        assert 'role="alert"' in shown and "earlier conversation" in shown
    assert "<mark>" in handlers.show_passage(settings, turns, "#cite-0-1"), "an ordinary ref still opens"


def test_store_errors_are_messages_in_the_page(settings, monkeypatch):
    from chromadb.errors import InvalidArgumentError, NotFoundError

    turns = run(settings, QUESTION)[-1].turns
    pipe = pipeline(settings)

    def gone(*args, **kwargs):
        raise NotFoundError("Collection [docs_fake] does not exist")

    monkeypatch.setattr(pipe, "documents", gone)
    for shown in (handlers.show_passage(settings, turns, "#cite-0-1"), handlers.corpus_html(settings)):
        assert 'role="alert"' in shown and "NotFoundError" in shown and "server log" in shown
        assert "docs_fake" not in shown, "details stay in the log"

    def wrong_dimension(*args, **kwargs):
        raise InvalidArgumentError("Collection expecting embedding with dimension of 3, got 1024")

    monkeypatch.setattr(pipe, "retrieve", wrong_dimension)
    final = run(settings, QUESTION)[-1]
    assert 'role="alert"' in final.status and "InvalidArgumentError" in final.status and final.turns is None


class _Counting(FakeLLM):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.words = 0

    def stream(self, messages, **kwargs):
        self.calls += 1
        for word in super().stream(messages, **kwargs):
            self.words += 1
            yield word


def test_a_closed_tab_makes_no_model_call(settings, monkeypatch):
    # Retrieval is slow here; the tab goes away while it runs. The worker must not go on to prompt the model.
    pipe = pipeline(settings)
    llm = _Counting()
    monkeypatch.setattr(pipe, "llm", lambda: llm)
    real_retrieve = pipe.retrieve
    retrieving = threading.Event()

    def slow_retrieve(*args, **kwargs):
        retrieving.set()
        time.sleep(1.0)
        return real_retrieve(*args, **kwargs)

    monkeypatch.setattr(pipe, "retrieve", slow_retrieve)
    page = handlers.ask(settings, QUESTION, [])
    first = next(page)  # "Reading the articles…", before any token
    assert "rag-waiting" in first.status and retrieving.wait(5)
    page.close()  # what Gradio does when the tab is closed
    time.sleep(2.0)
    assert llm.calls == 0 and llm.words == 0
    assert handlers._line.size() == 0

    # The same page left open gets its answer.
    assert run(settings, QUESTION)[-1].turns and llm.calls == 1


def test_a_closed_tab_stops_generating(settings, monkeypatch):
    pipe = pipeline(settings)
    llm = _Counting()
    monkeypatch.setattr(pipe, "llm", lambda: llm)
    slow = FakeLLM.stream

    def one_word_a_tenth(self, messages, **kwargs):
        for word in slow(self, messages, **kwargs):
            time.sleep(0.1)
            yield word

    monkeypatch.setattr(FakeLLM, "stream", one_word_a_tenth)
    page = handlers.ask(settings, QUESTION, [])
    while "rag-draft" not in str(next(page).chat):
        pass
    page.close()
    time.sleep(1.0)
    written = llm.words
    time.sleep(1.0)
    assert llm.words == written and written < 5, "the model went on writing for a closed tab"


@pytest.mark.slow
def test_a_closed_tab_stops_waiting_for_the_real_model(tmp_path, monkeypatch):
    # Another request holds llama.cpp; this tab closes while it waits. Once the model is free, it must not run.
    s = Settings(corpus=BUNDLED_CORPUS, store=str(tmp_path / "store"), llm="llamacpp:default")
    pipe = pipeline(s)
    pipe.ingest()
    llm = pipe.llm()
    calls = []
    real = llm.llama.create_completion
    monkeypatch.setattr(llm.llama, "create_completion", lambda *a, **k: calls.append(1) or real(*a, **k))
    with llm.lock:  # the request ahead of this one
        page = handlers.ask(s, QUESTION, [])
        assert "rag-waiting" in next(page).status
        time.sleep(1.5)  # retrieval done; the worker waits for the model
        page.close()
    time.sleep(2.0)
    assert calls == [], "the closed tab's worker prompted the model"
    assert run(s, QUESTION)[-1].turns and calls == [1], "an open tab is answered"
