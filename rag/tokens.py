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
# Which words `content_words` makes; anything kept on disk that was made from them (the retriever's index) carries
# it, and is rebuilt when it changes. 2: irregular past forms read as their verb.
TOKENS_VERSION = 2


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


# Past forms of common irregular verbs, read as the verb ("fell" -> "fall"), which a suffix stemmer cannot do: a
# question asks "how far did bitcoin fall", the article says it "fell". Forms that are as often another word are
# left out ("left", "saw", "lay", "bore", "lead", "found" as in a company founded).
_IRREGULAR = {past: verb for verb, forms in (
    ("arise", "arose arisen"), ("become", "became"), ("begin", "began begun"), ("bite", "bit bitten"),
    ("blow", "blew blown"), ("break", "broke broken"), ("bring", "brought"), ("build", "built"), ("buy", "bought"),
    ("catch", "caught"), ("choose", "chose chosen"), ("come", "came"), ("deal", "dealt"), ("draw", "drew drawn"),
    ("drive", "drove driven"), ("eat", "ate eaten"), ("fall", "fell fallen"), ("feel", "felt"),
    ("fight", "fought"), ("fly", "flew flown"), ("forget", "forgot forgotten"), ("freeze", "froze frozen"),
    ("get", "got gotten"), ("give", "gave given"), ("go", "went gone"), ("grow", "grew grown"), ("hide", "hid hidden"),
    ("hold", "held"), ("keep", "kept"), ("know", "knew known"), ("lose", "lost"), ("make", "made"), ("mean", "meant"),
    ("meet", "met"), ("pay", "paid"), ("rise", "rose risen"), ("ride", "rode ridden"), ("run", "ran"),
    ("seek", "sought"), ("sell", "sold"), ("send", "sent"), ("shake", "shook shaken"), ("shrink", "shrank shrunk"),
    ("sing", "sang sung"), ("sink", "sank sunk"), ("slide", "slid"), ("speak", "spoke spoken"), ("spend", "spent"),
    ("stand", "stood"), ("steal", "stole stolen"), ("strike", "struck stricken"), ("swim", "swam swum"),
    ("take", "took taken"), ("teach", "taught"), ("tear", "tore torn"), ("tell", "told"), ("think", "thought"),
    ("throw", "threw thrown"), ("understand", "understood"), ("wear", "wore worn"), ("win", "won"),
    ("write", "wrote written")) for past in forms.split()}


def content_words(text: str) -> list[str]:
    """Folded, stemmed words that carry content: no stopwords, no single letters (a single digit stays); the past
    forms of common irregular verbs become the verb."""
    kept = [_IRREGULAR.get(w, w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    stem = stemmer()
    return stem.stemWords(kept) if stem else kept


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """What the lexical index (rag/lexical.py) indexes and searches: each text's content words."""
    return [content_words(t) for t in texts]


def terms(text: str) -> list[str]:
    """Words as written (case kept), hyphens, dots and apostrophes inside them kept, a possessive dropped."""
    return [_POSSESSIVE.sub("", t) for t in TERM.findall(unicodedata.normalize("NFKC", text))]
