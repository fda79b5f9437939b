"""The retriever's compact tables (rag/catalog.py) answer as the plain Python sets and dicts they replace."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from rag.catalog import WordSet

WORDS = ["bit", "bitcoin", "bitcoins", "bitter", "chin", "china", "chinese", "zoo", "zebra", "okapi", "a", "keepers"]


class _PlainWords:
    """What the retriever held before WordSet: a set of words per document, counted per document."""

    def __init__(self) -> None:
        self.docs: dict[str, set[str]] = {}

    def words(self) -> set[str]:
        return set().union(*self.docs.values())

    def prefixes(self) -> set[str]:
        return {w[:4] for w in self.words() if len(w) >= 4}

    def knows(self, w: str) -> bool:
        return w in self.words() or (len(w) >= 5 and w[:4] in self.prefixes())


steps = st.lists(st.tuples(st.sampled_from(["d0", "d1", "d2", "d3"]),
                           st.none() | st.lists(st.sampled_from(WORDS), max_size=6)), max_size=25)


@given(steps)
def test_a_word_set_knows_what_the_documents_it_holds_have(changes):
    """Any sequence of documents learnt (again) and forgotten: a word goes only with the last document that has
    it, and a prefix with the last word that starts with it."""
    ours, plain = WordSet(), _PlainWords()
    for doc, words in changes:
        if words is None:
            ours.forget(doc)
            plain.docs.pop(doc, None)
        else:
            ours.learn(doc, words)
            plain.docs[doc] = set(words)
        assert ours.words() == plain.words() and ours.prefixes() == plain.prefixes()
        assert ours.documents() == set(plain.docs)
        for w in [*WORDS, "bitten", "chinook", "zebras", "unseen"]:
            assert ours.knows(w) == plain.knows(w), w
    copy = pickle.loads(pickle.dumps(ours))
    assert copy.words() == ours.words() and copy.prefixes() == ours.prefixes()


def test_a_word_goes_with_the_last_document_that_has_it():
    words = WordSet()
    words.learn("a", ["bitcoin", "zoo", "zoo"])
    words.learn("b", ["bitcoin"])
    assert words.knows("bitcoin") and words.knows("bitcoins") and words.knows("zoo")
    words.forget("a")
    assert words.knows("bitcoin") and not words.knows("zoo")
    words.learn("b", ["okapi"])  # learnt again: what it had before is forgotten
    assert not words.knows("bitcoin") and not words.knows("bitcoins") and words.knows("okapis")
    assert not words.knows("okap"), "a word of PREFIX letters is known only as itself"
    words.forget("b")
    words.forget("nobody")
    assert words.words() == set() and words.prefixes() == set() and not words.knows("okapi")
