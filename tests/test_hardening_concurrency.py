"""Concurrency on the fakes: many questions at once, several UI sessions at once, and ingest while answering.

The fake model is slowed down (a short sleep per token) so that requests really overlap; each test also checks
that they did, so a test that ran its threads one after another would fail rather than pass vacuously.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest import ChunkStore, FakeEmbedder
from rag import Pipeline, Settings, ask, pipeline
from rag.llm import FakeLLM
from ui import handlers

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only

QUESTIONS = [
    "How far did bitcoin fall after the leak?",
    "What is Claude Mythos?",
    "What is Capybara?",
    "Who wrote about AI labs leaking their own future?",
    "Why is the new model expensive to run?",
    "How was the model leaked?",
    "What did Anthropic say about the leak?",
    "What risks does the model pose for cybersecurity?",
]


def _fingerprint(answer) -> tuple:
    return (answer.question, answer.text, answer.abstained,
            [(c.number, c.doc_id, c.char_start, c.char_end, c.quote) for c in answer.citations])


class _Overlap:
    """Counts how many model streams run at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


@pytest.fixture
def overlap(monkeypatch) -> _Overlap:
    seen = _Overlap()
    fast = FakeLLM.stream

    def slow(self, messages, **kwargs):
        with seen:
            for delta in fast(self, messages, **kwargs):
                time.sleep(0.002)
                yield delta

    monkeypatch.setattr(FakeLLM, "stream", slow)
    return seen


