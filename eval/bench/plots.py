"""The bench's PNG plots (matplotlib, Agg backend): latency.png (ask() against bare llama.cpp), growth.png (ingest
time, retrieval latency and Chroma's recall by corpus size) and resources.png (ingest throughput, peak RSS).

Every target line on them is drawn from the table in eval/bench/targets.py. A plot is left out when the sections
it shows were not run or failed; sections without a plot here (any added later) appear in report.md alone.
"""

from __future__ import annotations

from pathlib import Path

from eval.bench.growth import HashEmbedder
from eval.bench.measure import GB
from eval.bench.targets import target

_GOAL_COLOURS = ("tab:red", "tab:orange", "tab:purple")


def goal_lines(ax, keys: list[str]) -> None:
    """A dashed line at each of these targets' goals (one line for targets that share a goal), named in the legend."""
    groups: dict[tuple[str, float], list[str]] = {}
    for key in keys:
        t = target(key)
        groups.setdefault((t.op, t.goal), []).append(key)
    for i, group in enumerate(groups.values()):
        first, names = target(group[0]), ", ".join(target(k).short for k in group)
        ax.axhline(first.goal, color=_GOAL_COLOURS[i % len(_GOAL_COLOURS)], ls="--", lw=1,
                   label=f"target: {names} {first.goal_text()}")


def plot(out: Path, sections: dict[str, dict]) -> dict[str, str]:
    """Write the plots that the sections run (`sections`: name -> its result, failed ones left out) make possible;
    returns {plot name: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, g, ing, proc = (sections.get(s) for s in ("query", "growth", "ingest", "process"))
    drawn = {"latency": _latency(plt, q) if q else None, "growth": _growth(plt, g) if g else None,
             "resources": _resources(plt, ing, proc) if ing or proc else None}
    files = {}
    for name, fig in drawn.items():
        if fig is not None:
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=110)
            plt.close(fig)
            files[name] = f"{name}.png"
    return files


def _latency(plt, q: dict):
    if not q["questions"]:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = [r for r in q["questions"] if r["called_model"]]
    series = {"first token": [r["first_token"] for r in rows], "total": [r["total"] for r in rows],
              "bare first token": [r["bare_first_token"] for r in rows if "bare_total" in r],
              "bare total": [r["bare_total"] for r in rows if "bare_total" in r]}
    series = {k: v for k, v in series.items() if v}
    if series:
        a.boxplot(list(series.values()), tick_labels=list(series.keys()))
    goal_lines(a, ["ask_total_p50", "ask_first_token_p50"])
    a.set_ylabel("seconds")
    a.set_title(f"ask() on {len(rows)} gold questions")
    a.legend(fontsize=8)
    pairs = [(r["bare_total"], r["total"]) for r in rows if "bare_total" in r]
    if pairs:
        x, y = zip(*pairs)
        b.scatter(x, y, s=14)
        lim = max(max(x), max(y)) * 1.05
        over = target("overhead_p50")  # a percentage over bare: the line y = (1 + goal/100) x
        b.plot([0, lim], [0, lim], color="grey", lw=1, label="equal")
        b.plot([0, lim], [0, (1 + over.goal / 100) * lim], color="tab:red", ls="--", lw=1,
               label=f"target: {over.short} {over.goal_text()}")
        b.legend(fontsize=8)
    b.set_xlabel("bare llama.cpp generation (s)")
    b.set_ylabel("our total (s)")
    b.set_title("same prompt: ours vs bare")
    return fig


def _growth(plt, g: dict):
    if not g["rows"]:
        return None
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    real = [r for r in g["rows"] if r["vectors"] not in ("synthetic", HashEmbedder.name)]
    hashed = [r for r in g["rows"] if r["vectors"] == HashEmbedder.name]
    syn = [r for r in g["rows"] if r["vectors"] == "synthetic"]
    for rows, label in ((real, f"ingest.sync ({real[0]['vectors']})" if real else ""),
                        (hashed, "ingest.sync (hashed vectors)"), (syn, "synthetic vectors, add only")):
        if rows:
            a.plot([r["size"] for r in rows], [r["ingest_s"] for r in rows], "o-", label=label)
    a.set(xscale="log", yscale="log", xlabel="chunks", ylabel="seconds", title="ingest time")
    a.legend(fontsize=8)
    lines = [(real, "retrieve", "Retriever.retrieve (real)"), (hashed, "retrieve", "Retriever.retrieve (hashed)"),
             (real, "dense", "Chroma (real vectors)"), (real, "brute", "brute force (real vectors)"),
             (syn, "dense", "Chroma (synthetic)"), (syn, "brute", "brute force (synthetic)")]
    for rows, key, label in lines:
        rows = [r for r in rows if r.get(key)]
        if rows:
            xs = [r["size"] for r in rows]
            (line,) = b.plot(xs, [r[key]["p50"] * 1e3 for r in rows], "o-", label=f"{label} p50")
            b.plot(xs, [r[key]["p95"] * 1e3 for r in rows], ":", color=line.get_color())
    goal_lines(b, ["retrieve_p50_100k", "dense_p50_100k"])
    b.set(xscale="log", yscale="log", xlabel="chunks", ylabel="ms (dotted: p95)", title="retrieval latency")
    b.legend(fontsize=7)
    for rows, label in ((real, "real vectors"), (syn, "synthetic")):
        if rows:
            c.plot([r["size"] for r in rows], [r["recall_at_10"] for r in rows], "o-", label=label)
    goal_lines(c, ["recall10_100k"])
    c.set(xscale="log", ylim=(0, 1.02), xlabel="chunks", ylabel="recall@10 vs brute force", title="Chroma recall")
    c.legend(fontsize=8)
    return fig


def _resources(plt, ing: dict | None, proc: dict | None):
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    if ing:
        a.bar(["pipeline", "bare encode"], [ing["pipeline_chunks_per_s"], ing["bare_chunks_per_s"]],
              color=["tab:blue", "tab:grey"])
        ratio = target("ingest_ratio")  # a share of bare throughput: the line stands at goal x bare
        a.axhline(ratio.goal * ing["bare_chunks_per_s"], color="tab:red", ls="--", lw=1,
                  label=f"target: {ratio.short} {ratio.goal_text()}")
        a.set(ylabel="chunks/s", title=f"ingest throughput (ratio {ing['ratio']:.2f})")
        a.legend(fontsize=8)
    if proc:
        keys = {"ingest": "rss_ingest_gb", "ask": "rss_ask_gb", "ui": "rss_ui_gb"}
        names = ["ingest", "ask"] + (["ui"] if proc.get("ui") else [])
        b.bar(names, [proc[n]["peak_rss_bytes"] / GB for n in names], color="tab:blue")
        goal_lines(b, [keys[n] for n in names])
        b.set(ylabel="GB", title="peak RSS")
        b.legend(fontsize=8)
    return fig
