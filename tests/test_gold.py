"""Integrity and coverage checks for the hand-written gold data in eval/gold/, for every gold set of `rag eval`.

Each set's quotes must occur verbatim in the text `ingest.loaders.load_document` gives its documents (for HTML,
the extracted visible text); the gitdocs quotes must also sit inside one line of the page's source with no markup
in them, so that another HTML extractor (which may join lines or treat inline tags differently) finds them too.
"""

import html
import json
from collections import Counter
from pathlib import Path

import pytest

from eval.metrics import facts_present, locate_spans
from eval.run import SETS
from eval.splits import SPLITS, assign_splits
from ingest.loaders import find_files, load_document

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "eval" / "gold"
TAGS = {"single_fact", "number", "paraphrase", "multi_sentence", "multi_doc", "disagreement", "followup",
        "unanswerable"}
QUESTION_KEYS = {"id", "question", "history", "answerable", "reference", "facts", "spans", "tags", "split"}
POSITIVE_KINDS = {"verbatim", "paraphrase", "summary"}
NEGATIVE_KINDS = {"non_answer", "wrong_number", "wrong_entity", "other_passage", "overstated", "contradiction",
                  "extra_fact", "unrelated"}
GITDOCS_PAGES = {"gitfaq", "git-gc", "git-maintenance", "gitignore", "gitcredentials", "git-worktree", "git-stash",
                 "git-bisect", "git-bisect-lk2009", "gitworkflows"}


def _jsonl(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _load(corpus: Path) -> dict[str, str]:
    return {p.stem: load_document(p).text for p in find_files(corpus)}


@pytest.fixture(scope="module")
def news_docs() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "data" / "corpus").glob("*.txt")}


@pytest.fixture(scope="module", params=sorted(SETS))
def gold(request) -> tuple[str, list[dict], dict[str, str]]:
    """(set name, its questions, {doc_id: document text as the loader extracts it})."""
    gold_set = SETS[request.param]
    return gold_set.name, _jsonl(gold_set.questions), _load(gold_set.corpus)


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return _jsonl(GOLD / "support_pairs.jsonl")


def test_corpus_has_the_three_articles(news_docs):
    assert set(news_docs) == {"000_91c71732e04b514a", "002_8e1c4ef02a64e4d0", "004_7e67ca4c9a9558fc"}


def test_gitdocs_corpus_is_the_ten_original_pages_and_nothing_else():
    folder = SETS["gitdocs"].corpus
    files = find_files(folder)
    assert {p.stem for p in files} == GITDOCS_PAGES and all(p.suffix == ".html" for p in files)
    assert (folder / "SOURCE").is_file()  # provenance, not a document: ingest does not read it
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_500_000
    for p in files:
        assert p.read_text(encoding="utf-8").lstrip().startswith("<?xml"), p.name  # AsciiDoc output, as shipped
        assert len(load_document(p).text) > 3000, p.name


def test_question_ids_unique_and_schema(gold):
    _, questions, _ = gold
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert set(q) == QUESTION_KEYS, q["id"]
        assert q["question"].strip() and q["tags"] and set(q["tags"]) <= TAGS, q["id"]
        assert isinstance(q["answerable"], bool), q["id"]
        assert q["split"] in SPLITS, q["id"]


def test_every_question_span_occurs_exactly_in_its_document(gold):
    _, questions, docs = gold
    for q in questions:
        for span in q["spans"]:
            assert span["doc_id"] in docs, q["id"]
            assert span["quote"] in docs[span["doc_id"]], f"{q['id']}: {span['quote']!r}"
        locate_spans(q["spans"], docs)  # must not raise


def test_gitdocs_quotes_survive_another_html_extractor():
    """One line of the page's source, no tag inside, and only one place in the page it could mean."""
    gold_set = SETS["gitdocs"]
    docs = _load(gold_set.corpus)
    source = {p.stem: [html.unescape(line) for line in p.read_text(encoding="utf-8").splitlines()]
              for p in find_files(gold_set.corpus)}
    for q in _jsonl(gold_set.questions):
        for span in q["spans"]:
            quote, doc_id = span["quote"], span["doc_id"]
            assert quote == quote.strip() and "\n" not in quote and "  " not in quote, f"{q['id']}: {quote!r}"
            assert any(quote in line for line in source[doc_id]), f"{q['id']}: {quote!r} spans a line or a tag"
            assert docs[doc_id].count(quote) == 1, f"{q['id']}: {quote!r} occurs more than once"


def test_answerable_questions_have_facts_spans_and_reference(gold):
    _, questions, _ = gold
    for q in [q for q in questions if q["answerable"]]:
        assert q["reference"].strip() and q["spans"], q["id"]
        assert 1 <= len(q["facts"]) <= 3, q["id"]
        assert all(variants and all(v.strip() for v in variants) for variants in q["facts"]), q["id"]
        assert facts_present(q["reference"], q["facts"]) == 1.0, f"{q['id']}: reference lacks a required fact"
        assert "unanswerable" not in q["tags"], q["id"]


