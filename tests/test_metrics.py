"""Hand-computed cases for eval/metrics.py."""

import math
import re

import pytest

from eval import metrics as m
from eval.metrics import (
    abstention_metrics,
    aggregate,
    citation_metrics,
    cited_numbers,
    facts_present,
    latency_stats,
    locate_spans,
    retrieval_metrics,
    score_answer,
    strip_citations,
    token_f1,
)

STOPWORDS = {"a", "an", "the", "to", "and", "of"}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9$,]+", text.lower().replace(".", " "))) - STOPWORDS


def toy_judge(claim: str, passages: list[str]) -> bool:
    """Supported iff every non-stopword of the claim occurs in the passages."""
    return words(claim) <= words(" ".join(passages))


def src(number, doc_id, start, end, text=""):
    return {"number": number, "doc_id": doc_id, "char_start": start, "char_end": end, "text": text,
            "score": 1.0}


def cite(number, quote, doc_id="d", start=0, end=None):
    end = len(quote) if end is None else end
    return {"number": number, "doc_id": doc_id, "title": "", "quote": quote, "char_start": start,
            "char_end": end}


def sent(text, supported=True):
    return {"text": text, "citations": cited_numbers(text), "supported": supported, "score": 0.5}


# ----------------------------------------------------------------------------- spans and retrieval
def test_locate_spans_offsets_and_missing_quote():
    docs = {"a": "Bitcoin slid to $66,000 today.", "b": "xyz"}
    assert locate_spans([{"doc_id": "a", "quote": "slid to $66,000"}], docs) == [("a", 8, 23)]
    with pytest.raises(ValueError, match="slid to 70,000"):
        locate_spans([{"doc_id": "a", "quote": "slid to 70,000"}], docs)
    with pytest.raises(ValueError, match="nowhere"):
        locate_spans([{"doc_id": "zzz", "quote": "nowhere"}], docs)


GOLD = [("a", 10, 20), ("b", 0, 5)]
RANKING = [src(1, "a", 100, 200), src(2, "b", 3, 50), src(3, "a", 0, 15), src(4, "a", 15, 30)]


def test_retrieval_metrics_small_ranking():
    idcg = 1 + 1 / math.log2(3)
    top3 = retrieval_metrics(RANKING, GOLD, k=3)
    assert top3["hit@k"] == 1.0 and top3["recall@k"] == 1.0
    assert top3["mrr"] == pytest.approx(0.5)
    assert top3["ndcg@k"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / idcg)  # ~0.6934
    top2 = retrieval_metrics(RANKING, GOLD, k=2)
    assert top2["recall@k"] == 0.5 and top2["ndcg@k"] == pytest.approx((1 / math.log2(3)) / idcg)
    top1 = retrieval_metrics(RANKING, GOLD, k=1)
    assert top1["hit@k"] == 0.0 and top1["recall@k"] == 0.0 and top1["ndcg@k"] == 0.0
    assert top1["mrr"] == pytest.approx(0.5)  # MRR looks at the whole ranking
    # rank 4 re-covers an already covered span: no extra gain
    assert retrieval_metrics(RANKING, GOLD, k=4)["ndcg@k"] == pytest.approx(top3["ndcg@k"])


def test_retrieval_touching_ranges_and_other_docs_do_not_hit():
    ranking = [src(1, "a", 0, 10), src(2, "a", 20, 40), src(3, "c", 10, 20)]
    assert retrieval_metrics(ranking, [("a", 10, 20)], k=3) == {"hit@k": 0.0, "recall@k": 0.0, "mrr": 0.0,
                                                                 "ndcg@k": 0.0}
    perfect = retrieval_metrics([src(1, "a", 12, 13)], [("a", 10, 20)], k=5)
    assert perfect == {"hit@k": 1.0, "recall@k": 1.0, "mrr": 1.0, "ndcg@k": 1.0}
    assert all(math.isnan(v) for v in retrieval_metrics(ranking, [], k=3).values())


# ----------------------------------------------------------------------------- answer correctness
def test_citation_marker_helpers():
    assert cited_numbers("A [1][3]. B [2, 3].") == [1, 3, 2]
    assert strip_citations("Bitcoin slid to $66,000 [1][2].") == "Bitcoin slid to $66,000."


def test_facts_present_normalises_case_quotes_dashes_and_whitespace():
    answer = "Bitcoin  slid to $66,000 [1], while cyber stocks fell 4\u20136%.\nAnthropic\u2019s CMS broke."
    facts = [["66,000", "66k"], ["4-6%"], ["ETF"], ["anthropic's cms"]]
    assert facts_present(answer, facts) == pytest.approx(3 / 4)
    assert facts_present("BITCOIN", [["bitcoin"]]) == 1.0
    assert facts_present("nothing here", [["bitcoin"], ["66,000"]]) == 0.0
    assert math.isnan(facts_present("anything", []))


