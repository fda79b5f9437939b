"""Check every sentence of a model's answer against the sources its markers point to, and repair the markers.

For each sentence: parse its markers (`[1]`, `[1, 2]`, `[1][3]`); keep a marker only when the support judge says
that source supports the sentence (alone, or together with the sentence's other cited sources); when no marker
survives, cite the best supporting source instead; when none supports it, the sentence keeps no marker and is
flagged unsupported. Markers out of range (`[0]`, `[99]`) are dropped. The result is rebuilt text with markers
renumbered by first appearance, so a reader sees [1], [2], ... in order. Nothing here calls a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ingest.chunking import sentence_spans
from rag import policy
from rag.retrieve import Source
from rag.support import MeaningJudge, SupportJudge

MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[[\d\s,;\[\]]*\])+[.!?]*\s*")


@dataclass
class CheckedSentence:
    text: str  # the sentence as shown, with its final markers
    claim: str  # the sentence without markers, as judged
    sources: list[int]  # numbers of the sources (as given to the model) that support it
    supported: bool
    score: float
    repaired: bool  # markers were changed


def parse_markers(text: str) -> list[int]:
    """Every number inside citation markers, in order; `[1,2]` gives 1 and 2, `[[1]]` gives 1."""
    return [int(n) for m in MARKER.finditer(text) for n in re.findall(r"\d+", m.group(1))]


_META = re.compile(r",?\s*\(?(?:as (?:stated|mentioned|noted|described|said) in|according to|see|from) "
                   r"(?:the )?sources?\s*\[?\d*\]?\)?", re.I)


# "Source [1] states that ...", "sources 2 and 3 mention ...": the model names a source as the subject of its
# sentence. Deleting only the marker left "Source states" and "sources and mention" (issue 11, seen in the UI).
_NUM = r"(?:\[\s*\d{1,3}\s*\]|\d{1,3})"
_BRACKETED = r"\[\s*\d{1,3}\s*\]"
# "source 2" is always a reference; "article 5" may be a law's, so an article, passage or document is one only
# with a marker ("article [2]").
_REF = (r"\b(?:the\s+)?(?:(?P<source>source)(?P<plural>s)?\s+" + _NUM + r"(?:\s*(?:,|and|&|,\s*and)\s*" + _NUM
        + r")*|(?P<noun>article|passage|document)(?P<plural2>s)?\s+" + _BRACKETED
        + r"(?:\s*(?:,|and|&|,\s*and)\s*" + _BRACKETED + r")*)")
_VERB = (r"(?:also\s+)?(?:states?|stated|says?|said|mentions?|mentioned|reports?|reported|notes?|noted|claims?|"
         r"claimed|suggests?|suggested|describes?|described|explains?|explained|indicates?|indicated|highlights?|"
         r"highlighted|adds?|added|argues?|argued|points? out|pointed out|reveals?|revealed|writes?|wrote|"
         r"confirms?|confirmed)(?:\s+that)?")
_LEAD_REF = re.compile(r"^\s*" + _REF + r"\s+" + _VERB + r"\s*[,:]?\s*", re.I)
_ANY_REF = re.compile(_REF, re.I)


def source_refs(text: str) -> list[int]:
    """The numbers of the sources a sentence names in words ("Source 1 states", "sources [2] and [3]")."""
    return [int(n) for m in _ANY_REF.finditer(text) for n in re.findall(r"\d+", m.group(0))]


def _unname_sources(text: str) -> str:
    """A sentence that names its sources reads as a claim: "Source [1] states that X" is "X"; "..., while sources
    [2] and [3] say Y" is "..., while other articles say Y". The numbers become the sentence's markers."""
    lead = _LEAD_REF.match(text)
    if lead:
        rest = text[lead.end():]
        text = rest[:1].upper() + rest[1:]

    def plain(m: re.Match) -> str:
        many = bool(m.group("plural") or m.group("plural2")) or len(re.findall(r"\d+", m.group(0))) > 1
        noun = "article" if m.group("source") else m.group("noun").lower()
        phrase = f"other {noun}s" if many else f"another {noun}"
        return phrase.capitalize() if m.start() == 0 or not text[:m.start()].strip() else phrase

    return _ANY_REF.sub(plain, text)


# What separates the markers of a list ("[2], [3], [4]", "[1] and [2]"): once the markers go, it must go too, or
# "... story. [2], [3], [4]" reads "... story.,,".
_BETWEEN_MARKERS = re.compile(r"(?<=\])\s*(?:,\s*and|,|;|and|&)\s*(?=\[\s*\d)")


