"""The eval report: per-question checks, report.md, report.json and two PNG charts, written to one run folder.

report.md leads with the verdict (which gate failed, by how much), then the gaps to the targets, every metric
against the baseline, the same metrics for the dev and the test split side by side, cost, the per-question grid,
and each failing question with the answer and its citations beside the gold reference and spans. report.json holds
the same figures for machines. Charts use matplotlib's Agg backend (no display). Scoring happens elsewhere
(eval/metrics.py); this module only presents.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from eval.gates import GateResult

QUALITY = ["hit@k", "recall@k", "mrr", "ndcg@k", "facts_present", "token_f1", "citation_recall",
           "citation_precision", "both_sides", "unsupported_share", "abstention_recall", "abstention_precision",
           "false_abstention_rate"]
CHECKS = ["abstention", "facts", "retrieval", "citation recall", "citation precision", "unsupported", "invalid"]


def question_checks(row: dict) -> dict[str, bool | None]:
    """Per check: True passed, False failed, None not applicable (e.g. citations of an abstention)."""

    def full(key: str) -> bool | None:
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v >= 1.0 - 1e-9

    if not row["answerable"]:
        invalid = None if row["abstained"] else row.get("invalid_citations", 0) == 0
        return {**dict.fromkeys(CHECKS), "abstention": row["abstained"], "invalid": invalid}
    answered = not row["abstained"]
    unsupported = row.get("unsupported_share", float("nan"))
    return {
        "abstention": answered,
        "facts": full("facts_present"),
        "retrieval": full("hit@k"),
        "citation recall": full("citation_recall") if answered else None,
        "citation precision": full("citation_precision") if answered else None,
        "unsupported": None if not answered or math.isnan(unsupported) else unsupported == 0,
        "invalid": row.get("invalid_citations", 0) == 0,
    }


def failed_checks(row: dict) -> list[str]:
    return [name for name, ok in question_checks(row).items() if ok is False]


def jsonable(value):
    """nan/inf as None, recursively, so report.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def write_json(path: Path, run: dict) -> None:
    path.write_text(json.dumps(jsonable(run), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- charts
def write_charts(out: Path, summary: dict, baseline: dict | None, gaps: list[dict], rows: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    names = [k for k in QUALITY if k in summary]
    values = [0.0 if math.isnan(summary[k]) else summary[k] for k in names]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    bars = ax.bar(range(len(names)), values, color="#4c72b0")
    targets = {g["metric"]: g["target"] for g in gaps}
    base = (baseline or {}).get("metrics", {})
    targets_at = [i for i, key in enumerate(names) if key in targets]
    baseline_at = [i for i, key in enumerate(names) if isinstance(base.get(key), int | float)]
    for i, key in enumerate(names):
        if key in targets:
            ax.hlines(targets[key], i - 0.45, i + 0.45, colors="#c44e52", linestyles="--", linewidth=2,
                      label="target" if i == min(targets_at) else "_nolegend_")
        if isinstance(base.get(key), int | float):
            ax.hlines(base[key], i - 0.3, i + 0.3, colors="black", linewidth=1.5,
                      label="baseline" if i == min(baseline_at) else "_nolegend_")
    for bar, v in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_title("Eval metrics (lower is better: unsupported_share, false_abstention_rate)")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)

    grid = [[{True: 2, False: 0, None: 1}[question_checks(r)[c]] for r in rows] for c in CHECKS]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(rows) + 2), 3.2))
    ax.imshow(grid, aspect="auto", cmap=ListedColormap(["#d62728", "#e8e8e8", "#2ca02c"]), vmin=0, vmax=2,
              interpolation="nearest")
    ax.set_yticks(range(len(CHECKS)), CHECKS, fontsize=8)
    ax.set_xticks(range(len(rows)), [r["id"] for r in rows], rotation=90, fontsize=6)
    ax.set_xticks([x - 0.5 for x in range(1, len(rows))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(CHECKS))], minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    ax.set_title("Per question: green passed, red failed, grey not applicable", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "questions.png", dpi=110)
    plt.close(fig)
    return ["metrics.png", "questions.png"]