def test_token_f1_squad_style():
    # pred tokens [cat, sat] vs gold [cat, sat, down]: P = 1, R = 2/3
    assert token_f1("The cat sat [1].", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("Bitcoin slid to $66,000 [2].", "bitcoin slid to 66000") == pytest.approx(1.0)
    assert token_f1("completely different", "bitcoin") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "bitcoin") == 0.0


# ----------------------------------------------------------------------------- ALCE citations
def answer_with(sentences, citations, sources=None):
    sources = sources if sources is not None else [src(c["number"], "d", 0, 100) for c in citations]
    text = " ".join(s["text"] for s in sentences)
    return {"id": "q", "text": text, "abstained": False, "sentences": sentences, "citations": citations,
            "sources": sources}


def test_over_citation_halves_precision_but_keeps_recall():
    citations = [cite(1, "bitcoin slid to $66,000 yesterday"), cite(2, "cybersecurity stocks dropped")]
    answer = answer_with([sent("Bitcoin slid to $66,000 [1][2].")], citations)
    m = citation_metrics(answer, toy_judge)
    assert m["citation_recall"] == 1.0 and m["citation_precision"] == 0.5
    assert m["n_citations"] == 2 and m["n_sentences"] == 1 and m["invalid_citations"] == 0


def test_jointly_needed_citations_are_both_precise():
    answer = answer_with([sent("Bitcoin slid and stocks dropped [1][2].")],
                         [cite(1, "bitcoin slid"), cite(2, "stocks dropped")])
    m = citation_metrics(answer, toy_judge)
    assert m["citation_recall"] == 1.0 and m["citation_precision"] == 1.0


def test_redundant_citations_that_each_support_stay_precise():
    citations = [cite(1, "bitcoin slid"), cite(2, "bitcoin slid too")]
    answer = answer_with([sent("Bitcoin slid [1][2].")], citations)
    assert citation_metrics(answer, toy_judge)["citation_precision"] == 1.0


def test_unsupported_and_uncited_sentences():
    answer = answer_with(
        [sent("Bitcoin slid to $66,000 [1][2].", True), sent("Ethereum slid [2].", False),
         sent("Markets reacted.", False)],
        [cite(1, "bitcoin slid to $66,000"), cite(2, "stocks slid")],
    )
    m = citation_metrics(answer, toy_judge)
    # recall: 1, 0 (unsupported), 0 (no citation); precision: [1] precise, [2] irrelevant, [2] unsupported
    assert m["citation_recall"] == pytest.approx(1 / 3)
    assert m["citation_precision"] == pytest.approx(1 / 3)
    assert m["unsupported_share"] == pytest.approx(2 / 3)
    assert m["n_citations"] == 3


def test_passage_text_override_uses_source_text():
    sources = [src(1, "d", 0, 30, text="bitcoin slid to $66,000 on friday")]
    answer = answer_with([sent("Bitcoin slid to $66,000 [1].")], [cite(1, "")], sources)
    assert citation_metrics(answer, toy_judge)["citation_recall"] == 0.0
    by_number = {s["number"]: s["text"] for s in sources}
    m = citation_metrics(answer, toy_judge, passage_text=lambda c: by_number[c["number"]])
    assert m["citation_recall"] == 1.0 and m["citation_precision"] == 1.0


def test_answer_without_sentences_is_undefined():
    m = citation_metrics(answer_with([], []), toy_judge)
    assert math.isnan(m["citation_recall"]) and math.isnan(m["citation_precision"]) and m["n_sentences"] == 0


def test_invalid_citations_out_of_range_dangling_and_quote_mismatch():
    docs = {"d": "Bitcoin slid to $66,000. Stocks dropped."}
    sources = [src(1, "d", 0, 24), src(2, "d", 25, 40)]
    citations = [cite(1, "Bitcoin slid to $66,000.", start=0, end=24),
                 cite(2, "Stocks dropped.", start=25, end=40),
                 cite(3, "Stocks dropped.", start=25, end=40)]  # number 3 is not a source
    answer = answer_with([sent("Bitcoin slid to $66,000 [1][4]."),  # [4] points to no citation
                          sent("Stocks dropped [2]."), sent("Stocks dropped [3].")], citations, sources)
    m = citation_metrics(answer, toy_judge, docs=docs)
    assert m["invalid_citations"] == 2
    # sentences citing something invalid get recall 0 even though the valid passage supports them
    assert m["citation_recall"] == pytest.approx(1 / 3)
    assert m["citation_precision"] == pytest.approx(1 / 4)

    citations[1] = cite(2, "Stocks dropped.", start=24, end=39)  # offsets do not match the quote
    answer = answer_with([sent("Stocks dropped [2].")], citations[:2], sources)
    assert citation_metrics(answer, toy_judge)["invalid_citations"] == 0
    m = citation_metrics(answer, toy_judge, docs=docs)
    assert m["invalid_citations"] == 1 and m["citation_recall"] == 0.0
    assert citation_metrics(answer, toy_judge, docs={})["invalid_citations"] == 2  # unknown doc_id


