"""`rag bench` in its tiny mode on the fakes: the report files exist, the JSON has its keys and sane numbers.

Speed targets live in the benchmark (rerun it with `rag bench`), not here: these tests check that every part of
the harness runs and that its arithmetic is right, not how fast this machine is.
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
from eval.bench import growth, main, measure, process, targets
from ingest.chunking import chunk_document
from ingest.loaders import find_files, load_document

GROWTH = 1000


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[int, Path, dict]:
    out = tmp_path_factory.mktemp("bench") / "run"
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RAG_CORPUS", "RAG_STORE", "RAG_LLM", "RAG_EMBEDDER", "RAG_TOP_K"):
            mp.delenv(var, raising=False)
        mp.setenv("RAG_HOME", str(home))
        code = main(["--quick", "--growth", str(GROWTH), "--growth-queries", "20", "--out", str(out), "-q"])
    data = json.loads((out / "bench.json").read_text(encoding="utf-8")) if (out / "bench.json").is_file() else {}
    return code, out, data


def test_quick_run_writes_json_markdown_and_plots(run):
    code, out, data = run
    assert code == 0
    for name in ("bench.json", "report.md", "latency.png", "growth.png", "resources.png"):
        assert (out / name).is_file(), name
    for name in ("latency.png", "growth.png", "resources.png"):
        blob = (out / name).read_bytes()
        assert blob.startswith(b"\x89PNG") and len(blob) > 5000, name
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "fake model and embedder" in report  # a quick run says its figures are not speeds
    for t in targets.TARGETS:
        assert f"| {t.label} |" in report, t.key
    assert data["files"] == {"json": "bench.json", "report": "report.md", "latency": "latency.png",
                             "growth": "growth.png", "resources": "resources.png"}


def test_json_has_every_section_and_target(run):
    _, _, data = run
    assert set(data) >= {"meta", "ingest", "query", "process", "growth", "targets", "files"}
    assert data["meta"]["quick"] is True and data["meta"]["llm"] == "fake" and data["meta"]["embedder"] == "fake"
    assert [t["key"] for t in data["targets"]] == [t.key for t in targets.TARGETS]
    judged = {t["key"]: t for t in data["targets"]}
    # Everything but the 100k figures was measured (the quick growth stops at 1k), so those alone have no value.
    assert {k for k, t in judged.items() if t["value"] is None} == {"retrieve_p50_100k", "dense_p50_100k",
                                                                      "recall10_100k"}
    assert all(isinstance(t["pass"], bool) for t in judged.values() if t["value"] is not None)
    assert {"p50", "p95", "mean", "n"} <= set(data["query"]["total"])


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_ingest_and_query_numbers_are_sane(run):
    _, _, data = run
    ing = data["ingest"]
    corpus_chunks = sum(len(chunk_document(load_document(p))) for p in find_files(Path(data["meta"]["corpus"])))
    assert ing["chunks"] == corpus_chunks and ing["sentences"] > ing["chunks"]
    assert all(_positive(ing[k]) for k in ("pipeline_chunks_per_s", "bare_chunks_per_s", "ratio"))
    assert math.isclose(ing["ratio"], ing["pipeline_chunks_per_s"] / ing["bare_chunks_per_s"], rel_tol=1e-9)
    assert 0 <= ing["reingest_s"] < 30

    q = data["query"]
    assert q["n"] == 5 and q["called_model"] >= 1 and q["compared"] == q["called_model"]
    assert q["corpus_chunks"] == corpus_chunks and q["prompt_identical"] is True
    assert q["same_text"] == q["compared"]  # the bare model, given the same prompt, said the same words
    for key in ("retrieve", "first_token", "total", "bare_total", "overhead_ratio", "prompt_tokens"):
        st = q[key]
        assert _positive(st["p50"]) and st["min"] <= st["p50"] <= st["p95"] <= st["max"], key
    for row in q["questions"]:
        if row["called_model"]:  # first token and total are both measured from the start of ask()
            assert row["retrieve"] <= row["first_token"] <= row["total"]
            assert row["prompt_tokens"] == row["bare_prompt_tokens"] > 0


def test_process_numbers_are_sane(run):
    _, _, data = run
    p = data["process"]
    mb = 1024**2
    for part in ("ingest", "ask", "ui"):
        assert 30 * mb < p[part]["peak_rss_bytes"] < 64 * 1024 * mb, part
    assert p["ingest"]["exit_code"] == 0 and _positive(p["cold_start_s"])
    assert all(r["exit_code"] == 0 and r["answer_timings"].get("total", 0) > 0 for r in p["cold"])
    assert p["cold_empty_store"]["seconds"] > 0
    assert p["ui"]["answered"] is True, p["ui"]["status"]


def test_growth_numbers_are_sane(run):
    _, _, data = run
    rows = data["growth"]["rows"]
    assert [(r["size"], r["vectors"]) for r in rows] == [(GROWTH, "fake"), (GROWTH, "synthetic")]
    real, syn = rows
    assert real["chunks"] == GROWTH and real["chunks_embedded"] == GROWTH and real["sentences"] > GROWTH
    assert _positive(real["retrieve"]["p50"]) and real["retrieve"]["n"] == 20
    for r in rows:
        assert 0.0 <= r["recall_at_10_min"] <= r["recall_at_10"] <= 1.0
        assert r["brute_recall_self"] == 1.0
        assert _positive(r["ingest_s"]) and _positive(r["dense"]["p50"]) and _positive(r["brute"]["p50"])


def test_brute_force_is_exact_and_search_stats_score_recall(tmp_path):
    from ingest.store import ChunkStore

    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q = vecs[5]
    assert list(growth.brute_force(vecs, q, 10)) == list(np.argsort(-(vecs @ q), kind="stable")[:10])
    assert growth.brute_force(vecs, q, 1)[0] == 5

    store = ChunkStore(str(tmp_path / "store"), "t")
    ids = [f"v{i}" for i in range(len(vecs))]
    store.add_chunks(ids=ids, vectors=vecs, texts=["x"] * len(ids),
                     metas=[{"doc_id": "d", "title": "", "start": 0, "end": 1, "index": i} for i in range(len(ids))])
    stats = growth.search_stats(store, vecs, ids, vecs[:20])
    assert stats["recall_at_10"] == 1.0 and stats["brute_recall_self"] == 1.0
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
    result = {"query": {"total": {"p50": 9.99}, "first_token": {"p50": 5.0}, "retrieve": {"p50": 0.049},
                        "overhead_ratio": {"p50": 1.12}},
              "ingest": {"ratio": 0.8, "reingest_s": 1.5},
              "growth": {"rows": [{"size": 100_000, "vectors": "synthetic", "dense": {"p50": 0.2},
                                   "recall_at_10": 0.97},
                                  {"size": 100_000, "vectors": "hash384", "retrieve": {"p50": 0.1},
                                   "dense": {"p50": 0.01}, "recall_at_10": 0.5}]},
              "process": {"ask": {"peak_rss_bytes": 2 * measure.GB}, "ingest": {"peak_rss_bytes": 3 * measure.GB}}}
    verdicts = {t["key"]: t["pass"] for t in targets.judge(result, quick=False)}
    assert verdicts == {"ask_total_p50": True, "ask_first_token_p50": False, "overhead_p50": False,
                        "retrieve_p50": True, "retrieve_p50_100k": True, "dense_p50_100k": False,
                        "recall10_100k": True,
                        "ingest_ratio": True, "reingest_s": False, "rss_ask_gb": True, "rss_ingest_gb": False,
                        "rss_ui_gb": None}


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


def test_bad_arguments_exit_2(capsys):
    assert main(["--only", "speed"]) == 2
    assert "unknown section 'speed'" in capsys.readouterr().err
    assert main(["--growth", "lots"]) == 2
    assert main(["--questions", "0", "--only", "query", "--quick"]) == 2
