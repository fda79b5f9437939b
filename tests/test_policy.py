"""The answer policy (rag/policy.py), one table per rule: when to ask the model, what a decline is, when a verified
answer still does not answer, which names no article uses."""

from __future__ import annotations

import pytest

from rag.policy import (
    Abstain,
    answers_kind,
    before_asking,
    declines,
    doubts_verdict,
    focus,
    foreign_names,
    names_any,
    names_focus,
    only_points,
    quotes_instead,
    verdict,
    worth_asking,
)


@pytest.mark.parametrize("has_sources, similarity, overlap, expected", [
    (True, 0.30, 0.0, True),  # near in meaning
    (True, 0.25, 0.0, True),  # the threshold itself counts
    (True, 0.10, 0.7, True),  # far in meaning, but one sentence has most of the question's words
    (True, 0.10, 0.5, False),
    (False, 0.90, 1.0, False),  # nothing to show the model
])
def test_worth_asking(has_sources, similarity, overlap, expected):
    assert worth_asking(has_sources, similarity, overlap) is expected


@pytest.mark.parametrize("reply, expected", [
    ("NOT_FOUND", True),
    ("  ", True),
    ("The answer is not mentioned in the sources.", True),
    ("The articles do not say how many parameters it has.", True),
    ("Bitcoin slid to $66,000 [1].", False),
    ("The leak was not found by Anthropic itself but by researchers [2].", False),
])
def test_declines(reply, expected):
    assert declines(reply) is expected


@pytest.mark.parametrize("reply, expected", [
    ("[2]", True),
    (" [2]. ", True),
    ("[1, 3]", True),
    ("[1][3]", True),
    ("Bitcoin slid to $66,000 [1].", False),
    ("See [2].", False),  # words: an answer of its own, judged as one
    ("", False),  # empty: a decline, not a pointer
])
def test_only_points(reply, expected):
    assert only_points(reply) is expected


@pytest.mark.parametrize("question, similarity, overlap, expected", [
    ("Can the main worktree be removed?", 0.6, 0.0, True),
    ("And does git stash show list untracked files?", 0.3, 0.6, True),  # a follow-up's lead word first
    ("Is Mythos released?", 0.3, 0.2, False),  # its best source is not near enough
    # not yes-or-no: only a sentence with most of the question's words is quoted
    ("How do I remove the main worktree?", 0.9, 1.0, True),
    ("Which release is required?", 0.3, 0.7, True),
    ("Which release is required?", 0.9, 0.69, False),
    ("Which release of the main worktree is required?", 0.3, 0.69, False),
    ("Can the main worktree be purged?", 0.9, 1.0, False),  # "purged": no article's word
])
def test_quotes_instead(question, similarity, overlap, expected):
    known = {"main", "worktree", "removed", "git", "stash", "show", "list", "untracked", "files", "mythos",
             "released", "remove", "release", "required"}
    from rag.tokens import STOPWORDS

    def knows(w: str) -> bool:  # as Retriever.knows: stopwords count as known
        return w.lower() in known | STOPWORDS

    assert quotes_instead(question, similarity, overlap, knows) is expected


@pytest.mark.parametrize("question, first_claim, supported, doubted", [
    ("Does he think Mythos will replace today's models?", "Yes, he thinks Mythos will replace them.", False, True),
    ("Can the main worktree be removed?", "No, it cannot be removed.", False, True),
    ("and is it cheap?", "yes — it is cheap.", False, True),
    ("Does he think Mythos will replace today's models?", "Yes, he thinks Mythos will replace them.", True, False),
    ("Can the main worktree be removed?", "The main worktree cannot be removed.", False, False),  # no bare verdict
    ("How far did bitcoin fall?", "Yes, it fell to $66,000.", False, False),  # not a yes-or-no question
    ("Does the essay cite a report?", "Yesterday's report said so.", False, False),  # "Yesterday" is no "Yes"
])
def test_an_unsupported_yes_or_no_verdict_is_doubted(question, first_claim, supported, doubted):
    assert doubts_verdict(question, first_claim, supported) is doubted


@pytest.mark.parametrize("question, claim, answered", [
    ("What was the score on SWE-bench?", "The documents describe dramatically higher scores on benchmarks.", False),
    ("What was the score on SWE-bench?", "It scored 93.9% on SWE-bench.", True),
    ("How long were the documents exposed?", "Nearly 3,000 internal documents were exposed.", False),
    ("How long has the author worked in the industry?", "He has worked in the industry for 30 years.", True),
    ("and how many stocks fell?", "Cybersecurity stocks fell.", False),
    ("When did the leak happen?", "The leak happened last week.", True),
    ("What is the cost problem the articles describe?", "Running the model is expensive.", True),
    ("Who found the files?", "Two researchers found them.", True),
    # a figure the question already gave is not the figure it asks for
    ("What benchmark score did MiniMax M2.5 get?", "MiniMax M2.5 got a dramatically higher score.", False),
    ("What benchmark score did MiniMax M2.5 get?", "MiniMax M2.5 scored 71% on SWE-bench.", True),
])
def test_a_question_after_a_figure_or_a_duration_needs_one(question, claim, answered):
    assert answers_kind(question, [claim]) is answered