# ----------------------------------------------------------------------------- markdown
def write_markdown(path: Path, run: dict, rows: list[dict], answers: dict[str, dict], gold: dict[str, dict],
                   gates: list[GateResult], gaps: list[dict], baseline: dict | None) -> None:
    summary, scope = run["summary"], run["scope"]
    failed = [g for g in gates if g.failed]
    lines = [
        f"# Citation-faithfulness eval, {run['created']}",
        "",
        f"Gold set `{run['set']}`, split `{run['split']}`. Model `{scope['model'] or scope['llm']}` ({scope['llm']}), "
        f"embedder `{scope['embedder']}`, support judge `{scope['judge']}`, retrieval cut-off k = {scope['k']}. "
        f"{len(rows)} questions ({int(summary['n_answerable'])} answerable); answers {run['answers_source']}.",
        "",
        f"## Verdict: {'FAIL' if failed else 'PASS'}",
        "",
        *[f"- **{g.status.upper()}** {g.name}: {_cell(g.summary)}" for g in gates],
        "",
        "## Gaps to targets",
        "",
        "| metric | value | target | gap |",
        "|---|---|---|---|",
    ]
    for g in gaps:
        gap = "met" if g["met"] else f"short by {_fmt(-g['gap'])}"
        lines.append(f"| {g['metric']} | {_fmt(g['value'])} | {g['op']} {g['target']:.2f} | {gap} |")
    base = (baseline or {}).get("metrics", {})
    lines += ["", "## Metrics", "", "Means over answerable questions (abstentions have no citation metrics); "
              "abstention metrics over all.", "", "| metric | value | baseline | change |", "|---|---|---|---|"]
    for key in [k for k in QUALITY if k in summary] + ["invalid_citations"]:
        value = summary.get(key, float("nan"))
        was = base.get(key)
        change = f"{value - was:+.3f}" if isinstance(was, int | float) and not math.isnan(value) else "–"
        lines.append(f"| {key} | {_fmt(value)} | {_fmt(was)} | {change} |")
    lines += _by_split(run["summary_by_split"])
    lines += ["", "![metrics](metrics.png)", "", "## Cost", "",
              "| per question | p50 | p95 | mean |", "|---|---|---|---|"]
    for stage in ("total", "first_token", "retrieve", "generate", "verify"):
        if f"latency_{stage}_p50" in summary:
            lines.append(f"| {stage} (s) | {_fmt(summary[f'latency_{stage}_p50'], 2)} | "
                         f"{_fmt(summary[f'latency_{stage}_p95'], 2)} | {_fmt(summary[f'latency_{stage}_mean'], 2)} |")
    lines.append(f"| prompt tokens | | | {_fmt(summary.get('prompt_tokens_mean'), 0)} |")
    lines += ["", "First token and generate: over the questions that called the model (an abstention on weak "
              "retrieval does not)."]
    if run["answers_source"] != "generated fresh":
        lines += ["", "Latency of cached answers is that of the run that generated them."]
    lines += ["", "## Questions", "", "![questions](questions.png)", "",
              "| id | split | tags | abstained | facts | F1 | hit@k | cit. recall | cit. precision | failed checks |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tags = ", ".join(gold[r["id"]]["tags"])
        lines.append(f"| {r['id']} | {gold[r['id']].get('split', '')} | {tags} | {'yes' if r['abstained'] else 'no'} "
                     f"| {_fmt(r.get('facts_present'), 2)} "
                     f"| {_fmt(r.get('token_f1'), 2)} | {_fmt(r.get('hit@k'), 0)} | "
                     f"{_fmt(r.get('citation_recall'), 2)} | {_fmt(r.get('citation_precision'), 2)} | "
                     f"{', '.join(failed_checks(r)) or ''} |")
    failing = [r for r in rows if failed_checks(r)]
    lines += ["", f"## Failing questions ({len(failing)})", ""]
    for r in failing:
        lines += _failing_question(r, answers[r["id"]], gold[r["id"]])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _by_split(by_split: dict[str, dict]) -> list[str]:
    """Dev and test side by side: tune on dev, and check on test that the gain holds."""
    if not by_split:
        return []
    names = list(by_split)
    lines = ["", "## Metrics by split", "", "Tune on dev; test shows whether a change generalises.", "",
             "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
             "| questions | " + " | ".join(str(int(by_split[n]["n_questions"])) for n in names) + " |",
             "| answerable | " + " | ".join(str(int(by_split[n]["n_answerable"])) for n in names) + " |"]
    for key in [k for k in QUALITY if any(k in m for m in by_split.values())]:
        lines.append(f"| {key} | " + " | ".join(_fmt(by_split[n].get(key, float("nan"))) for n in names) + " |")
    lines.append("| invalid_citations | " + " | ".join(str(int(by_split[n]["invalid_citations"])) for n in names)
                 + " |")
    return lines


def _failing_question(row: dict, answer: dict, q: dict) -> list[str]:
    out = [f"### {q['id']}: {_cell(q['question'])}", "", f"Fails: {', '.join(failed_checks(row))}."]
    if q["history"]:
        turns = " / ".join(f"{t['role']}: {_cell(t['content'])}" for t in q["history"])
        out.append(f"History: {turns}")
    shown = []
    for s in answer.get("sentences", []):
        flag = "" if s.get("supported") else " *(unsupported)*"
        shown.append(f"{_cell(s['text'])}{flag}")
    answer_cell = "<br>".join(shown) if shown else _cell(answer.get("text", ""))
    cites = [f"[{c['number']}] `{c['doc_id']}` {c['char_start']}-{c['char_end']}: \"{_cell(c['quote'])}\""
             for c in answer.get("citations", [])]
    if answer.get("abstained"):
        cites = [f"closest [{c['number']}] `{c['doc_id']}` {c['char_start']}-{c['char_end']}: "
                 f"\"{_cell(c['quote'])}\"" for c in answer.get("sources", [])]
    left = "<br><br>".join([answer_cell, *cites])
    if q["answerable"]:
        spans = [f"`{s['doc_id']}`: \"{_cell(s['quote'])}\"" for s in q["spans"]]
        facts = "; ".join(" / ".join(v) for v in q["facts"])
        right = "<br><br>".join([_cell(q["reference"]), f"facts: {_cell(facts)}", *spans])
    else:
        right = "unanswerable: the articles do not say; the answer should abstain"
    out += ["", "| answer and its citations | gold reference and spans |", "|---|---|", f"| {left} | {right} |", ""]
    return out
