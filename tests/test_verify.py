"""Citation markers, answer sentences, and the verify-and-repair step (with the fake embedder)."""

from __future__ import annotations

import pytest

from ingest import FakeEmbedder
from rag.retrieve import Source
from rag.support import SupportJudge, numbers, pair_features, premise_words
from rag.verify import check, parse_markers, render, source_refs, split_sentences, strip_markers

SOURCES = [
    Source(1, "a", "A", "Markets reacted immediately and bitcoin slid to $66,000 after the leak.", 0, 70, 0.9),
    Source(2, "b", "B", "The leak came from misconfigured API access controls at Anthropic.", 0, 66, 0.8),
]


def judge() -> SupportJudge:
    return SupportJudge(FakeEmbedder(), threshold=0.5)


def test_parse_markers_forms():
    assert parse_markers("x [1] y [2, 3] z [[4]] w [0] [99]") == [1, 2, 3, 4, 0, 99]
    assert strip_markers("Bitcoin slid to $66,000 [1].") == "Bitcoin slid to $66,000."


@pytest.mark.parametrize("sentence, claim", [
    ('Source [1] states that the leak is "particularly interesting."', 'The leak is "particularly interesting."'),
    ("Source 1 says bitcoin slid to $66,000.", "Bitcoin slid to $66,000."),
    ("The leak came from a CMS error, while sources [2] and [3] mention API access controls.",
     "The leak came from a CMS error, while other articles mention API access controls."),
    ("Source [2] is about the leak.", "Another article is about the leak."),
    ("According to source [1], bitcoin slid.", "Bitcoin slid."),
    ("Article [2] points out that APIs leaked.", "APIs leaked."),
    ("Article 5 of the GDPR applies [1].", "Article 5 of the GDPR applies."),  # a law's article, not a source
    ("The open-source model leaked [1].", "The open-source model leaked."),
])
def test_a_sentence_that_names_its_sources_reads_as_a_claim(sentence, claim):
    assert strip_markers(sentence) == claim
    assert strip_markers(claim) == claim


@pytest.mark.parametrize("sentence, claim", [
    ("Cybersecurity is a key part of the story. [2], [3], [4]", "Cybersecurity is a key part of the story."),
    ("Bitcoin slid [1], [2].", "Bitcoin slid."),
    ("Bitcoin slid [1] and [2].", "Bitcoin slid."),
    ("Bitcoin slid [1]; [2].", "Bitcoin slid."),
])
def test_a_list_of_markers_leaves_no_separators_behind(sentence, claim):
    # the model's "... story. [2], [3], [4]" read "... story.,," once its markers were taken out (seen in news dev)
    assert strip_markers(sentence) == claim
    assert parse_markers(sentence)[:1] in ([1], [2])


def test_sources_named_in_words_count_as_the_sentence_citations():
    assert source_refs("Source 1 states X, while sources [2] and [3] say Y; article 5 of a law.") == [1, 2, 3]
    out = check("Source 2 states that the leak came from misconfigured API access controls.", SOURCES, judge())
    assert out[0].supported and out[0].sources == [2] and not out[0].repaired
    text, _ = render(out)
    assert text == "The leak came from misconfigured API access controls [1]."


def test_trailing_marker_fragment_joins_its_sentence():
    assert split_sentences("Bitcoin slid to $66,000. [1] The leak came from APIs [2].") == [
        "Bitcoin slid to $66,000. [1]", "The leak came from APIs [2]."]


def test_correct_marker_is_kept():
    out = check("Bitcoin slid to $66,000 after the leak [1].", SOURCES, judge())
    assert out[0].supported and out[0].sources == [1] and not out[0].repaired


def test_wrong_marker_is_repaired_to_the_supporting_source():
    out = check("Bitcoin slid to $66,000 after the leak [2].", SOURCES, judge())
    assert out[0].supported and out[0].sources == [1] and out[0].repaired


def test_out_of_range_markers_are_dropped():
    out = check("The leak came from misconfigured API access controls [7][0].", SOURCES, judge())
    assert out[0].sources == [2]


def test_unsupported_sentence_is_flagged_and_uncited():
    out = check("Anthropic's share price doubled to 900 dollars [1].", SOURCES, judge())
    assert not out[0].supported and out[0].sources == []


def test_a_sentence_naming_what_no_article_mentions_is_unsupported_and_not_repaired():
    question = "How far did Ethereum slide after the leak?"
    known = {"bitcoin", "leak", "slide", "markets"}  # what the articles use, in this test
    claims = "Ethereum slid to $66,000 after the leak [1]. Markets reacted immediately after the leak [2]."
    loose = check(claims, SOURCES, judge(), question)
    assert loose[0].supported, "without the vocabulary, the wording alone passes"
    strict = check(claims, SOURCES, judge(), question, lambda w: w.lower() in known)
    assert not strict[0].supported and strict[0].sources == [], "and no other source is found for it either"
    assert strict[1].supported and strict[1].sources == [1], "a sentence that does not name it is judged as before"


def test_render_renumbers_by_first_appearance():
    out = check("The leak came from misconfigured API access controls [2]. Bitcoin slid to $66,000 [1].",
                SOURCES, judge())
    text, mapping = render(out)
    assert mapping == {2: 1, 1: 2}
    assert text == "The leak came from misconfigured API access controls [1]. Bitcoin slid to $66,000 [2]."


def test_a_word_that_restates_the_question_word_is_premise_not_claim():
    # "Where is ...?" answered "... is located at X": "located" says what "where" asked, so the passage need not
    # say it. Without the question it is a word the passage lacks; a word the question's wh-word does not cover
    # ("stored") still counts against the claim.
    passage = "If $XDG_CONFIG_HOME is either not set or empty, $HOME/.config/git/ignore is used instead."
    question = "Where is my personal global ignore file?"
    claim = "The personal global ignore file is located at $HOME/.config/git/ignore."
    assert pair_features(claim, passage, 0.8, question)[0] == 1.0
    assert pair_features(claim, passage, 0.8)[0] < 1.0
    assert pair_features(claim, passage, 0.8, "Which personal global ignore file is it?")[0] < 1.0
    stored = "The personal global ignore file is stored at $HOME/.config/git/ignore."
    assert pair_features(stored, passage, 0.8, question)[0] < 1.0
    assert premise_words("Why did it leak?") >= {"reason", "becaus"}
    assert not premise_words("Somewhere else?") & {"locat", "situat"}


def test_number_feature_catches_a_wrong_figure():
    right = pair_features("Bitcoin slid to $66,000.", SOURCES[0].text, 0.9)
    wrong = pair_features("Bitcoin slid to $60,000.", SOURCES[0].text, 0.9)
    assert right[1] == 1.0 and wrong[1] == 0.0
    assert numbers("4–6% and 66,000") == {"4", "6", "66000"}