def test_foreign_names_are_capitalised_question_words_no_article_uses():
    known = {"bitcoin", "anthropic's", "anthropic"}
    question = "How much did Ethereum and Bitcoin drop after Anthropic's leak?"
    names = foreign_names(question, lambda w: w.lower() in known)
    assert names == {"ethereum"}
    assert names_any("Ethereum dropped to $66,000.", names) and not names_any("Bitcoin dropped.", names)


@pytest.mark.parametrize("question, wanted", [
    ("What is the context window of Claude Mythos?", ["context", "window"]),
    ("Which government agency is investigating the leak?", ["government", "agency"]),
    ("And what benchmark score did MiniMax M2.5 get?", ["benchmark", "score"]),
    ("Which branch should a bug fix go on first?", ["branch"]),
    ("What kinds of security work does it target?", ["security", "work"]),
    ("How many parameters does Claude Mythos have?", ["parameters"]),
    ("And how many files were exposed?", ["files"]),
    # the form of the answer, not its topic: a name or a price is given as a value
    ("What is the name of Anthropic's unreleased model?", []),
    ("What price did the biggest digital coin sink to?", []),
    ("What exactly was exposed in the leak?", []),
    # no noun asked for
    ("What does gc.auto do?", []),
    ("What did the xAI one launch with?", []),
    ("What is Claude Mythos?", []),
    ("How did the leak happen?", []),
    ("How many were hit?", []),
    ("How much did bitcoin fall?", []),
])
def test_the_focus_of_a_question_is_the_thing_it_asks_for(question, wanted):
    assert focus(question) == wanted


def test_passages_name_the_focus_when_one_uses_a_word_of_it():
    assert names_focus("Which government agency is investigating?", ["Two governments opened inquiries."])
    assert not names_focus("What is the context window of Claude Mythos?",
                           ['The documents describe it as "larger and more intelligent than our Opus models".'])
    assert names_focus("What is Claude Mythos?", ["Anything at all."])


def test_the_focus_must_be_named_with_what_the_question_names():
    # With "Mythos" in every passage of a folder about Mythos, retrieval brings the sentences that give a context
    # window, of any model; one about GPT-5.4 does not say the window of Claude Mythos.
    question = "What is the context window of Claude Mythos?"
    gpt = "OpenAI's GPT-5.4 shipped with a 1,000,000-token context window."
    assert not names_focus(question, [gpt, "Claude Mythos is a new model class above Opus."])
    assert names_focus(question, [gpt, "Mythos has a 500,000-token context window."])
    assert names_focus("What context window did GPT-5.4 ship with?", [gpt])
    assert names_focus("Which existing Claude model is Mythos positioned against?",  # "Claude" is the focus
                       ["Claude Mythos represents a new model class above the existing Opus tier."])
    assert names_focus("Which exchange did bitcoin fall on?", ["Exchanges halted."])  # it names nothing
    # The same for a count: a model with 22B parameters is not Claude Mythos.
    mistral = "Mistral Small 4 has 22B parameters and runs on one GPU."
    assert not names_focus("How many parameters does Claude Mythos have?",
                           [mistral, "Claude Mythos is a new model class above Opus."])
    assert names_focus("How many parameters does Mistral Small 4 have?", [mistral])


def test_a_count_may_name_what_it_counts_otherwise():
    # "files" is not in the passage, but "documents" are what the question counts; a which-N question gets no such
    # leeway, since its answer is the thing itself.
    exposed = "The misconfiguration exposed nearly 3,000 internal documents."
    assert names_focus("How many files could anyone view?", [exposed])
    assert not names_focus("Which files could anyone view?", [exposed])


def test_a_name_matches_the_word_made_from_it():
    china = "China's labs shipped five major models in a single month."
    assert names_focus("How many major models did Chinese labs ship?", [china])
    assert names_focus("Which major models did the Japanese labs ship?", ["Japan's labs shipped two major models."])
    anthology = "An anthology of the major models of the year."  # "anth" is not "anthrop"
    assert not names_focus("How many major models did Anthropic ship?", [china, anthology])


@pytest.mark.parametrize("declined, supported, question, expected", [
    (True, ["anything"], "What happened?", Abstain.DECLINED),
    (False, [], "What happened?", Abstain.UNSUPPORTED),
    (False, ["Stocks fell."], "How many stocks fell?", Abstain.WRONG_KIND),
    (False, ["Four stocks fell."], "How many stocks fell?", None),
])
def test_verdict(declined, supported, question, expected):
    assert verdict(declined, supported, question) is expected


def test_before_asking_names_why_the_model_is_not_asked():
    assert before_asking("How far did bitcoin fall?", False, 0.9, 0.9, []) is Abstain.WEAK_RETRIEVAL
    assert before_asking("How far did bitcoin fall?", True, 0.1, 0.1, ["Bitcoin slid."]) is Abstain.WEAK_RETRIEVAL
    assert before_asking("Which exchange did bitcoin fall on?", True, 0.9, 0.9, ["Bitcoin slid."]) is Abstain.OFF_FOCUS
    assert before_asking("Which exchange did bitcoin fall on?", True, 0.9, 0.9, ["Exchanges halted."]) is None