def test_unanswerable_questions_are_empty(gold):
    _, questions, _ = gold
    for q in [q for q in questions if not q["answerable"]]:
        assert q["reference"] == "" and q["facts"] == [] and q["spans"] == [], q["id"]
        assert "unanswerable" in q["tags"], q["id"]


def test_followups_have_alternating_history(gold):
    _, questions, _ = gold
    for q in questions:
        assert ("followup" in q["tags"]) == bool(q["history"]), q["id"]
        roles = [turn["role"] for turn in q["history"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2), q["id"]
        assert all(turn["content"].strip() for turn in q["history"]), q["id"]


def test_multi_doc_and_disagreement_questions_cite_several_documents(gold):
    _, questions, _ = gold
    for q in questions:
        if {"disagreement", "multi_doc"} & set(q["tags"]) and "followup" not in q["tags"]:
            assert len({s["doc_id"] for s in q["spans"]}) >= 2, q["id"]


def test_question_coverage(gold):
    name, questions, _ = gold
    tags = Counter(tag for q in questions for tag in q["tags"])
    followups = sum(1 for q in questions if "followup" in q["tags"] and q["history"])
    if name == "news":
        assert len(questions) >= 60 and tags["unanswerable"] >= 15 and followups >= 6
        assert tags["disagreement"] >= 3 and tags["paraphrase"] >= 8
    else:
        assert len(questions) >= 40 and tags["unanswerable"] >= 10 and followups >= 5
        assert tags["paraphrase"] >= 0.4 * len(questions)  # retrieval on paraphrase is what the set measures
    assert tags["number"] >= 5 and tags["single_fact"] >= 10
    assert tags["multi_sentence"] >= 3 and tags["multi_doc"] >= 3


def test_each_tag_is_split_about_half_dev_half_test(gold):
    _, questions, _ = gold
    sizes = Counter(q["split"] for q in questions)
    assert abs(sizes["dev"] - sizes["test"]) <= max(1, len(questions) // 10), sizes
    for tag in TAGS:
        n = Counter(q["split"] for q in questions if tag in q["tags"])
        assert abs(n["dev"] - n["test"]) <= max(1, (n["dev"] + n["test"]) // 10), f"{tag}: {dict(n)}"


def test_question_ids_do_not_repeat_across_sets():
    ids = [q["id"] for gold_set in SETS.values() for q in _jsonl(gold_set.questions)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("tags, given, expected", [
    ([["a"], ["a"], ["a"], ["a"]], [None] * 4, ["dev", "test", "dev", "test"]),
    # the rare tag b is dealt first: its two questions go one to each side, whatever a's order would want
    ([["a", "b"], ["a"], ["a", "b"], ["a"]], [None] * 4, ["dev", "dev", "test", "test"]),
    # a question with a split keeps it; the new ones balance against it
    ([["a"], ["a"], ["a"]], ["test", None, None], ["test", "dev", "dev"]),
    ([["a"], ["a"], ["a"]], ["test", "test", None], ["test", "test", "dev"]),
])
def test_assign_splits_balances_each_tag_and_keeps_given_splits(tags, given, expected):
    questions = [{"tags": t, **({"split": s} if s else {})} for t, s in zip(tags, given, strict=True)]
    assert assign_splits(questions) == expected
    assert assign_splits(questions) == assign_splits([dict(q) for q in questions])  # deterministic


def test_pair_ids_unique_and_schema(pairs):
    assert len({p["id"] for p in pairs}) == len(pairs)
    for p in pairs:
        assert set(p) == {"id", "sentence", "doc_id", "passage", "supported", "kind", "split"}, p["id"]
        assert p["split"] in ("dev", "test"), p["id"]
        assert isinstance(p["supported"], bool) and p["sentence"].strip(), p["id"]
        assert p["kind"] in (POSITIVE_KINDS if p["supported"] else NEGATIVE_KINDS), p["id"]


def test_every_pair_passage_occurs_exactly_in_its_document(pairs, news_docs):
    for p in pairs:
        assert p["doc_id"] in news_docs, p["id"]
        assert p["passage"] in news_docs[p["doc_id"]], f"{p['id']}: {p['passage']!r}"


def test_pairs_of_one_passage_share_a_split_and_both_splits_are_balanced(pairs):
    by_passage: dict[str, set[str]] = {}
    for p in pairs:
        by_passage.setdefault(p["passage"], set()).add(p["split"])
    assert all(len(splits) == 1 for splits in by_passage.values())  # no passage leaks from dev into test
    for split in ("dev", "test"):
        part = [p for p in pairs if p["split"] == split]
        assert len(part) >= 100 and 0.4 <= sum(p["supported"] for p in part) / len(part) <= 0.6


def test_pair_counts_and_balance(pairs):
    assert len(pairs) >= 150
    share = sum(p["supported"] for p in pairs) / len(pairs)
    assert 0.4 <= share <= 0.6
    assert len({(p["sentence"], p["passage"]) for p in pairs}) == len(pairs)
