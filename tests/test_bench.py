"""`rag bench` in its tiny mode on the fakes: the report files exist, the JSON has its keys and sane numbers.

Speed targets live in the benchmark (rerun it with `rag bench`), not here: these tests check that every part of
the harness runs, that each side of a comparison measured the same work, and that the exact search the recall is
scored against finds what was planted, not how fast this machine is.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from eval import synthetic
from eval.bench import coldparts, growth, main, measure, process, server, targets
from ingest.chunking import chunk_document
from ingest.loaders import find_files, load_document
from ingest.store import ChunkStore

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only

GROWTH = 300  # chunks: enough for Chroma's index to be searched, small enough to keep the run well under a minute
RECALL_FLOOR = 0.9  # Chroma's HNSW on a few hundred vectors is all but exact; a wrong id or vector falls far below


def _quick_env(mp: pytest.MonkeyPatch, home: Path) -> None:
    for var in ("RAG_CORPUS", "RAG_STORE", "RAG_LLM", "RAG_EMBEDDER", "RAG_TOP_K"):
        mp.delenv(var, raising=False)
    mp.setenv("RAG_HOME", str(home))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[int, Path, dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "run"
    work = tmp_path_factory.mktemp("work")  # kept, so the stores the sections built can be opened
    with pytest.MonkeyPatch.context() as mp:
        _quick_env(mp, tmp_path_factory.mktemp("home"))
        code = main(["--quick", "--growth", str(GROWTH), "--growth-queries", "20", "--out", str(out),
                     "--work", str(work), "-q"])
    data = json.loads((out / "bench.json").read_text(encoding="utf-8")) if (out / "bench.json").is_file() else {}
    return code, out, data, work


def test_quick_run_writes_json_markdown_and_plots(run):
    code, out, data, _ = run
    assert code == 0
    for name in ("bench.json", "report.md", "latency.png", "growth.png", "resources.png"):
        assert (out / name).is_file(), name
    for name in ("latency.png", "growth.png", "resources.png"):
        blob = (out / name).read_bytes()
        assert blob.startswith(b"\x89PNG") and len(blob) > 5000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "fake model and embedder" in report  # a quick run says its figures are not speeds
    for t in targets.TARGETS:  # each row names the figure and the goal that the table gives it
        row = next((ln for ln in report.splitlines() if ln.startswith(f"| {t.label} |")), "")
        assert f"| {t.goal_text()} |" in row, t.key
    assert data["files"] == {"json": "bench.json", "report": "report.md", "latency": "latency.png",
                             "growth": "growth.png", "resources": "resources.png"}


def test_json_has_every_section_and_target(run):
    _, _, data, _ = run
    assert set(data) >= {"meta", "ingest", "query", "process", "growth", "big_inputs", "memory", "server", "targets",
                         "files"}
    assert data["meta"]["quick"] is True and data["meta"]["llm"] == "fake" and data["meta"]["embedder"] == "fake"
    assert [t["key"] for t in data["targets"]] == [t.key for t in targets.TARGETS]
    judged = {t["key"]: t for t in data["targets"]}
    # Everything but the 100k and 1M figures was measured (the quick growth stops at 1k, its memory section at 2k
    # chunks, its server section at 300), so those alone have no value.
    assert {k for k, t in judged.items() if t["value"] is None} == {"retrieve_p50_100k", "dense_p50_100k",
                                                                      "recall10_100k", "add_article_s_100k",
                                                                      "rss_serve_1m_gb", "retrieve_p50_1m",
                                                                      "dense_p50_1m", "recall10_1m"}
    assert all(isinstance(t["pass"], bool) for t in judged.values() if t["value"] is not None)
    assert {"p50", "p95", "mean", "n"} <= set(data["query"]["total"])


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_ingest_compares_the_same_texts(run):
    # The ratio means something only if bare encode was given exactly what the pipeline embedded and stored.
    _, _, data, work = run
    ing = data["ingest"]
    corpus_chunks = sum(len(chunk_document(load_document(p))) for p in find_files(Path(data["meta"]["corpus"])))
    assert ing["chunks"] == corpus_chunks and ing["sentences"] > ing["chunks"]
    stored = ChunkStore(str(work / "ingest-0"), "fake")
    chunk_ids, _ = stored.vectors("chunks")
    sentence_ids, _ = stored.vectors("sents")
    assert len(chunk_ids) == ing["chunks"] and len(chunk_ids) + len(sentence_ids) == ing["texts_embedded"]
    assert all(_positive(ing[k]) for k in ("pipeline_chunks_per_s", "bare_chunks_per_s", "ratio"))
    assert len(ing["pipeline_seconds"]) == len(ing["bare_encode_seconds"]) == ing["repeat"] == 1  # quick: 1 run
    assert 0 <= ing["reingest_s"] < 30


def test_query_numbers_are_sane(run):
    _, _, data, _ = run
    corpus_chunks = sum(len(chunk_document(load_document(p))) for p in find_files(Path(data["meta"]["corpus"])))
    q = data["query"]
    assert q["n"] == 5 and q["called_model"] >= 1 and q["compared"] == q["called_model"]
    assert q["corpus_chunks"] == corpus_chunks and q["prompt_identical"] is True
    assert q["same_text"] == q["compared"]  # the bare model, given the same prompt, said the same words
    assert q["retrieve"]["n"] == q["n"]  # retrieval is timed on every question; the rest where the model ran
    for key in ("retrieve", "first_token", "total", "bare_total", "overhead_ratio", "prompt_tokens"):
        assert _positive(q[key]["p50"]), key
    assert all(q[key]["n"] == q["called_model"] for key in ("first_token", "total", "bare_total", "overhead_ratio"))
    for row in q["questions"]:
        if row["called_model"]:  # first token and total are both measured from the start of ask()
            assert row["retrieve"] <= row["first_token"] <= row["total"]
            assert row["prompt_tokens"] == row["bare_prompt_tokens"] > 0


def test_process_numbers_are_sane(run):
    _, _, data, _ = run
    p = data["process"]
    mb = 1024**2
    for part in ("ingest", "ask", "ui"):
        assert 30 * mb < p[part]["peak_rss_bytes"] < 64 * 1024 * mb, part
    assert p["ingest"]["exit_code"] == 0 and _positive(p["cold_start_s"])
    assert all(r["exit_code"] == 0 and r["answer_timings"].get("total", 0) > 0 for r in p["cold"])
    assert p["cold_empty_store"]["seconds"] > 0
    assert p["ui"]["answered"] is True, p["ui"]["status"]


def test_cold_start_is_timed_part_by_part(run):
    _, out, data, _ = run
    c = data["process"]["cold_parts"]
    parts = c["parts"]
    assert list(parts) == list(coldparts.PARTS)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in parts.values()), parts
    # On the fakes there is no sentence-transformers, llama.cpp or system turn: those parts are 0, not guessed.
    assert c["skipped"] == ["import_embedder_libs", "import_llama_cpp", "system_turn"]
    assert all(parts[k] == 0 for k in c["skipped"])
    # Each import is timed in a process that had not made it yet (a package __init__ on the way to the module that
    # imported rag would hide its import in python_start); the store, index and answer each took some time.
    assert c["imported_before"] == []
    for k in ("import_rag", "import_chromadb", "store_open", "index_build", "answer"):
        assert _positive(parts[k]), k
    assert parts["answer"] >= c["answer_timings"]["total"] - 1e-3  # ask()'s own clock runs inside the part
    # The parts are consecutive stretches of one process: together no more than its total, and that no more than
    # the wall time of the process as the launcher measured it (slack: /proc's start time is in 10 ms ticks).
    assert sum(parts.values()) <= c["total"] + 1e-3
    assert c["total"] <= c["seconds"] + 0.05
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "### Where a cold start's time goes" in report
    table = report.split("### Where a cold start's time goes", 1)[1].split("\n\n")[1].splitlines()
    assert len(table) == 2 + len(parts) + 1  # header, rule, a row per part, the sum


def test_growth_numbers_are_sane(run):
    _, _, data, _ = run
    rows = data["growth"]["rows"]
    assert [(r["size"], r["vectors"]) for r in rows] == [(GROWTH, "fake"), (GROWTH, "synthetic")]
    real, syn = rows
    assert real["chunks"] == GROWTH and real["chunks_embedded"] == GROWTH and real["sentences"] > GROWTH
    assert _positive(real["retrieve"]["p50"]) and real["retrieve"]["n"] == 20
    added = real["add_article"]  # one article into the serving index: only it updated, and found first
    assert added["added"] == ["zz_new_article"] and added["documents_updated"] == 1 and added["found_first"]
    assert _positive(added["seconds"]) and added["seconds"] >= added["sync_s"] + added["update_s"]
    for r in rows:  # Chroma's neighbours of the planted corpus against brute force over the very same vectors
        assert RECALL_FLOOR <= r["recall_at_10"] <= 1.0, r["vectors"]
        assert r["dense"]["n"] == r["brute"]["n"] == 20
        assert _positive(r["ingest_s"]) and _positive(r["dense"]["p50"]) and _positive(r["brute"]["p50"])


def test_server_section_runs_both_rows_on_a_chroma_server_and_leaves_nothing_there(run):
    _, _, data, work = run
    srv = data["server"]
    assert srv["chunks"] == server.QUICK_CHUNKS and "loopback" in srv["server"]
    rows = srv["rows"]
    assert [(r["size"], r["vectors"]) for r in rows] == [(server.QUICK_CHUNKS, "fake"), (server.QUICK_CHUNKS,
                                                                                          "synthetic")]
    real, syn = rows
    assert real["chunks"] == real["chunks_embedded"] == server.QUICK_CHUNKS and real["sentences"] > real["chunks"]
    assert _positive(real["retrieve"]["p50"]) and real["add_article"]["found_first"]
    for r in rows:
        assert RECALL_FLOOR <= r["recall_at_10"] <= 1.0, r["vectors"]
        assert r["write_chunks_per_s"] and all(_positive(x) for x in r["write_chunks_per_s"])
    assert len(real["write_chunks_per_s"]) >= 5  # by tenths: one rate per tenth of the chunks written
    assert not (work / "chroma-server" / "data").exists()  # the server was stopped and its data removed
    assert "## On a Chroma server" in (run[1] / "report.md").read_text(encoding="utf-8")


def test_write_rates_go_by_tenths_of_the_items():
    marks = [(1.0 + i, 10 * (i + 1)) for i in range(20)]  # 10 items a second, marks every second, 200 items
    assert growth.by_tenths(marks, 0.0, 200) == [10.0] * 10
    assert growth.by_tenths([(2.0, 5)], 0.0, 5) == [2.5]  # fewer marks than tenths: the rate over what there is


def _unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)


def test_brute_force_finds_planted_neighbours():
    rng = np.random.default_rng(11)
    vecs = _unit(rng.standard_normal((2000, 32)))
    q = _unit(rng.standard_normal(32))
    # Nearest first: each the query moved further along a random direction (cosines about 0.999, 0.98, 0.93; the
    # best of 2000 random vectors in 32 dimensions is near 0.6).
    planted = [1503, 17, 640]
    for i, step in zip(planted, (0.05, 0.2, 0.4)):
        vecs[i] = _unit(q + step * _unit(rng.standard_normal(32)))
    assert list(growth.brute_force(vecs, q, 3)) == planted
    assert list(growth.brute_force(vecs, q, 10))[:3] == planted
    assert list(growth.brute_force(vecs, q, 10)) == list(np.argsort(-(vecs @ q), kind="stable")[:10])


def test_search_stats_score_chroma_against_brute_force(tmp_path):
    rng = np.random.default_rng(3)
    vecs = _unit(rng.standard_normal((300, 16)))

    store = ChunkStore(str(tmp_path / "store"), "t")
    ids = [f"v{i}" for i in range(len(vecs))]
    store.add_chunks(ids=ids, vectors=vecs, texts=["x"] * len(ids),
                     metas=[{"doc_id": "d", "title": "", "start": 0, "end": 1, "index": i} for i in range(len(ids))])
    stats = growth.search_stats(store, vecs, ids, vecs[:20])
    assert stats["recall_at_10"] == 1.0
    shuffled = ids[1:] + ids[:1]  # ids that no longer match the vectors: recall must drop
    assert growth.search_stats(store, vecs, shuffled, vecs[:20])["recall_at_10"] < 0.5


def test_peak_rss_is_the_commands_own_not_the_benchs(tmp_path):
    # A child's ru_maxrss starts from its parent's high-water mark; the launcher keeps that out of the figure.
    ballast = np.ones(400 * 1024**2 // 8)  # 400 MB resident in this process while the command runs
    child = "import numpy as np; a = np.ones(100 * 1024**2 // 8); print('done')"
    r = process.run_measured([sys.executable, "-c", child], dict(os.environ), tmp_path / "child.log", timeout=60)
    assert r["exit_code"] == 0 and "done" in r["output"] and r["seconds"] > 0
    assert 100 * 1024**2 < r["peak_rss_bytes"] < 300 * 1024**2
    assert ballast.sum() > 0


def test_targets_pass_and_miss():
    result = {"query": {"total": {"p50": 4.0}, "first_token": {"p50": 2.01}, "retrieve": {"p50": 0.049},
                        "overhead_ratio": {"p50": 1.12}},
              "ingest": {"ratio": 0.8, "reingest_s": 1.5},
              "formats": {"pdf": {"ratio": 0.81}, "docx": {"ratio": 0.79}}, "api": {"overhead_p50_ms": 51.0},
              "big_inputs": {"slowest_largest_s": 10.0, "worst_growth": 6.5},
              "growth": {"rows": [{"size": 100_000, "vectors": "synthetic", "dense": {"p50": 0.2},
                                   "recall_at_10": 0.97},
                                  {"size": 100_000, "vectors": "hash384", "retrieve": {"p50": 0.1},
                                   "dense": {"p50": 0.01}, "recall_at_10": 0.5,
                                   "add_article": {"seconds": 1.0, "found_first": False}}]},
              "process": {"ask": {"peak_rss_bytes": 2 * measure.GB}, "ingest": {"peak_rss_bytes": 3 * measure.GB},
                          "cold_start_s": 5.0, "served_ask_s": 5.01},
              "memory": {"chunks": 1_000_000, "peak_rss_bytes": 2.5 * measure.GB},
              "server": {"chunks": 1_000_000, "rows": [{"size": 1_000_000, "vectors": "hash384",
                                                        "retrieve": {"p50": 0.15}, "dense": {"p50": 0.001},
                                                        "recall_at_10": 0.1},
                                                       {"size": 1_000_000, "vectors": "synthetic", "retrieve": None,
                                                        "dense": {"p50": 0.151}, "recall_at_10": 0.95}]}}
    verdicts = {t["key"]: t["pass"] for t in targets.judge(result, quick=False)}
    found = {**result["growth"]["rows"][1], "add_article": {"seconds": 3.0, "found_first": True}}
    assert targets.added_and_found(100_000)({"growth": {"rows": [found]}}) == 3.0
    assert targets.target("add_article_s_100k").met(3.0) and not targets.target("add_article_s_100k").met(3.01)
    assert verdicts == {"ask_total_p50": True, "ask_first_token_p50": False, "overhead_p50": False,
                        "api_overhead_p50": False,
                        "retrieve_p50": True, "retrieve_p50_100k": True, "dense_p50_100k": False,
                        "recall10_100k": True, "add_article_s_100k": False,  # quick, but not found
                        "ingest_ratio": True, "pdf_ingest_ratio": True, "docx_ingest_ratio": False,
                        "big_input_1mb_s": True, "big_input_growth": False,
                        "reingest_s": False, "cold_start_s": True, "served_ask_s": False, "rss_ask_gb": True,
                        "rss_ingest_gb": False, "rss_ui_gb": None, "rss_serve_1m_gb": False,
                        # each read from its own row: retrieval from the pipeline's, Chroma and recall the vectors'
                        "retrieve_p50_1m": True, "dense_p50_1m": False, "recall10_1m": True}
    smaller = {"memory": {"chunks": 999_999, "peak_rss_bytes": measure.GB}}  # --memory-chunks below 1M: not judged
    assert targets.target("rss_serve_1m_gb").read(smaller) is None
    pipeline, vectors = result["server"]["rows"]  # a row below 1M chunks is not judged, whatever the other held
    smaller = {"server": {"rows": [{**pipeline, "size": 100_000}, vectors]}}
    assert targets.target("retrieve_p50_1m").read(smaller) is None
    assert targets.target("recall10_1m").read(smaller) == 0.95


def test_percentiles():
    st = measure.pct([float(x) for x in range(1, 101)])
    assert st["p50"] == pytest.approx(50.5) and st["p95"] == pytest.approx(95.05)
    assert st["min"] == 1 and st["max"] == 100 and st["n"] == 100
    assert measure.pct([])["p50"] is None


def test_synthetic_corpus_is_exact_and_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synthetic.write_corpus(a, 137, seed=4)
    synthetic.write_corpus(b, 137, seed=4)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert sum(len(chunk_document(load_document(p))) for p in a.iterdir()) == 137
    v1, q1 = synthetic.clustered_vectors(500, seed=2, queries=7)
    v2, q2 = synthetic.clustered_vectors(500, seed=2, queries=7)
    assert v1.shape == (500, 384) and q1.shape == (7, 384) and np.array_equal(v1, v2) and np.array_equal(q1, q2)
    assert np.allclose(np.linalg.norm(v1, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(v1, synthetic.clustered_vectors(500, seed=3)[0])


def test_a_section_is_one_entry_and_a_failed_one_is_recorded_in_its_place(tmp_path, monkeypatch):
    from eval.bench import cli

    sections = {
        "counted": lambda b: {"files": 3, "seconds": 0.25, "_token": f"quick={b.quick}", "how": "counted by hand"},
        "broken": lambda b: 1 // 0,
        "reader": lambda b: {"got": b.handed["_token"]},
    }
    monkeypatch.setattr(cli, "SECTIONS", sections)
    _quick_env(monkeypatch, tmp_path / "home")
    out = tmp_path / "run"
    assert main(["--quick", "--only", "reader,broken,counted", "--out", str(out), "-q"]) == 2
    data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert list(data) == ["meta", "counted", "broken", "reader", "targets", "files"]  # SECTIONS' order
    assert data["counted"] == {"files": 3, "seconds": 0.25, "how": "counted by hand"}  # "_token" handed on, not kept
    assert data["reader"] == {"got": "quick=True"}
    assert data["broken"]["error"].startswith("ZeroDivisionError")
    assert all(t["value"] is None for t in data["targets"])  # no row of the table reads these sections
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## counted" in report and "| files | 3 |" in report and "| seconds | 0.25 |" in report
    assert "## broken: failed" in report and "- **counted**: counted by hand." in report
    assert data["files"] == {"json": "bench.json", "report": "report.md"}  # no plot shows these sections


def test_bad_arguments_exit_2(capsys):
    assert main(["--only", "speed"]) == 2
    assert "unknown section 'speed'" in capsys.readouterr().err
    assert main(["--growth", "lots"]) == 2
    assert main(["--questions", "0", "--only", "query", "--quick"]) == 2


def test_the_memory_sections_stand_in_hands_over_what_a_store_would(tmp_path):
    # The memory section builds the retriever from a stand-in store: its chunks must be the exact spans of their
    # articles, current, and all of them in the index, or the figure would be of a smaller index.
    from eval.bench.memory import StandInStore
    from ingest.embed import FakeEmbedder
    from ingest.store import is_current
    from rag.retrieve import Retriever

    store = StandInStore(500)
    ids, texts, metas = store.all_chunks()
    records = store.doc_records(with_text=True)
    assert len(ids) == 500 == len(set(ids))
    for cid, text, meta in zip(ids, texts, metas):
        assert records[meta["doc_id"]].text[meta["start"]:meta["end"]] == text
        assert is_current(cid, records[meta["doc_id"]])
    index = Retriever(store, FakeEmbedder())
    assert len(index.metas) == 500 and index.n_docs == len(records)
    index.save(tmp_path / "kept.pkl")
    assert Retriever.open(store, FakeEmbedder(), tmp_path / "kept.pkl").n_docs == len(records)


def test_the_query_bench_knows_which_questions_call_the_model(settings):
    # It times bare llama.cpp only where ask() calls the model, and stops when the two disagree: a question that
    # abstains before the model call (no retrieved passage names the exchange asked for) must not stop it.
    from eval.bench.query import bench_query

    questions = [{"id": "a", "question": "How far did bitcoin fall after the leak?"},
                 {"id": "b", "question": "Which exchange did bitcoin fall on after the leak?"},
                 {"id": "c", "question": "Which markets reacted to the leak?"}]
    out = bench_query(settings, questions, lambda message: None, None)
    assert out["n"] == 3 and out["called_model"] == 2
