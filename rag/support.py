"""The support judge: does this passage support this sentence? A probability, on the CPU, in milliseconds.

It is a logistic model over six features of a (sentence, passage) pair (`FEATURES`):
  - recall of the sentence's content words (stemmed) in the passage, and how many it adds that the passage lacks,
  - whether every number in the sentence appears in the passage (a wrong figure is a common false claim),
  - whether the names it uses (capitalised words) appear in the passage,
  - cosine similarity of their embeddings (the same MiniLM that retrieval uses, so paraphrases count),
  - whether one of them is negated and the other not.
It cannot read meaning: a contradiction in the same words ("below" for "above") often passes. The calibration
report in `rag eval --calibrate` says how often.
The answer verifier uses it to keep, repair or drop citations; the eval uses the very same judge for ALCE
citation recall and precision, and calibrates its weights against hand-labelled pairs (`rag eval --calibrate`
prints refitted weights; they are pasted here deliberately, never fitted at run time).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ingest.embed import Embedder
from rag.tokens import STOPWORDS, content_words, terms, words

# Fitted by `rag eval --calibrate` on eval/gold/support_pairs.jsonl (logistic regression, see eval/judge.py).
WEIGHTS = {"bias": -5.8, "recall": 2.83, "numbers": 1.39, "cosine": 1.72, "names": 1.62, "missing": -0.04,
           "negation": -0.17}

_NUM = re.compile(r"\d+(?:[.,]\d+)*")


_NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                 "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "twenty": "20",
                 "thirty": "30", "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000",
                 "half": "0.5", "dozen": "12", "single": "1", "once": "1", "twice": "2"}
_NEGATION = re.compile(r"\b(?:not|no|never|none|nothing|neither|nor|without|cannot|can't|won't|isn't|aren't|wasn't"
                       r"|weren't|doesn't|don't|didn't|hasn't|haven't|hadn't|shouldn't|wouldn't|couldn't)\b|n[’']t\b",
                       re.I)
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][a-zA-Z0-9]+(?:[-.][A-Za-z0-9]+)*)")


def numbers(text: str) -> set[str]:
    """Numbers in a text, normalised: "66,000" -> "66000", "three" -> "3"."""
    found = {n.replace(",", "") for n in _NUM.findall(text)}
    return found | {_NUMBER_WORDS[w] for w in words(text) if w in _NUMBER_WORDS}


def _names(text: str) -> set[str]:
    """Capitalised words not at a sentence start: names of people, firms, models, places."""
    return {m.lower() for m in _PROPER.findall(text.strip())} - STOPWORDS


FEATURES = ("recall", "numbers", "cosine", "names", "missing", "negation")


# Words an answer uses only to restate what its question asks for ("Where is the file?" "It is located at ..."):
# part of the reader's premise, like the question's own words, so the passage need not say them.
_FRAMING = (("where", ("locat", "situat")), ("why", ("reason", "becaus")), ("when", ("time", "date")),
            ("who", ("person",)), ("how many", ("number", "total")), ("how much", ("amount", "total")))


def premise_words(given: str) -> set[str]:
    """The content words a claim may take from the question it answers: the question's own, and the words that
    restate its question word (`_FRAMING`)."""
    asked = " ".join(words(given))
    framing = {w for wh, ws in _FRAMING if re.search(rf"\b{wh}\b", asked) for w in ws}
    return set(content_words(given)) | framing


def pair_features(claim: str, passage: str, cosine: float, given: str = "") -> tuple[float, ...]:
    """The judge's features of a pair, in FEATURES order (each in [0, 1]).

    `given` is the question the claim answers: words, names and numbers the claim only repeats from it are the
    reader's premise, not the claim's content, so the passage need not say them ("the biggest digital coin sank
    to $66,000" answers a question about "the biggest digital coin" with "$66,000").
    """
    cw = set(content_words(claim)) - premise_words(given)
    pw = set(content_words(passage))
    nums = numbers(claim) - numbers(given)
    num_ok = 1.0 if not nums else len(nums & numbers(passage)) / len(nums)
    if cw:
        recall = len(cw & pw) / len(cw)
    else:  # nothing but the question's own words: only a figure it adds can carry the answer
        recall = 1.0 if nums else 0.0
    missing = min(1.0, len(cw - pw) / 5)  # words the passage never says: an added fact, a swapped entity
    names = _names(claim) - {w.lower() for w in terms(given)}
    plow = passage.lower()
    names_ok = 1.0 if not names else sum(n in plow for n in names) / len(names)
    negation = float(bool(_NEGATION.search(claim)) != bool(_NEGATION.search(passage)))
    return recall, num_ok, cosine, names_ok, missing, negation


def probability(features: tuple[float, ...], weights: dict[str, float] = WEIGHTS) -> float:
    z = weights["bias"] + sum(weights.get(name, 0.0) * f for name, f in zip(FEATURES, features))
    return 1.0 / (1.0 + math.exp(-z))


# The meaning judge: the local model asked whether a passage says what a claim says, read as P(yes) from its
# next-token logits (rag/llm.py `yes_probability`) and calibrated by a logistic on logit(P(yes)). Fitted with
# `rag eval --calibrate --judge llm` on the dev split of eval/gold/support_pairs.jsonl (119 pairs; the split keeps
# the pairs of one passage together); on the held-out test split (140 pairs) it scores accuracy 0.900 and ROC-AUC
# 0.966, against 0.73 / 0.82 for the word-overlap judge. Off in the verifier by default (Settings.meaning_judge):
# on the news dev split it raised false abstention from 0.135 to 0.459 and cost 1.5 s a question; the eval uses it
# as its second judge.
MEANING = {"bias": -2.527, "logit_yes": 2.651}
MEANING_PROMPT = "Does the source say what the claim says? Answer yes or no."


def meaning_messages(claim: str, passage: str, system: str) -> list[dict[str, str]]:
    """The judge's question, under the answering system prompt (whose tokens llama.cpp keeps cached)."""
    user = f"Source: {' '.join(passage.split())}\n\nClaim: {claim}\n\n{MEANING_PROMPT}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def calibrated(p_yes: float, weights: dict[str, float] = MEANING) -> float:
    p = min(max(p_yes, 1e-6), 1 - 1e-6)
    return 1.0 / (1.0 + math.exp(-(weights["bias"] + weights["logit_yes"] * math.log(p / (1 - p)))))


class MeaningJudge:
    """Reads meaning where word overlap cannot: a wrong entity, a contradiction, a true sentence that says something
    else than the claim. Needs a model that exposes `yes_probability` (the llama.cpp backend); one model call of a
    short prompt per pair, remembered for the process."""

    def __init__(self, llm, system: str, threshold: float = 0.5, weights: dict[str, float] | None = None) -> None:
        self.llm = llm
        self.system = system
        self.threshold = threshold
        self.weights = weights or MEANING
        self._seen: dict[tuple[str, str], float] = {}

    @staticmethod
    def available(llm) -> bool:
        return callable(getattr(llm, "yes_probability", None))

    def raw(self, claim: str, passage: str) -> float:
        """The model's P(yes), uncalibrated."""
        key = (claim, passage)
        if key not in self._seen:
            self._seen[key] = self.llm.yes_probability(meaning_messages(claim, passage, self.system))
        return self._seen[key]

    def probability(self, claim: str, passage: str) -> float:
        return calibrated(self.raw(claim, passage), self.weights)

    def supports(self, claim: str, passages: list[str]) -> bool:
        return bool(passages) and self.probability(claim, " ".join(passages)) >= self.threshold


class SupportJudge:
    """Scores (claim, passage) pairs; `threshold` turns a probability into supported / not supported."""

    def __init__(self, embedder: Embedder, threshold: float = 0.5, weights: dict[str, float] | None = None) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.weights = weights or WEIGHTS

    def features(self, pairs: list[tuple[str, str]], given: str = "") -> list[tuple[float, ...]]:
        if not pairs:
            return []
        texts = sorted({t for pair in pairs for t in pair})
        index = {t: i for i, t in enumerate(texts)}
        vecs = self.embedder.embed(texts)
        return [pair_features(c, p, float(np.dot(vecs[index[c]], vecs[index[p]])), given) for c, p in pairs]

    def scores(self, pairs: list[tuple[str, str]], given: str = "") -> list[float]:
        """Support probability of each (claim, passage); `given`: the question the claims answer, if any."""
        return [probability(f, self.weights) for f in self.features(pairs, given)]

    def supports(self, claim: str, passages: list[str]) -> bool:
        """Do these passages together support the claim? (The judge an ALCE metric calls.)"""
        if not passages:
            return False
        return self.scores([(claim, " ".join(passages))])[0] >= self.threshold