# ----------------------------------------------------------------------------- abstention and cost
def test_abstention_metrics():
    records = [{"answerable": False, "abstained": a} for a in (True, True, False)]
    records += [{"answerable": True, "abstained": a} for a in (True, False, False, False)]
    m = abstention_metrics(records)
    assert m["abstention_recall"] == pytest.approx(2 / 3)
    assert m["abstention_precision"] == pytest.approx(2 / 3)
    assert m["false_abstention_rate"] == pytest.approx(1 / 4)
    assert math.isnan(abstention_metrics([{"answerable": True, "abstained": False}])["abstention_precision"])


def test_latency_stats():
    stats = latency_stats([1, 2, 3, 4, 100, None])
    assert stats == pytest.approx({"p50": 3.0, "p95": 80.8, "mean": 22.0})
    assert all(math.isnan(v) for v in latency_stats([]).values())


def test_aggregate_skips_unanswerables_for_quality_metrics():
    rows = [
        {"id": "a", "answerable": True, "abstained": False, "facts_present": 1.0, "hit@k": 1.0,
         "citation_recall": float("nan"), "timings": {"total": 2.0}, "prompt_tokens": 100},
        {"id": "b", "answerable": True, "abstained": True, "facts_present": 0.5, "hit@k": 0.0,
         "citation_recall": 0.5, "timings": {"total": 4.0}, "prompt_tokens": 300},
        {"id": "c", "answerable": False, "abstained": True, "facts_present": 0.0, "timings": {"total": 6.0},
         "prompt_tokens": 200},
    ]
    out = aggregate(rows)
    assert out["facts_present"] == pytest.approx(0.75) and out["hit@k"] == pytest.approx(0.5)
    assert out["citation_recall"] == pytest.approx(0.5)
    assert out["abstention_recall"] == 1.0 and out["abstention_precision"] == 0.5
    assert out["false_abstention_rate"] == 0.5
    assert out["latency_total_p50"] == 4.0 and out["latency_total_mean"] == 4.0
    assert out["prompt_tokens_mean"] == 200.0 and out["n_questions"] == 3 and out["n_answerable"] == 2


def test_score_answer_end_to_end():
    docs = {"d": "Markets fell. Bitcoin slid to $66,000."}
    gold = {"id": "q1", "answerable": True, "reference": "Bitcoin slid to $66,000.", "facts": [["66,000"]],
            "spans": [{"doc_id": "d", "quote": "Bitcoin slid to $66,000."}]}
    citations = [cite(2, "Bitcoin slid to $66,000.", "d", 14, 38)]
    sources = [src(1, "d", 0, 13), src(2, "d", 14, 38)]
    answer = answer_with([sent("Bitcoin slid to $66,000 [2].")], citations, sources)
    row = score_answer(answer, gold, docs, toy_judge, k=2)
    assert row["facts_present"] == 1.0 and row["token_f1"] == pytest.approx(1.0)
    assert row["hit@k"] == 1.0 and row["mrr"] == 0.5
    assert row["citation_recall"] == 1.0 and row["invalid_citations"] == 0
    unanswerable = score_answer({"abstained": True}, {"id": "q2", "answerable": False}, docs, toy_judge)
    assert unanswerable == {"id": "q2", "answerable": False, "abstained": True, "timings": {},
                            "prompt_tokens": None}


def test_both_sides_needs_each_side_cited_and_two_articles():
    facts = [["content management", "CMS"], ["API"]]
    cites = [{"number": 1, "doc_id": "a"}, {"number": 2, "doc_id": "b"}]

    def answer(*sentences):
        return {"sentences": [{"text": t, "citations": []} for t in sentences], "citations": cites}

    assert m.both_sides(answer("One says a CMS error [1].", "Another blames API controls [2]."), facts) == 1.0
    assert m.both_sides(answer("A CMS error [1], or API controls [2]."), facts) == 1.0
    assert m.both_sides(answer("One says a CMS error [1].", "Another blames API controls."), facts) == 0.0
    assert m.both_sides(answer("A CMS error [1].", "API controls [1]."), facts) == 0.0  # one article for both
    assert m.both_sides(answer("A CMS error [1]."), facts) == 0.0
