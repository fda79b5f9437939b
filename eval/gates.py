"""The eval's pass/fail gates and target gaps, configured in eval/gates.toml.

Two gates decide the exit code: compared question by question with the committed baseline (eval/baseline.json),
no outcome may regress beyond noise (a paired sign test, see `check_baseline`), and no citation may be invalid.
The targets (e.g. citation precision >= 0.90) never fail a run; they are reported as the gap still to close. A
baseline records the scope it was measured on (model, embedder, judge, k), the machine, and a fingerprint of each
gold question; against a different scope the gate is skipped, and says so, and a question whose gold changed is
left out, rather than compare figures that mean different things. Latency is reported, never gated: it depends on
the machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import UserError

DEFAULT_GATES = Path(__file__).resolve().parent / "gates.toml"


@dataclass
class GateResult:
    name: str
    status: str  # "pass" | "fail" | "skipped"
    summary: str
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def load_config(path: Path = DEFAULT_GATES) -> dict:
    try:
        config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no gates file at {path}: pass --gates PATH or restore eval/gates.toml") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML ({e}): fix it") from None
    config.setdefault("baseline", {})
    config["baseline"].setdefault("alpha", 0.05)
    config["baseline"].setdefault("margin", 2)
    config["baseline"].setdefault("higher_is_better", [])
    config["baseline"].setdefault("lower_is_better", [])
    config.setdefault("invalid_citations", {}).setdefault("max", 0)
    config.setdefault("targets", {})
    config["_dir"] = str(Path(path).resolve().parent)
    return config


def baseline_path(config: dict, override: Path | None = None, gold_set: str | None = None) -> Path:
    """The baseline file: `override`, else the gates file's; another gold set than the default has its own
    (baseline.json -> baseline-gitdocs.json), so one set's gate never compares with the other's figures."""
    if override is not None:
        return Path(override)
    path = Path(config["_dir"]) / config["baseline"].get("file", "baseline.json")
    return path.with_name(f"{path.stem}-{gold_set}{path.suffix}") if gold_set else path


def gold_fingerprint(questions: list[dict]) -> str:
    """Changes when the gold questions scored (or their facts, spans, references) change."""
    payload = json.dumps(sorted(questions, key=lambda q: q["id"]), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


# Per-question outcomes the baseline gate compares; each is "higher is better" and defined for the questions
# named. A question whose value went down regressed, one whose value went up improved.
OUTCOMES = {
    "facts_present": "answerable",       # share of required facts in the answer (0, 0.5, 1, ...)
    "hit@k": "answerable",               # a gold span among the sources
    "citation_recall": "answered",       # answer sentences whose citations support them
    "citation_precision": "answered",
    "answered": "answerable",            # 1 unless it abstained: a lost answer is a false abstention
    "abstained": "unanswerable",         # 1 when it declined, as it should
}


def question_outcomes(row: dict) -> dict[str, float]:
    """The per-question values the baseline gate compares, from one metrics row."""
    out: dict[str, float] = {}
    for key, who in OUTCOMES.items():
        if who == "unanswerable":
            if not row["answerable"]:
                out[key] = float(row["abstained"])
        elif who == "answerable" and row["answerable"]:
            out[key] = float(not row["abstained"]) if key == "answered" else row.get(key, float("nan"))
        elif who == "answered" and row["answerable"] and not row["abstained"]:
            out[key] = row.get(key, float("nan"))
    return {k: round(float(v), 6) for k, v in out.items() if _is_number(v)}


def question_fingerprint(q: dict) -> str:
    """Changes when what a question asks or how it is scored changes (not its split or tags)."""
    keep = {k: q.get(k) for k in ("question", "history", "answerable", "reference", "facts", "spans")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def sign_test_p(regressed: int, improved: int) -> float:
    """One-sided exact sign test: the chance of at least `regressed` regressions among the changed questions if
    each change were a coin flip (noise), i.e. P(X >= regressed), X ~ Binomial(regressed + improved, 1/2)."""
    n = regressed + improved
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(regressed, n + 1)) / 2**n


def check_baseline(rows: list[dict], summary: dict[str, float], scope: dict, baseline: dict | None, config: dict,
                   where: Path, fingerprints: dict[str, str] | None = None) -> GateResult:
    """Compare question by question with the baseline: fail on an outcome only when its regressions outnumber
    its improvements by more than `margin` AND a one-sided sign test on the changed questions gives p < `alpha`.

    One question flipping (on another CPU, greedy decoding can change an answer) never fails the gate; a real
    regression moves many questions the same way. Questions the baseline lacks, or whose gold changed since, are
    left out and counted. Aggregate deltas are reported beside, never gated."""
    cfg = config["baseline"]
    alpha, margin = float(cfg.get("alpha", 0.05)), int(cfg.get("margin", 2))
    if baseline is None:
        return GateResult("baseline", "skipped", f"no baseline at {where}: create it with rag eval --refresh-baseline")
    differs = [f"{key} {baseline.get('scope', {}).get(key)!r} -> {scope[key]!r}" for key in ("llm", "embedder",
               "judge", "k") if baseline.get("scope", {}).get(key) != scope.get(key)]
    if differs:
        return GateResult("baseline", "skipped", f"baseline {where} was measured on another scope ("
                          + "; ".join(differs) + "): not comparable; refresh it with rag eval --refresh-baseline")
    base_q = baseline.get("questions")
    if not isinstance(base_q, dict):
        return GateResult("baseline", "skipped", f"baseline {where} has no per-question outcomes: refresh it with "
                          "rag eval --refresh-baseline")
    fingerprints = fingerprints or {}
    compared, stale = 0, []
    changes: dict[str, tuple[list[str], list[str]]] = {key: ([], []) for key in OUTCOMES}
    for row in rows:
        was = base_q.get(row["id"])
        if was is None or (fingerprints.get(row["id"]) and was.get("gold") != fingerprints[row["id"]]):
            stale.append(row["id"])
            continue
        compared += 1
        now = question_outcomes(row)
        for key in OUTCOMES:
            a, b = was.get("outcomes", {}).get(key), now.get(key)
            if a is None or b is None or abs(a - b) < 1e-9:
                continue
            changes[key][0 if b < a else 1].append(row["id"])
    failures, details = [], []
    for key, (down, up) in changes.items():
        if not down and not up:
            continue
        p = sign_test_p(len(down), len(up))
        line = (f"{key}: {len(down)} regressed ({', '.join(down) or '-'}), {len(up)} improved "
                f"({', '.join(up) or '-'}); net {len(down) - len(up):+d}, sign test p={p:.3f}")
        details.append(line)
        if len(down) - len(up) > margin and p < alpha:
            failures.append(line)
    summary_base = baseline.get("metrics", {})
    for key in cfg["higher_is_better"] + cfg["lower_is_better"]:
        if _is_number(summary_base.get(key)) and _is_number(summary.get(key)):
            now_v = summary[key]
            details.append(f"(mean) {key} {now_v:.3f} vs baseline {summary_base[key]:.3f} "
                           f"({now_v - summary_base[key]:+.3f})")
    left_out = f"; {len(stale)} not in the baseline or changed since ({', '.join(stale[:8])})" if stale else ""
    if failures:
        return GateResult("baseline", "fail", "; ".join(failures) + left_out, details)
    if not compared:
        return GateResult("baseline", "skipped", f"no question of this run is in {where.name}{left_out}", details)
    return GateResult("baseline", "pass", f"{compared} questions compared with {where.name}: no outcome regressed "
                      f"beyond noise (net regressions <= {margin} or sign test p >= {alpha}){left_out}", details)


def check_invalid(rows: list[dict], config: dict) -> GateResult:
    """Fail when more citations are invalid (out of range, or span != quote) than allowed (0)."""
    allowed = int(config["invalid_citations"]["max"])
    bad = {r["id"]: int(r["invalid_citations"]) for r in rows if r.get("invalid_citations", 0) > 0}
    total = sum(bad.values())
    where = ", ".join(f"{qid} ({n})" for qid, n in bad.items())
    if total > allowed:
        return GateResult("invalid_citations", "fail", f"{total} invalid citation(s), {total - allowed} over the "
                          f"maximum of {allowed}: {where}", [where])
    return GateResult("invalid_citations", "pass", f"{total} invalid citations (max {allowed})")


def target_gaps(summary: dict[str, float], config: dict) -> list[dict]:
    """Each target with the run's value and its gap: positive = met with room, negative = short by that much."""
    out = []
    for key, target in config["targets"].items():
        value = summary.get(key, float("nan"))
        if "min" in target:
            op, goal = ">=", float(target["min"])
            gap = value - goal
        else:
            op, goal = "<=", float(target["max"])
            gap = goal - value
        out.append({"metric": key, "op": op, "target": goal, "value": value, "gap": gap,
                    "met": _is_number(gap) and gap >= -1e-9})
    return out


def baseline_record(summary: dict[str, float], scope: dict, created: str, command: str, rows: list[dict],
                    fingerprints: dict[str, str]) -> dict:
    """What a baseline keeps: the scope, the machine it ran on (for the reader: a gate never compares machines),
    the means, and every question's outcomes with the fingerprint of its gold record."""
    return {"created": created, "command": command, "scope": scope,
            "machine": machine(),
            "metrics": {k: (round(v, 6) if _is_number(v) else None) for k, v in summary.items()},
            "questions": {r["id"]: {"gold": fingerprints.get(r["id"], ""), "outcomes": question_outcomes(r)}
                          for r in rows}}


def machine() -> dict:
    """The CPU a run used: greedy answers can differ between CPU families (AMX, AVX-512, AVX2 paths)."""
    import platform

    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                     platform.processor())
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    except OSError:
        model = platform.processor()
    simd = [f for f in ("amx_tile", "avx512f", "avx2") if f" {f}" in flags]
    return {"cpu": model, "simd": simd, "cores": __import__("os").cpu_count()}


def read_baseline(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): restore it or rewrite it with --refresh-baseline") from None


def write_baseline(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