def _run_threads(targets, names=()) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(fn):
        try:
            fn()
        except BaseException as e:  # reported by the test, not lost in a thread
            errors.append(e)

    names = [*names, *[None] * len(targets)]
    threads = [threading.Thread(target=guarded, args=(fn,), name=name) for fn, name in zip(targets, names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def test_eight_concurrent_asks_each_get_their_own_answer(settings, tmp_path, overlap):
    # Expected answers, one at a time, from a separate store.
    alone = Pipeline(settings.model_copy(update={"store": str(tmp_path / "alone")}))
    expected = {q: _fingerprint(alone.ask(q)) for q in QUESTIONS}
    assert len({e[1] for e in expected.values()}) == len(QUESTIONS), "the questions must have distinct answers"
    overlap.peak = 0

    # The shared pipeline starts cold: the eight threads also race to sync the corpus first.
    start = threading.Barrier(len(QUESTIONS))
    got: dict[str, tuple] = {}

    def one(q: str):
        def run():
            start.wait(10)
            got[q] = _fingerprint(ask(q, settings=settings))
        return run

    assert _run_threads([one(q) for q in QUESTIONS]) == []
    assert got == expected
    assert overlap.peak >= 2, "the asks did not overlap"
    assert pipeline(settings).store.count() == alone.store.count()  # one copy of the corpus, not one per thread


def test_several_ui_sessions_at_once_keep_their_own_conversations(settings, overlap):
    sessions = [(QUESTIONS[i], QUESTIONS[i + 4]) for i in range(4)]
    solo = Pipeline(settings)
    expected = {}
    for first, second in sessions:
        a = solo.ask(first)
        b = solo.ask(second, history=[{"role": "user", "content": first}, {"role": "assistant", "content": a.text}])
        expected[first] = [_fingerprint(a), _fingerprint(b)]
    overlap.peak = 0

    start = threading.Barrier(len(sessions))
    finals: dict[str, handlers.View] = {}

    def session(first: str, second: str):
        def run():
            start.wait(10)
            turns = list(handlers.ask(settings, first, []))[-1].turns
            assert turns is not None, "first question failed"
            finals[first] = list(handlers.ask(settings, second, turns))[-1]
        return run

    assert _run_threads([session(*s) for s in sessions]) == []
    for first, second in sessions:
        view = finals[first]
        assert [t.question for t in view.turns] == [first, second]
        assert [_fingerprint(t.answer) for t in view.turns] == expected[first]
        assert [m["role"] for m in view.chat] == ["user", "assistant"] * 2 and 'role="alert"' not in view.status
    assert overlap.peak >= 2, "the sessions did not overlap"


def _zebra(version: int) -> str:
    """A document that changes size and wording with each version (3 to 8 chunks), so its chunk ids come and go."""
    paragraphs = [
        f"Zebra report {version}, part {i}: the zebra count at the zoo reached {1000 * version + i} animals in May. "
        + " ".join(f"Keeper {j} of shift {version} wrote a note about stripes and feeding." for j in range(4))
        for i in range(3 + version % 6)
    ]
    return f"Zebra news {version}\n\n" + "\n\n".join(paragraphs) + "\n"


def test_ingest_while_answering_corrupts_neither(settings, corpus: Path, tmp_path, monkeypatch):
    # Embedding and the last write of a document are made slow during ingest, as they are with the real embedder
    # on a long article or on a slow disk, so that questions arrive while the store holds a document half
    # rewritten, and after it is rewritten but before the pipeline has noticed; questions run at full speed.
    def slowed(method):
        def slow_when_ingesting(self, *args):
            if threading.current_thread().name == "churn":
                time.sleep(0.02)
            return method(self, *args)
        return slow_when_ingesting

    monkeypatch.setattr(FakeEmbedder, "embed", slowed(FakeEmbedder.embed))
    monkeypatch.setattr(ChunkStore, "put_docs", slowed(ChunkStore.put_docs))
    versions = [_zebra(v) for v in range(16)]
    zebra = corpus / "zebra.txt"
    zebra.write_text(versions[0], encoding="utf-8")
    pipe = pipeline(settings)
    pipe.ingest()
    bitcoin = "How far did bitcoin fall after the leak?"
    expected = _fingerprint(pipe.ask(bitcoin))
    done = threading.Event()
    answers: list = []
    statuses: list[str] = []

    def churn():
        try:
            for v in range(1, len(versions)):
                zebra.write_text(versions[v], encoding="utf-8")
                statuses.append(handlers.reingest(settings)[1])  # the UI's re-ingest button
                if v % 5 == 0:
                    zebra.unlink()  # removed, then back in the next round
                    statuses.append(handlers.reingest(settings)[1])
        finally:
            done.set()

    def asker(question: str):
        def run():
            while not done.is_set():
                answers.append(pipe.ask(question))
                handlers.corpus_html(settings)
        return run

    questions = ["How many zebras did the zoo count in May?", bitcoin, "What did the keepers note about stripes?"]
    assert _run_threads([churn, *(asker(q) for q in questions)], names=["churn"]) == []
    assert statuses and all("Re-ingested" in s for s in statuses), statuses
    assert len(answers) > len(questions) * 3, "the askers barely ran during the ingests"
    for a in answers:
        if a.question == bitcoin:
            assert _fingerprint(a) == expected  # an unchanged article answers the same throughout
        for c in a.citations + a.sources:
            if c.doc_id == "zebra":  # a quote of whichever version was in the store at that moment
                assert any(v[c.char_start : c.char_end] == c.quote for v in versions), c
    assert any(c.doc_id == "zebra" for a in answers for c in a.citations), "the zebra questions were never answered"

    # Afterwards the store is exactly what a clean ingest of the final folder gives.
    clean = Pipeline(Settings(corpus=corpus, store=str(tmp_path / "clean"), home=tmp_path / "home", llm="fake",
                              embedder="fake"))
    clean.ingest()
    pipe.ingest()
    ids = pipe.store.all_chunks()[0]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(clean.store.all_chunks()[0])
    assert not any(r.pending for r in pipe.store.doc_records().values())


def test_a_question_in_retrieval_when_an_ingest_starts_sees_the_store_before_or_after_it(settings, corpus: Path):
    # Deterministic interleaving: the question has done its dense and lexical searches and is about to read the
    # sentences of the chunks it found, when an ingest rewrites one of those articles. Reading on then paired the
    # new sentence offsets with the old chunk texts: passages that are in neither version (or a crash).
    old = _zebra(1)
    new = "Zebra count revised\n\n" + "\n\n".join(
        f"Revision {i}: after a recount the zoo now reports {700 + i} zebras, keepers said on Friday. "
        + "The stripes were counted twice by mistake in the first survey of the herd. " * (1 + i % 3)
        for i in range(7)
    ) + "\n"
    zebra = corpus / "zebra.txt"
    zebra.write_text(old, encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    searching, midway, answered = threading.Event(), threading.Event(), threading.Event()
    read_sentences = pipe.store.sentences_of

    def paused(chunk_ids):
        if threading.current_thread().name == "asker" and not searching.is_set():
            searching.set()
            midway.wait(1.0)  # the ingest may run now (it cannot while the question holds the store)
        return read_sentences(chunk_ids)

    pipe.store.sentences_of = paused  # type: ignore[method-assign]
    result: list = []

    def question():
        try:
            result.append(pipe.ask("How many zebras did the zoo count in May?"))
        except BaseException as e:
            result.append(e)
        answered.set()

    def progress(done: int, total: int, doc_id: str) -> None:
        if doc_id == "zebra":  # new chunks and sentences stored, the record not yet: let the question read now
            midway.set()
            answered.wait(1.0)

    asker = threading.Thread(target=question, name="asker")
    asker.start()
    assert searching.wait(10)
    zebra.write_text(new, encoding="utf-8")
    report = pipe.ingest(progress=progress)
    asker.join(20)
    assert report.changed == ["zebra"]
    (answer,) = result
    assert not isinstance(answer, BaseException), repr(answer)
    docs = pipe.documents()
    cited = answer.citations + answer.sources
    assert any(c.doc_id == "zebra" for c in cited)
    for c in cited:
        versions = (old, new) if c.doc_id == "zebra" else (docs[c.doc_id].text,)
        assert any(v[c.char_start : c.char_end] == c.quote for v in versions), c
