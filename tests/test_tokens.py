"""The one tokenizer (rag/tokens.py): content words (BM25, IDF overlap, the support judge) and terms (names), from
one table each; and the BM25 index and the overlap scorer see the very same words."""

from __future__ import annotations

import pytest

from rag.tokens import STOPWORDS, bm25_tokens, content_words, stemmer, terms, words


@pytest.mark.parametrize("text, expected", [
    ("Anthropic's model", ["anthrop", "model"]),  # a possessive is the word itself
    ("Anthropic’s model", ["anthrop", "model"]),  # curly apostrophe too
    ("state-sponsored hackers", ["state", "sponsor", "hacker"]),  # a hyphenated word is its parts
    ("bitcoin slid to $66,000", ["bitcoin", "slide", "66000"]),  # a thousands separator stays inside the number
    ("66,000 and 66000", ["66000", "66000"]),
    ("stocks fell 8% to 4–6%", ["stock", "fall", "8", "4", "6"]),  # single digits are content, letters are not
    ("version 2.5 of M2.5.", ["version", "2.5", "m2.5"]),  # a decimal point stays, a full stop goes
    ("in 2024.It was", ["2024"]),  # a full stop before a letter is not a decimal point
    ("Café in Zürich", ["café", "zürich"]),  # letters beyond ASCII are letters
    ("Cafe\u0301", ["café"]),  # a decomposed accent is folded into its letter (NFKC)
    ("ＳＴＲＡＳＳＥ １２", ["strass", "12"]),  # full-width letters and digits fold to ASCII
    ("Straße", ["strass"]),  # casefold, not lower
    ("The article said that it was not there", []),  # stopwords only
    ("snake_case", ["snake", "case"]),
    ("a b c x y z", []),  # single letters
    ("", []),
    ("Bitcoin fell, then rose", ["bitcoin", "fall", "rise"]),  # irregular past forms read as their verb
    ("It sank after it had fallen", ["sink", "fall"]),
    ("She left the firm she had founded", ["left", "firm", "found"]),  # ambiguous forms are left as written
])
def test_content_words(text, expected):
    assert content_words(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Was GPT-5.1 released?", ["Was", "GPT-5.1", "released"]),  # inner hyphens and dots stay, the "?" goes
    ("Anthropic's and xAI’s models", ["Anthropic", "and", "xAI", "models"]),  # possessives dropped
    ("don't stop", ["don't", "stop"]),  # other apostrophes stay inside the word
    ("U.S. officials.", ["U.S", "officials"]),  # a trailing dot is punctuation
    ("$66,000 on March 3, 2026", ["66,000", "on", "March", "3", "2026"]),  # a comma between digits only
    ("state--sponsored", ["state", "sponsored"]),
    ("Éire and Zürich", ["Éire", "and", "Zürich"]),
])
def test_terms(text, expected):
    assert terms(text) == expected


def test_words_keep_stopwords_and_fold():
    assert words("The BITCOIN's $66,000") == ["the", "bitcoin", "s", "66000"]


def test_stopwords_are_folded_words():
    """A stopword the tokenizer can never produce would never be removed."""
    assert all(words(w) == [w] for w in STOPWORDS)


@pytest.mark.parametrize("text", [
    "Markets reacted: bitcoin slid to $66,000 and cybersecurity stocks dropped 4–6%.",
    "Anthropic's unreleased Claude Mythos model leaked; the company's researchers were running checks.",
    "Zürich-based analysts said the files were exposed for nearly three weeks.",
])
def test_bm25_and_overlap_see_the_same_words(text):
    """The lexical index and the IDF overlap used to split and stem differently (bm25s' own tokenizer vs
    content_words): a question word could count for one and not the other."""
    assert bm25_tokens([text]) == [content_words(text)]


def test_stemming_runs():
    """Without PyStemmer both paths would silently match only exact word forms."""
    assert stemmer() is not None
    assert content_words("running runs") == content_words("run run")


def test_the_retriever_indexes_the_words_it_weighs(settings):
    """On the bundled corpus: every word in the BM25 vocabulary has an IDF weight and the other way round, and a
    figure written "$66,000" is found by the question's "66,000" through BM25 alone."""
    from rag.answer import Pipeline

    retriever = Pipeline(settings).retriever()
    texts = retriever.store.texts_of(list(retriever.metas))
    indexed = {w for tokens in bm25_tokens(list(texts.values())) for w in tokens}
    assert indexed == set(retriever._index.terms()) == set(retriever._idf)
    hits = retriever._lexical("66,000", 1)
    assert hits and "$66,000" in texts[hits[0]]
