"""Evaluation metrics for the local RAG Q&A chatbot.

Pure functions over plain dicts (numpy only, no model loading, nothing imported from ``rag``/``ingest``)
that score one chatbot answer record against a gold question from ``eval/gold/questions.jsonl``:

* retrieval: the ranked ``sources`` against the located gold supporting spans (hit@k, recall@k, MRR, nDCG@k);
* answer correctness: share of required facts present, SQuAD-style token F1 against the reference;
* citation quality: ALCE citation recall / precision (Gao et al. 2023, "Enabling Large Language Models to
  Generate Text with Citations") with a pluggable support ``judge``, plus invalid-citation counts;
* abstention on unanswerable questions, and cost (latency percentiles, prompt tokens).

Undefined values (e.g. retrieval metrics for a question with no gold spans) are ``nan``; ``aggregate``
ignores them when averaging.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Judge = Callable[[str, list[str]], bool]
"""(claim, passage texts) -> True if the passages together support the claim."""
Span = tuple[str, int, int]
"""(doc_id, char_start, char_end) of a located gold span."""

NAN = float("nan")
_MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_STYLE = str.maketrans(  # curly quotes, en/em dashes, non-breaking hyphen, minus sign, no-break space
    {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2011": "-",
     "\u2212": "-", "\u00a0": " "}
)


# ----------------------------------------------------------------------------- text helpers
def cited_numbers(text: str) -> list[int]:
    """Citation numbers in markers such as ``[1]``, ``[1][2]`` or ``[1, 2]``, in order, without repeats."""
    numbers = (int(n) for group in _MARKER.findall(text) for n in re.split(r"[,;]", group))
    return list(dict.fromkeys(numbers))


def strip_citations(text: str) -> str:
    """Remove citation markers (and the whitespace before them)."""
    return _MARKER.sub("", text).strip()


def normalize(text: str) -> str:
    """Lower-case, drop citation markers, straighten curly quotes and dashes, collapse whitespace."""
    return " ".join(strip_citations(text).translate(_STYLE).lower().split())


def _squad_tokens(text: str) -> list[str]:
    text = strip_citations(text).translate(_STYLE).lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else NAN


# ----------------------------------------------------------------------------- retrieval
def locate_spans(gold_spans: Iterable[Mapping[str, str]], docs: Mapping[str, str]) -> list[Span]:
    """Offsets of each gold ``{"doc_id", "quote"}`` in ``docs``; raises ValueError naming a missing quote."""
    located = []
    for span in gold_spans:
        doc_id, quote = span["doc_id"], span["quote"]
        start = docs[doc_id].find(quote) if doc_id in docs else -1
        if start < 0:
            raise ValueError(f"gold quote not found in document {doc_id!r}: {quote!r}")
        located.append((doc_id, start, start + len(quote)))
    return located


def _overlaps(source: Mapping[str, Any], span: Span) -> bool:
    doc_id, start, end = span
    return source["doc_id"] == doc_id and source["char_start"] < end and start < source["char_end"]


def retrieval_metrics(
    sources: Sequence[Mapping[str, Any]], gold_spans: Sequence[Span], k: int
) -> dict[str, float]:
    """Score ranked ``sources`` (best first) against located gold spans.

    A source hits a gold span when it comes from the same document and their character ranges overlap.
    ``recall@k`` is the share of gold spans covered by the top k; ``mrr`` uses the whole ranking.
    For ``ndcg@k`` a source has gain 1 if it covers a gold span no higher-ranked source covered (so
    duplicates earn nothing); the ideal ranking has ``min(k, len(gold_spans))`` such sources on top.
    """
    if not gold_spans:
        return {"hit@k": NAN, "recall@k": NAN, "mrr": NAN, "ndcg@k": NAN}
    covered: set[int] = set()
    dcg = 0.0
    for rank, source in enumerate(sources[:k], start=1):
        new = {i for i, span in enumerate(gold_spans) if _overlaps(source, span)} - covered
        if new:
            dcg += 1 / math.log2(rank + 1)
            covered |= new
    idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(gold_spans)) + 1))
    first = next((rank for rank, s in enumerate(sources, 1) if any(_overlaps(s, g) for g in gold_spans)), 0)
    return {
        "hit@k": float(bool(covered)),
        "recall@k": len(covered) / len(gold_spans),
        "mrr": 1 / first if first else 0.0,
        "ndcg@k": dcg / idcg,
    }


# ----------------------------------------------------------------------------- answer correctness
def facts_present(answer_text: str, facts: Sequence[Sequence[str]]) -> float:
    """Share of facts with at least one variant contained in the answer (after ``normalize``); nan if none."""
    if not facts:
        return NAN
    answer = normalize(answer_text)
    return sum(any(normalize(v) in answer for v in variants) for variants in facts) / len(facts)


def token_f1(answer_text: str, reference: str) -> float:
    """SQuAD token F1 (lower-case, no punctuation or articles) with citation markers stripped first."""
    pred, gold = _squad_tokens(answer_text), _squad_tokens(reference)
    if not pred or not gold:
        return float(pred == gold)
    same = sum((Counter(pred) & Counter(gold)).values())
    if not same:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


# ----------------------------------------------------------------------------- citations (ALCE)
def citation_metrics(
    answer: Mapping[str, Any],
    judge: Judge,
    passage_text: Callable[[Mapping[str, Any]], str] | None = None,
    *,
    docs: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """ALCE citation recall and precision of one answer, following ALCE's ``compute_autoais``.

    Per sentence (markers stripped): recall is 1 if ``judge`` accepts the sentence given all its cited
    passages, else 0 (also 0 without citations). A citation of a supported sentence is imprecise when it
    alone does not support the sentence but the other citations still do; citations of an unsupported
    sentence are all imprecise. Precision = precise citations / all sentence citations.

    A sentence's citations are the union of its ``citations`` list and the markers in its text. A citation
    is invalid when its number is not a source number, when a marker has no citation entry, or (with
    ``docs``) when ``docs[doc_id][char_start:char_end] != quote``. As ALCE does for out-of-range ids, a
    sentence citing anything invalid gets recall 0; unlike ALCE, its citations count as imprecise
    instead of being dropped from the precision denominator.

    ``passage_text`` maps a citation dict to the text given to the judge (default: its ``quote``);
    citations sharing a number are joined. ``n_citations`` counts citations over sentences.
    """
    text_of = passage_text or (lambda c: c.get("quote", ""))
    by_number: dict[int, list[Mapping[str, Any]]] = {}
    for citation in answer.get("citations", []):
        by_number.setdefault(citation["number"], []).append(citation)
    source_numbers = {s["number"] for s in answer.get("sources", [])}

    def broken(c: Mapping[str, Any]) -> bool:
        if "sources" in answer and c["number"] not in source_numbers:
            return True
        if docs is None:
            return False
        doc = docs.get(c.get("doc_id", ""))
        return doc is None or doc[c["char_start"] : c["char_end"]] != c.get("quote")

    broken_citations = [c for c in answer.get("citations", []) if broken(c)]
    bad_numbers = {c["number"] for c in broken_citations}
    invalid = len(broken_citations)
    sentences = answer.get("sentences", [])
    recall: list[float] = []
    n_citations = n_precise = 0
    for sentence in sentences:
        claim = strip_citations(sentence["text"])
        numbers = list(dict.fromkeys([*sentence.get("citations", []), *cited_numbers(sentence["text"])]))
        dangling = [n for n in numbers if n not in by_number]
        invalid += len(dangling)
        n_citations += len(numbers)
        if not numbers or dangling or bad_numbers.intersection(numbers):
            recall.append(0.0)
            continue
        passages = {n: "\n".join(text_of(c) for c in by_number[n]) for n in numbers}
        if not judge(claim, list(passages.values())):
            recall.append(0.0)
            continue
        recall.append(1.0)
        for n in numbers:
            rest = [text for m, text in passages.items() if m != n]
            irrelevant = bool(rest) and not judge(claim, [passages[n]]) and judge(claim, rest)
            n_precise += not irrelevant
    n = len(sentences)
    return {
        "citation_recall": float(np.mean(recall)) if n else NAN,
        "citation_precision": (n_precise / n_citations if n_citations else 0.0) if n else NAN,
        "unsupported_share": _ratio(sum(s.get("supported") is False for s in sentences), n),
        "invalid_citations": float(invalid),
        "n_sentences": float(n),
        "n_citations": float(n_citations),
    }


def both_sides(answer: Mapping[str, Any], facts: Sequence[Sequence[str]]) -> float:
    """For a question the articles disagree on (gold tag ``disagreement``; each fact group is one side): 1.0 when
    every side is in a sentence that carries a citation, and those sentences cite at least two documents, so each
    side is backed by its own article; else 0.0."""
    by_number = {c["number"]: c.get("doc_id", "") for c in answer.get("citations", [])}
    sentences = [(normalize(strip_citations(s["text"])),
                  {by_number[n] for n in [*s.get("citations", []), *cited_numbers(s["text"])] if n in by_number})
                 for s in answer.get("sentences", [])]
    cited: set[str] = set()
    for variants in facts:
        docs = [d for text, d in sentences if d and any(normalize(v) in text for v in variants)]
        if not docs:
            return 0.0
        cited |= set().union(*docs)
    return 1.0 if len(cited) >= 2 else 0.0


# ----------------------------------------------------------------------------- abstention and cost
def abstention_metrics(records_with_gold: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Abstention quality; each record needs boolean ``answerable`` (gold) and ``abstained`` (system).

    recall = abstentions among unanswerable questions, precision = unanswerable among abstentions,
    false_abstention_rate = abstentions among answerable questions.
    """
    records = list(records_with_gold)
    on_unanswerable = [bool(r["abstained"]) for r in records if not r["answerable"]]
    on_answerable = [bool(r["abstained"]) for r in records if r["answerable"]]
    n_abstained = sum(on_unanswerable) + sum(on_answerable)
    return {
        "abstention_recall": _ratio(sum(on_unanswerable), len(on_unanswerable)),
        "abstention_precision": _ratio(sum(on_unanswerable), n_abstained),
        "false_abstention_rate": _ratio(sum(on_answerable), len(on_answerable)),
    }