def strip_markers(text: str) -> str:
    """The sentence as a claim: no markers, no "as stated in source 4", no "Source 1 states that"."""
    out = _META.sub("", text)
    out = _META.sub("", MARKER.sub("", _BETWEEN_MARKERS.sub(" ", _unname_sources(out))))
    while (again := _META.sub("", MARKER.sub("", out))) != out:  # "[1[2]]" leaves "[1]": no marker may survive
        out = again
    out = re.sub(r"\s+([.,;:!?])", r"\1", out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    lead = re.match(r"[,;:]+\s*", out)  # "According to source [1], X" left ", X"
    if lead and out[lead.end():]:
        out = out[lead.end():]
        out = out[:1].upper() + out[1:] if text.lstrip()[:1].isupper() else out
    return out


def split_sentences(text: str) -> list[str]:
    """Answer sentences; markers after a full stop (`... fell. [1] Next`) belong to the sentence before them."""
    out: list[str] = []
    for a, b in sentence_spans(text):
        piece = text[a:b]
        lead = _LEADING_MARKERS.match(piece)
        if out and lead:
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            piece = piece[lead.end() :]
        if piece.strip():
            out.append(piece)
    return out


def _with_markers(claim: str, numbers: list[int]) -> str:
    if not numbers:
        return claim
    marks = "".join(f"[{n}]" for n in numbers)
    m = re.search(r"[.!?]+$", claim)  # "fell 5%." -> "fell 5% [1]."; a closing quote keeps its full stop
    return f"{claim[: m.start()]} {marks}{claim[m.start():]}" if m else f"{claim} {marks}"


def pointed(reply: str, sources: list[Source]) -> str:
    """A reply of bare markers ("[2]", policy.only_points) written out: each source it names, in its own words,
    with its marker. Numbers that name no source are dropped; none left gives an empty reply (a decline)."""
    by_number = {s.number: s for s in sources}
    named = [n for n in dict.fromkeys(parse_markers(reply)) if n in by_number]
    return " ".join(f"{' '.join(by_number[n].text.split())} [{n}]" for n in named)


def check(answer: str, sources: list[Source], judge: SupportJudge, question: str = "",
          known: Callable[[str], bool] | None = None, meaning: MeaningJudge | None = None) -> list[CheckedSentence]:
    """Verify and repair the citations of each answer sentence (of an answer to `question`).

    `known` tells whether any article uses a word: a sentence that names something from the question that no
    article mentions ("Ethereum", when only bitcoin is covered) is unsupported, however close its wording is to a
    passage about something else. `meaning`, when given, then reads each supported sentence against the sources it
    keeps: a sentence whose words match but whose meaning the sources do not carry loses its support."""
    by_number = {s.number: s for s in sources}
    foreign = policy.foreign_names(question, known) if known else set()
    sentences = [(s, strip_markers(s), list(dict.fromkeys(parse_markers(s) + source_refs(s))))
                 for s in split_sentences(answer)]
    sentences = [t for t in sentences if t[1] and re.search(r"\w", t[1])]
    # Score every (sentence, source) pair in one batch: a repair may need any source.
    pairs = [(claim, src.text) for _, claim, _ in sentences for src in sources]
    flat = judge.scores(pairs, question)
    n = len(sources)
    out = []
    for k, (_, claim, cited) in enumerate(sentences):
        score = {src.number: flat[k * n + j] for j, src in enumerate(sources)}
        valid = list(dict.fromkeys(c for c in cited if c in by_number))
        keep: list[int]
        if policy.names_any(claim, foreign):
            keep, best_score = [], 0.0
        else:
            keep, best_score = _supporting(claim, valid, score, by_number, judge, question)
        if not keep:
            best_score = max(score.values(), default=0.0)
        elif meaning is not None:
            best_score = meaning.probability(claim, " ".join(by_number[c].text for c in keep))
            if best_score < meaning.threshold:
                keep = []
        supported = bool(keep)
        out.append(CheckedSentence(text=claim, claim=claim, sources=keep, supported=supported,
                                   score=round(best_score, 4), repaired=keep != cited))
    return out


def _supporting(claim: str, valid: list[int], score: dict[int, float], by_number: dict[int, Source],
                judge: SupportJudge, question: str) -> tuple[list[int], float]:
    """The sources to cite for a claim, and their support: the cited ones that support it (alone, or else
    together), else the single best source if it does; none when nothing does."""
    keep = [c for c in valid if score[c] >= judge.threshold]
    if keep:
        return keep, max(score[c] for c in keep)
    if len(valid) > 1:
        joint = judge.scores([(claim, " ".join(by_number[c].text for c in valid))], question)[0]
        if joint >= judge.threshold:
            return valid, joint
    if score:
        best = max(score, key=lambda number: score[number])
        if score[best] >= judge.threshold:
            return [best], score[best]
    return [], 0.0


def render(sentences: list[CheckedSentence]) -> tuple[str, dict[int, int]]:
    """Answer text with markers renumbered by first appearance; returns (text, source number -> marker number)."""
    mapping: dict[int, int] = {}
    for s in sentences:
        for src in s.sources:
            mapping.setdefault(src, len(mapping) + 1)
    parts = []
    for s in sentences:
        s.text = _with_markers(s.claim, [mapping[src] for src in s.sources])
        parts.append(s.text)
    return " ".join(parts), mapping
