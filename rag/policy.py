"""The answer policy, in one place: when a question is worth a model call, when a reply is a decline, when a
verified answer still does not answer the question, and which names a claim may not use.

Every rule here decides between answering and abstaining ("Not found in these articles."); each is a pure function
of text and scores, so `tests/test_policy.py` checks them from one table. The numbers are named, with the run that
chose them. What counts as *support* for a claim is not decided here (rag/support.py, the judge), nor how
passages are scored for retrieval (rag/retrieve.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from enum import StrEnum

from rag.tokens import STOPWORDS, content_words, terms

# Best dense cosine between the question and any retrieved chunk or sentence below which a question is not worth a
# model call. Chosen at d4fca58 on the bundled corpus: all 21 unanswerable gold questions of that day fell below
# 0.25 or were declined by the model; `Settings.min_relevance` overrides it.
MIN_RELEVANCE = 0.25
# ...unless one sentence holds this IDF-weighted share of the question's content words: "How many years has
# Martin von Wysiecki been in the industry?" meets "After 30 years in this industry" at cosine 0.21. Chosen at
# b08e96e (`rag eval`, abstention recall 0.667 -> 0.810, false abstention 0.219 -> 0.205); `Settings.min_overlap`.
MIN_OVERLAP = 0.6


NOT_FOUND_TOKEN = "NOT_FOUND"  # what the system prompt tells the model to reply when no source answers
# A decline or an unsupported reply is retried once with the best source alone when the question is this near it in
# meaning, or that source has this share of its words (chosen on the dev split; see the closing note of the run).
RETRY_SIMILARITY = 0.45
RETRY_OVERLAP = 0.5


class Abstain(StrEnum):
    """Why an answer became an abstention (Answer.abstain_reason)."""

    WEAK_RETRIEVAL = "weak_retrieval"  # nothing near the question: the model was not asked
    DECLINED = "declined"  # the model said the sources do not answer
    UNSUPPORTED = "unsupported"  # no sentence of the reply is supported by its sources
    WRONG_KIND = "wrong_kind"  # a how-many / when / how-long question got no figure or duration
    OFF_FOCUS = "off_focus"  # a which-N / what-N question whose sources never mention an N: the model was not asked


RETRY_ON = frozenset({Abstain.DECLINED, Abstain.UNSUPPORTED})


def worth_retry(best_similarity: float, best_overlap: float) -> bool:
    """After a decline: is the best source near enough that the model probably overlooked it among the others?"""
    return best_similarity >= RETRY_SIMILARITY or best_overlap >= RETRY_OVERLAP


_YES_NO = re.compile(r"^\W*(?:and |so |but |then |also )?(?:can|could|does|do|did|is|are|was|were|will|would|should|"
                     r"has|have|had|may|must)\b", re.I)


# A sentence with this share of the question's words (IDF-weighted) is quoted when the model declines any question
# (tuned on the dev splits: gitdocs facts 0.452 -> 0.488, false abstention 0.179 -> 0.143, abstention recall 0.500
# unchanged; news dev unchanged at 0.6-0.9; 0.8 and above changed nothing on either).
QUOTE_OVERLAP = 0.7


def quotes_instead(question: str, best_similarity: float, best_overlap: float, known: Callable[[str], bool]) -> bool:
    """After the model declined (or wrote nothing supported) every try, answer with the best source, quoted and
    cited, when every word of the question is one some article uses (`known`: a word no article has means the
    passage is about something else) and either
      - the question is yes-or-no and its best source is as near as `worth_retry` asks: the reader draws the yes or
        no. A 1.5B model declines such questions where the passage settles them ("Can the main worktree be
        removed?" / "The main worktree cannot be removed."), and told to say yes or no it says yes to nearly all;
      - or one sentence holds QUOTE_OVERLAP of the question's words: the model overlooked the sentence that answers
        ("Which macOS release is required ...?" / "... requires some launchctl features available only in macOS
        10.11 or later")."""
    if not all(known(w) for w in terms(question)):
        return False
    return ((_YES_NO.search(question) is not None and worth_retry(best_similarity, best_overlap))
            or best_overlap >= QUOTE_OVERLAP)


_VERDICT = re.compile(r"^\W*(?:yes|no)\b", re.I)


def doubts_verdict(question: str, first_claim: str, supported: bool) -> bool:
    """A yes-or-no question whose answer opens with a bare "Yes" or "No" that its sources do not support: the verdict
    is the model's, not the articles' (a 1.5B model says yes to nearly every such question, "Yes, he thinks it will
    replace them" where the passage says "it won't replace"), so the passage that settles it should stand in its
    place, quoted and cited, and the reader draws the yes or no (as `quotes_instead` does after a decline)."""
    return not supported and _YES_NO.search(question) is not None and _VERDICT.match(first_claim) is not None


def worth_asking(has_sources: bool, best_similarity: float, best_overlap: float, min_similarity: float = MIN_RELEVANCE,
                 min_overlap: float = MIN_OVERLAP) -> bool:
    """Worth a model call: sources exist, and one is near in meaning or has most of the question's words."""
    return has_sources and (best_similarity >= min_similarity or best_overlap >= min_overlap)


_DECLINE = re.compile(r"NOT_FOUND|not (?:found|mentioned|provided|specified|stated|available) in the "
                      r"(?:sources|articles|provided)|(?:sources|articles) do(?:es)? not "
                      r"(?:contain|mention|say|provide|specify)", re.I)


_ONLY_MARKERS = re.compile(r"^(?:\s*\[\s*\d{1,3}(?:\s*[,;]\s*\d{1,3})*\s*\][.!?]?)+\s*$")


def only_points(reply: str) -> bool:
    """The reply is nothing but source numbers ("[2]"): the model pointed at the passage that answers instead of
    writing it out, so the answer is that passage, cited (rag/verify.py `pointed`), and verified like any other."""
    return _ONLY_MARKERS.match(reply) is not None


def declines(reply: str) -> bool:
    """The model's reply says the sources do not answer (NOT_FOUND, or words to that effect), or is empty."""
    return not reply.strip() or _DECLINE.search(reply) is not None


_LEAD = r"^\W*(?:and |so |but |then |also )?"
_WANTS_NUMBER = re.compile(_LEAD + r"(?:how many|how much|what (?:number|percentage|share|price)|"
                           r"what (?:is|was) the (?:number|price|cost|size|count)(?= of| for| to| at| in|\W*$)|"
                           r"when|in what year|on what date|"
                           r"what(?:'s| is| was| were| are)? (?:\S+ ){0,3}(?:score|rating)s?\b)", re.I)
_NUMBERISH = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|dozen|hundred|thousand|million"
                        r"|billion|yesterday|today|tomorrow|week|month|year|hours?|days?)\b", re.I)
_WANTS_DURATION = re.compile(_LEAD + r"how long\b", re.I)
_DURATION = re.compile(r"\b(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?|overnight)\b", re.I)


def answers_kind(question: str, supported: list[str]) -> bool:
    """A question after a number, a date or a duration needs a supported sentence that gives one, else it was not
    answered: "How long were the files exposed?" is not answered by "nearly 3,000 files were exposed"."""
    claims = [_without_question_words(s, question) for s in supported]
    if _WANTS_DURATION.search(question):
        return any(_DURATION.search(s) for s in claims)
    return not _WANTS_NUMBER.search(question) or any(_NUMBERISH.search(s) for s in claims)


_AUX = r"(?:is|are|was|were|did|does|do|has|have|had|can|could|will|would|should|may|might|must)"
# "What is the context window of X?", "Which is the branch for ...": the words between the article and "of".
_FOCUS_OF = re.compile(_LEAD + r"(?:what|which)\s+(?:is|are|was|were)\s+(?:the|a|an)\s+((?:[\w.'-]+\s+){0,3}?[\w.'-]+)"
                       r"\s+(?:of|for|in|on|at|that|which|behind|between)\b", re.I)
# "Which government agency is ...", "What benchmark score did ...": the words between "which" and the verb.
_FOCUS_NP = re.compile(_LEAD + r"(?:what|which)\s+(?!" + _AUX + r"\b)((?:[\w.'-]+\s+){0,3}?[\w.'-]+)\s+" + _AUX + r"\b",
                       re.I)
# "How many parameters does X have?": the words between "how many" and the verb.
_FOCUS_MANY = re.compile(_LEAD + r"how\s+many\s+((?:[\w.'-]+\s+){0,3}?[\w.'-]+)\s+" + _AUX + r"\b", re.I)
# Words of a focus that say what form the answer takes, not what it is about: the passage gives a name, a price or
# a date as a value ("called Mythos", "$66,000"), not as the word. "exactly" is not a noun at all.
_FORM = frozenset("name names price prices number numbers amount amounts date dates time times year years figure "
                  "figures value values size sizes length percentage share kind kinds type types sort sorts "
                  "exactly".split())


def focus(question: str) -> list[str]:
    """What a what-N / which-N / how-many-N question asks for, as words, without the words of its form: "Which
    government agency is investigating?" -> ["government", "agency"]; "What is the context window of X?" ->
    ["context", "window"]; "How many parameters does X have?" -> ["parameters"]; "What price did it sink to?" and
    "What is X?" -> []."""
    m = _FOCUS_OF.match(question) or _FOCUS_NP.match(question) or _FOCUS_MANY.match(question)
    if not m:
        return []
    return [w for w in m.group(1).split() if w.lower() not in _FORM and w.lower() not in STOPWORDS]


def names_focus(question: str, passages: list[str]) -> bool:
    """One passage uses a word of what the question asks for (stemmed), and a word of what it names, if it names
    anything; or the question asks for no such thing. "Which government agency is investigating the leak?" is not
    answered by passages that mention no agency and no government, however well they support the sentence a model
    writes from them: given "The documents describe it as 'larger and more intelligent than our Opus models'", a
    1.5B model answered "The context window of Claude Mythos is described as 'larger and more intelligent ...'",
    which restates the question and passes the judge. Nor is "What is the context window of Claude Mythos?"
    answered by "OpenAI's GPT-5.4 shipped with a 1,000,000-token context window": the model wrote "The context
    window of Claude Mythos is 1,000,000 tokens [1]"."""
    wanted = focus(question)
    if not wanted:
        return True
    focus_words = set(content_words(" ".join(wanted)))
    subject = {w for name in question_names(question) if name not in wanted for w in content_words(name)}
    naming = [words for words in (set(content_words(p)) for p in passages) if focus_words & words]
    if not naming:
        # What a count counts is often named otherwise ("files" for "documents"), so a passage that never names it
        # may still give it; a passage that counts it for another subject is the trap.
        return _FOCUS_MANY.match(question) is not None
    return not subject or any(_names_one(subject, words) for words in naming)


def _names_one(subject: set[str], words: set[str]) -> bool:
    """The passage's words name the subject: a stem in common, or one that begins alike, as a name and the word made
    from it do ("chines" and "china", for "Chinese labs" and "China's labs"; "japanes" and "japan")."""
    return bool(subject & words) or any(_alike(s, w) for s in subject for w in words)


def _alike(a: str, b: str) -> bool:
    """Two stems share all but the last two letters of the shorter, and at least four."""
    return len(os.path.commonprefix([a, b])) >= max(4, min(len(a), len(b)) - 2)


def question_names(question: str) -> list[str]:
    """The names in a question: its capitalised words past the first ("Claude", "Mythos", "Git")."""
    return [w for w in terms(question)[1:] if w[0].isupper()]


def _without_question_words(claim: str, question: str) -> str:
    """The claim without the words it repeats from the question: a figure the question already gave ("MiniMax
    M2.5") is not the figure it asks for."""
    asked = {w.lower() for w in terms(question)}
    return " ".join(w for w in terms(claim) if w.lower() not in asked)


def foreign_names(question: str, known: Callable[[str], bool]) -> set[str]:
    """Names in the question (capitalised words past its first) that `known` says no article uses: a claim that
    names one ("Ethereum dropped to $66,000", when only bitcoin is covered) cannot be supported by any passage."""
    return {w.lower() for w in question_names(question) if not known(w)}


def names_any(claim: str, names: set[str]) -> bool:
    return any(w.lower() in names for w in terms(claim))


def before_asking(question: str, has_sources: bool, best_similarity: float, best_overlap: float, passages: list[str],
                  min_similarity: float = MIN_RELEVANCE, min_overlap: float = MIN_OVERLAP) -> Abstain | None:
    """Before the model call: why the question gets none (an abstention), or None when the model is asked.
    `passages`: the text of the retrieved sources. `rag bench` asks the same, to know which answers call the model."""
    if not worth_asking(has_sources, best_similarity, best_overlap, min_similarity, min_overlap):
        return Abstain.WEAK_RETRIEVAL
    if not names_focus(question, passages):
        return Abstain.OFF_FOCUS
    return None


def verdict(reply_declines: bool, supported: list[str], question: str) -> Abstain | None:
    """After generation and verification: why the answer must be an abstention, or None when it stands."""
    if reply_declines:
        return Abstain.DECLINED
    if not supported:
        return Abstain.UNSUPPORTED
    if not answers_kind(question, supported):
        return Abstain.WRONG_KIND
    return None
