"""The big-inputs section of `rag bench` (eval/bench/big_inputs.py) on tiny sizes: every kind of input is written at
the size asked, goes through load, chunking and sentences, and its figures are there. No figure is judged here: the
time bounds are targets in eval/bench/targets.py, checked by `rag bench`."""

from __future__ import annotations

import math

import pytest

from eval.bench import big_inputs, targets
from eval.bench.cli import SECTIONS
from ingest.html import extract

SIZES = (4 * 1024, 16 * 1024)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return big_inputs.bench_big_inputs(tmp_path_factory.mktemp("big"), SIZES, repeat=2)


def test_every_kind_at_every_size(result):
    assert set(result["kinds"]) == {"one_line", "spans_html", "prose", "residue"}
    assert result["sizes"] == list(SIZES) and result["size_ratio"] == 4
    for kind, got in result["kinds"].items():
        assert [r["bytes"] for r in got["rows"]] == list(SIZES), kind  # the file is exactly the size asked for
        for row in got["rows"]:
            assert row["chunks"] >= 1 and row["sentences"] >= row["chunks"], kind
            for key in ("load_s", "chunk_s", "sentences_s"):
                assert math.isfinite(row[key]) and row[key] >= 0, (kind, key)
            assert row["total_s"] == pytest.approx(row["load_s"] + row["chunk_s"] + row["sentences_s"], abs=1e-9)
            assert (row["extract_s"] is not None) == (kind == "spans_html")
        assert got["growth"] == got["rows"][-1]["total_s"] / got["rows"][0]["total_s"]
        # 4x the bytes: 4x the chunks and sentences, give or take the cut at the end
        assert 3 <= got["rows"][-1]["sentences"] / got["rows"][0]["sentences"] <= 5, kind


def test_headline_figures_are_the_worst_kind(result):
    kinds = result["kinds"]
    assert result["slowest_largest_s"] == max(k["rows"][-1]["total_s"] for k in kinds.values())
    assert result["worst_growth"] == max(k["growth"] for k in kinds.values())
    assert kinds[result["slowest"]]["rows"][-1]["total_s"] == result["slowest_largest_s"]
    values = targets.figures({"big_inputs": result})
    assert values["big_input_1mb_s"] == result["slowest_largest_s"]
    assert values["big_input_growth"] == result["worst_growth"]


def test_the_inputs_have_the_shapes_they_are_named_for():
    assert "\n" not in big_inputs.one_line(20_000)
    html = big_inputs.spans_html(20_000)
    assert html.count("<span>") > 100 and "</span>" not in html
    assert len(extract(html).text) > 15_000  # unclosed spans are unwrapped, not refused or lost
    assert big_inputs.prose(20_000).count("\n\n") > 10
    assert big_inputs.residue(20_000).count("\nShare\n") > 10


def test_the_section_is_registered_and_quick_is_small():
    assert "big_inputs" in SECTIONS
    assert big_inputs.SIZES == (256 * 1024, 1024 * 1024)
    assert big_inputs.QUICK_SIZES[-1] / big_inputs.QUICK_SIZES[0] == 4
