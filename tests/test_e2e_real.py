"""End to end with the real embedded model, real embeddings and the bundled corpus (slow: ~1 min)."""

from __future__ import annotations

import pytest

from rag import Pipeline, Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Pipeline:
    # The default home keeps the assembled model cache; the store is private to this test run.
    return Pipeline(Settings(store=str(tmp_path_factory.mktemp("store")), llm="llamacpp:default"))


def test_bitcoin_question_is_answered_with_a_cited_66000(real):
    a = real.ask("How far did bitcoin fall after the leak?")
    assert not a.abstained
    assert "66,000" in a.text
    docs = real.documents()
    cited = [c for c in a.citations if "66,000" in c.quote]
    assert cited, a.citations
    for c in a.citations:
        assert docs[c.doc_id].text[c.char_start : c.char_end] == c.quote
    assert all(s.supported for s in a.sentences if "66,000" in s.text)


def test_question_the_corpus_cannot_answer_abstains(real):
    a = real.ask("How many parameters does Claude Mythos have?")
    assert a.abstained and a.citations == [] and a.sources


def test_follow_up_uses_the_history(real):
    history = [{"role": "user", "content": "How did cybersecurity stocks react to the Mythos leak?"},
               {"role": "assistant", "content": "Cybersecurity stocks dropped 4–6% [1]."}]
    a = real.ask("and what happened to bitcoin?", history=history)
    assert not a.abstained and "66,000" in a.text


def test_answers_are_deterministic(real):
    q = "What is Capybara?"
    assert real.ask(q).text == real.ask(q).text
