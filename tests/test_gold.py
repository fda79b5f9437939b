"""Integrity and coverage checks for the hand-written gold data in eval/gold/."""

import json
from collections import Counter
from pathlib import Path

import pytest

from eval.metrics import facts_present, locate_spans

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "eval" / "gold"
TAGS = {"single_fact", "number", "paraphrase", "multi_sentence", "multi_doc", "disagreement", "followup",
        "unanswerable"}
QUESTION_KEYS = {"id", "question", "history", "answerable", "reference", "facts", "spans", "tags", "split"}
POSITIVE_KINDS = {"verbatim", "paraphrase", "summary"}
NEGATIVE_KINDS = {"wrong_number", "wrong_entity", "other_passage", "overstated", "contradiction",
                  "extra_fact", "unrelated"}


def _jsonl(name: str) -> list[dict]:
    lines = (GOLD / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "data" / "corpus").glob("*.txt")}


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return _jsonl("questions.jsonl")


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return _jsonl("support_pairs.jsonl")


def test_corpus_has_the_three_articles(docs):
    assert set(docs) == {"000_91c71732e04b514a", "002_8e1c4ef02a64e4d0", "004_7e67ca4c9a9558fc"}


def test_question_ids_unique_and_schema(questions):
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert set(q) == QUESTION_KEYS, q["id"]
        assert q["question"].strip() and q["tags"] and set(q["tags"]) <= TAGS, q["id"]
        assert isinstance(q["answerable"], bool), q["id"]


def test_every_question_span_occurs_exactly_in_its_document(questions, docs):
    for q in questions:
        for span in q["spans"]:
            assert span["doc_id"] in docs, q["id"]
            assert span["quote"] in docs[span["doc_id"]], f"{q['id']}: {span['quote']!r}"
        locate_spans(q["spans"], docs)  # must not raise


def test_answerable_questions_have_facts_spans_and_reference(questions):
    for q in [q for q in questions if q["answerable"]]:
        assert q["reference"].strip() and q["spans"], q["id"]
        assert 1 <= len(q["facts"]) <= 3, q["id"]
        assert all(variants and all(v.strip() for v in variants) for variants in q["facts"]), q["id"]
        assert facts_present(q["reference"], q["facts"]) == 1.0, f"{q['id']}: reference lacks a required fact"
        assert "unanswerable" not in q["tags"], q["id"]


def test_unanswerable_questions_are_empty(questions):
    for q in [q for q in questions if not q["answerable"]]:
        assert q["reference"] == "" and q["facts"] == [] and q["spans"] == [], q["id"]
        assert "unanswerable" in q["tags"], q["id"]


def test_followups_have_alternating_history(questions):
    for q in questions:
        assert ("followup" in q["tags"]) == bool(q["history"]), q["id"]
        roles = [turn["role"] for turn in q["history"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2), q["id"]
        assert all(turn["content"].strip() for turn in q["history"]), q["id"]


def test_disagreement_questions_cite_several_documents(questions):
    for q in questions:
        if "disagreement" in q["tags"] and "followup" not in q["tags"]:
            assert len({s["doc_id"] for s in q["spans"]}) >= 2, q["id"]


def test_question_coverage(questions):
    tags = Counter(tag for q in questions for tag in q["tags"])
    assert len(questions) >= 60
    assert tags["unanswerable"] >= 15
    assert sum(1 for q in questions if "followup" in q["tags"] and q["history"]) >= 6
    assert tags["disagreement"] >= 3
    assert tags["paraphrase"] >= 8
    assert tags["number"] >= 5 and tags["single_fact"] >= 10
    assert tags["multi_sentence"] >= 3 and tags["multi_doc"] >= 3


def test_pair_ids_unique_and_schema(pairs):
    assert len({p["id"] for p in pairs}) == len(pairs)
    for p in pairs:
        assert set(p) == {"id", "sentence", "doc_id", "passage", "supported", "kind"}, p["id"]
        assert isinstance(p["supported"], bool) and p["sentence"].strip(), p["id"]
        assert p["kind"] in (POSITIVE_KINDS if p["supported"] else NEGATIVE_KINDS), p["id"]


def test_every_pair_passage_occurs_exactly_in_its_document(pairs, docs):
    for p in pairs:
        assert p["doc_id"] in docs, p["id"]
        assert p["passage"] in docs[p["doc_id"]], f"{p['id']}: {p['passage']!r}"


def test_pair_counts_and_balance(pairs):
    assert len(pairs) >= 150
    share = sum(p["supported"] for p in pairs) / len(pairs)
    assert 0.4 <= share <= 0.6
    assert len({(p["sentence"], p["passage"]) for p in pairs}) == len(pairs)
