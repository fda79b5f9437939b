"""The support judge: does this passage support this sentence? A probability, on the CPU, in milliseconds.

It is a logistic model over three features of a (sentence, passage) pair:
  - recall of the sentence's content words (stemmed) in the passage,
  - whether every number in the sentence appears in the passage (a wrong figure is the commonest false claim),
  - cosine similarity of their embeddings (the same MiniLM that retrieval uses, so paraphrases count).
The answer verifier uses it to keep, repair or drop citations; the eval uses the very same judge for ALCE
citation recall and precision, and calibrates its weights against hand-labelled pairs (`rag eval --calibrate`
prints refitted weights; they are pasted here deliberately, never fitted at run time).
"""

from __future__ import annotations

import math
import re

import numpy as np

from ingest.embed import Embedder

# Fitted by `rag eval --calibrate` on eval/gold/support_pairs.jsonl (logistic regression, see eval/judge.py).
WEIGHTS = {"bias": -8.0, "recall": 4.0, "numbers": 4.0, "cosine": 5.0}

STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those what which who whom whose how why when where did does do done has have had will would can could "
    "should may might i you he she we they me him her us them my your our their about into than then there here "
    "so not no yes also just any all some more most such very much many after before over under up down out "
    "said says according article articles".split()
)
_NUM = re.compile(r"\d+(?:[.,]\d+)*")


def stemmer():
    """PyStemmer's English stemmer (one per process), or None when it is not installed."""
    global _stemmer
    if _stemmer is False:
        try:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english")
        except ImportError:
            _stemmer = None
    return _stemmer


_stemmer = False


def content_words(text: str) -> list[str]:
    """Lowercased, stemmed words that carry content (no stopwords, no single letters)."""
    words = [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS and len(w) > 1]
    stem = stemmer()
    return stem.stemWords(words) if stem else words


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUM.findall(text)}


def pair_features(claim: str, passage: str, cosine: float) -> tuple[float, float, float]:
    cw = set(content_words(claim))
    recall = len(cw & set(content_words(passage))) / len(cw) if cw else 0.0
    nums = numbers(claim)
    num_ok = 1.0 if not nums else len(nums & numbers(passage)) / len(nums)
    return recall, num_ok, cosine


def probability(features: tuple[float, float, float], weights: dict[str, float] = WEIGHTS) -> float:
    recall, num_ok, cosine = features
    z = weights["bias"] + weights["recall"] * recall + weights["numbers"] * num_ok + weights["cosine"] * cosine
    return 1.0 / (1.0 + math.exp(-z))


class SupportJudge:
    """Scores (claim, passage) pairs; `threshold` turns a probability into supported / not supported."""

    def __init__(self, embedder: Embedder, threshold: float = 0.5, weights: dict[str, float] | None = None) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.weights = weights or WEIGHTS

    def features(self, pairs: list[tuple[str, str]]) -> list[tuple[float, float, float]]:
        if not pairs:
            return []
        texts = sorted({t for pair in pairs for t in pair})
        index = {t: i for i, t in enumerate(texts)}
        vecs = self.embedder.embed(texts)
        return [pair_features(c, p, float(np.dot(vecs[index[c]], vecs[index[p]]))) for c, p in pairs]

    def scores(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [probability(f, self.weights) for f in self.features(pairs)]

    def supports(self, claim: str, passages: list[str]) -> bool:
        """Do these passages together support the claim? (The judge an ALCE metric calls.)"""
        if not passages:
            return False
        return self.scores([(claim, " ".join(passages))])[0] >= self.threshold