def latency_stats(values: Iterable[float | None]) -> dict[str, float]:
    """Median, 95th percentile (linear interpolation) and mean, ignoring missing values."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if not arr.size:
        return {"p50": NAN, "p95": NAN, "mean": NAN}
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "mean": float(arr.mean())}


# ----------------------------------------------------------------------------- per question and overall
def score_answer(
    answer: Mapping[str, Any], gold: Mapping[str, Any], docs: Mapping[str, str], judge: Judge, k: int = 5
) -> dict[str, Any]:
    """One row for ``aggregate``: quality metrics for answerable questions, bookkeeping for all."""
    row: dict[str, Any] = {
        "id": gold["id"],
        "answerable": bool(gold["answerable"]),
        "abstained": bool(answer.get("abstained")),
        "timings": dict(answer.get("timings", {})),
        "prompt_tokens": answer.get("prompt_tokens"),
    }
    if gold["answerable"]:
        row["facts_present"] = facts_present(answer.get("text", ""), gold["facts"])
        row["token_f1"] = token_f1(answer.get("text", ""), gold["reference"])
        row.update(retrieval_metrics(answer.get("sources", []), locate_spans(gold["spans"], docs), k))
        row.update(citation_metrics(answer, judge, docs=docs))
        if "disagreement" in gold.get("tags", ()):
            row["both_sides"] = both_sides(answer, gold["facts"]) if not answer.get("abstained") else 0.0
    return row


_BOOKKEEPING = {"id", "answerable", "abstained", "timings", "prompt_tokens"}


def _mean(values: Iterable[float]) -> float:
    kept = [float(v) for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else NAN


def aggregate(per_question_rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Means of every numeric metric over answerable rows (nan ignored), plus abstention and cost.

    Cost keys: ``latency_<stage>_{p50,p95,mean}`` for each timing stage over all rows, and
    ``prompt_tokens_mean``.
    """
    answerable = [r for r in per_question_rows if r["answerable"]]
    metric_keys = dict.fromkeys(
        key
        for r in answerable
        for key, value in r.items()
        if key not in _BOOKKEEPING and isinstance(value, int | float) and not isinstance(value, bool)
    )
    out: dict[str, float] = {key: _mean(r[key] for r in answerable if key in r) for key in metric_keys}
    out.update(abstention_metrics(per_question_rows))
    stages = dict.fromkeys(stage for r in per_question_rows for stage in r.get("timings", {}))
    for stage in stages:
        stats = latency_stats(r.get("timings", {}).get(stage) for r in per_question_rows)
        out.update({f"latency_{stage}_{name}": value for name, value in stats.items()})
    out["prompt_tokens_mean"] = latency_stats(r.get("prompt_tokens") for r in per_question_rows)["mean"]
    out["n_questions"] = float(len(per_question_rows))
    out["n_answerable"] = float(len(answerable))
    return out
