"""The eval's pass/fail gates and target gaps, configured in eval/gates.toml.

Two gates decide the exit code: no metric may be worse than the committed baseline (eval/baseline.json) by more
than the tolerance, and no citation may be invalid. The targets (e.g. citation precision >= 0.90) never fail a
run; they are reported as the gap still to close. A baseline records the scope it was measured on (model,
embedder, judge, k, gold questions); against a different scope the baseline gate is skipped, and says so, rather
than compare figures that mean different things. Latency is reported, never gated: it depends on the machine.
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
    config["baseline"].setdefault("tolerance", 0.03)
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


def check_baseline(summary: dict[str, float], scope: dict, baseline: dict | None, config: dict,
                   where: Path) -> GateResult:
    """Fail when a gated metric is worse than its baseline value by more than the tolerance."""
    cfg = config["baseline"]
    tol = float(cfg["tolerance"])
    if baseline is None:
        return GateResult("baseline", "skipped", f"no baseline at {where}: create it with rag eval --refresh-baseline")
    differs = [f"{key} {baseline.get('scope', {}).get(key)!r} -> {scope[key]!r}" for key in scope
               if key != "model" and baseline.get("scope", {}).get(key) != scope[key]]
    if differs:
        return GateResult("baseline", "skipped", f"baseline {where} was measured on another scope ("
                          + "; ".join(differs) + "): not comparable; refresh it with rag eval --refresh-baseline")
    base = baseline.get("metrics", {})
    failures, details = [], []
    for direction, keys in (("higher", cfg["higher_is_better"]), ("lower", cfg["lower_is_better"])):
        for key in keys:
            if not _is_number(base.get(key)):
                continue
            was, now = float(base[key]), summary.get(key, float("nan"))
            if not _is_number(now):
                failures.append(f"{key} is undefined in this run (baseline {was:.3f})")
                continue
            worse = (was - now) if direction == "higher" else (now - was)
            line = f"{key} {now:.3f} vs baseline {was:.3f} ({now - was:+.3f})"
            details.append(line)
            if worse > tol + 1e-9:
                side = "below" if direction == "higher" else "above"
                failures.append(f"{key} {now:.3f} is {worse:.3f} {side} baseline {was:.3f} "
                                f"(tolerance {tol:.2f}, over by {worse - tol:.3f})")
    if failures:
        return GateResult("baseline", "fail", "; ".join(failures), details)
    return GateResult("baseline", "pass", f"every gated metric within {tol:.2f} of {where.name}", details)


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


def baseline_record(summary: dict[str, float], scope: dict, created: str, command: str) -> dict:
    return {"created": created, "command": command, "scope": scope,
            "metrics": {k: (round(v, 6) if _is_number(v) else None) for k, v in summary.items()}}


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
