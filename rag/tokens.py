"""Words, in one place: how `rag` splits text into words, which words carry no content, and how they are stemmed.

Two kinds of word, for two jobs:
  - `content_words`: folded (NFKC, casefold), stemmed words without stopwords or single letters. BM25 indexes and
    searches exactly these (`bm25_tokens`), the sentence scorer weighs them by IDF, the support judge counts them.
    A number is one word with its separators ("$66,000" -> "66000", "2.5" stays "2.5", "8%" -> "8").
  - `terms`: words as written, with inner hyphens, dots and apostrophes kept ("GPT-5.1", "state-sponsored",
    "don't") and a possessive dropped ("Anthropic's" -> "Anthropic"), for matching names and figures literally
    (which names an article knows, which words a claim repeats from the question).
Left out: word segmentation for scripts written without spaces (a run of Chinese characters is one word),
stemming for languages other than English, spelling correction and synonyms.
"""

from __future__ import annotations

import re
import unicodedata

STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those what which who whom whose how why when where did does do done has have had will would can could "
    "should may might i you he she we they me him her us them my your our their about into than then there here "
    "so not no yes also just any all some more most such very much many after before over under up down out "
    "said says according article articles".split()
)
# Letters and digits of any script; a "." or "," between digits stays inside the number ("66,000", "2.5", "M2.5").
WORD = re.compile(r"[^\W_]+(?:(?<=\d)[.,](?=\d)[^\W_]+)*")
# A word as written: inner hyphens, dots and apostrophes kept, and a comma between digits.
TERM = re.compile(r"\w+(?:(?:[-.'’]|(?<=\d),(?=\d))\w+)*")
_POSSESSIVE = re.compile(r"['’]s$", re.I)


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


def words(text: str) -> list[str]:
    """Folded words, unstemmed, stopwords kept: "Bitcoin's $66,000" -> ["bitcoin", "s", "66000"]."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [w.replace(",", "") for w in WORD.findall(folded)]


def content_words(text: str) -> list[str]:
    """Folded, stemmed words that carry content: no stopwords, no single letters (a single digit stays)."""
    kept = [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    stem = stemmer()
    return stem.stemWords(kept) if stem else kept


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """What the lexical index (rag/lexical.py) indexes and searches: each text's content words."""
    return [content_words(t) for t in texts]


def terms(text: str) -> list[str]:
    """Words as written (case kept), hyphens, dots and apostrophes inside them kept, a possessive dropped."""
    return [_POSSESSIVE.sub("", t) for t in TERM.findall(unicodedata.normalize("NFKC", text))]
