"""`rag eval`: answer the gold questions with the pipeline, score them, write a report, and fail when quality drops.

    rag eval                         # all gold questions, answers generated fresh, report in runs/eval-<timestamp>/
    rag eval --limit 6 --cached      # a mixed subset; reuse cached answers (re-scoring is then instant)
    rag eval --set gitdocs --split dev   # another gold set (its own corpus, store and baseline), one split of it
    rag eval --refresh-baseline      # deliberately rewrite eval/baseline.json from this run
    rag eval --calibrate [--judge llm]   # the support judge against eval/gold/support_pairs.jsonl

Exit code: 0 when the gates pass, 1 when one fails (the summary names it and by how much), 2 for a usage or setup
error. A gold set (`SETS`) is a questions file with the corpus its spans quote; the eval indexes that corpus in
a store of its own (`<home>/eval-store/<set>/`, so the sets never overwrite each other or the user's store) and
gates against the set's own baseline. Every question is in the dev or the test split (eval/splits.py); the
report gives the summary of each split beside the other's. Answers are always written to a cache under the run
home (`<home>/eval-cache/`), keyed by the model file's checksum (or id), the settings, the corpus text, the source
of rag/ and ingest/, and the question with its history; only `--cached` reads it, so by default every answer is
generated fresh. Metrics live in eval/metrics.py, gates in eval/gates.py, the report in eval/report.py, the judges
and calibration in eval/judge.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from eval import gates as gates_mod
from eval import judge as judge_mod
from eval import report
from eval.cli import run_command, run_folder
from eval.metrics import aggregate, citation_metrics, score_answer
from ingest.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "eval" / "gold"
QUESTIONS = GOLD / "questions.jsonl"
PAIRS = GOLD / "support_pairs.jsonl"


@dataclass(frozen=True)
class GoldSet:
    """Gold questions and the corpus their spans quote (doc_id = file stem)."""

    name: str
    questions: Path
    corpus: Path
    description: str


SETS = {s.name: s for s in [
    GoldSet("news", QUESTIONS, ROOT / "data" / "corpus", "three news articles (the bundled corpus)"),
    GoldSet("gitdocs", GOLD / "gitdocs" / "questions.jsonl", ROOT / "data" / "gitdocs",
            "ten HTML pages of Git's documentation (Debian git-doc)"),
]}
DEFAULT_SET = "news"
SPLIT_CHOICES = ("dev", "test", "all")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag eval", description="Citation-faithfulness eval on the gold question set.")
    p.add_argument("--out", type=Path, help="run folder (default: runs/eval-<timestamp>/)")
    p.add_argument("--limit", type=int, help="score N questions, mixing answerable, unanswerable and follow-ups "
                   "(with --calibrate --judge llm: ask the LLM judge about N evenly spaced pairs)")
    p.add_argument("--ids", help="comma-separated question ids to score, e.g. q001,q077")
    p.add_argument("--set", dest="gold_set", choices=list(SETS), default=DEFAULT_SET,
                   help="gold set: " + "; ".join(f"{s.name} = {s.description}" for s in SETS.values())
                   + f" (default: {DEFAULT_SET})")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                   help="score the dev or the test questions only (default: all, each split summarised)")
    p.add_argument("--cached", action="store_true", help="reuse cached answers where present (default: fresh)")
    p.add_argument("--cache", type=Path, help="answer cache folder (default: <home>/eval-cache)")
    p.add_argument("--judge", choices=["support", "llm"], default="support",
                   help="support judge for ALCE citation metrics: the pipeline's own (default) or the local LLM")
    p.add_argument("--no-second-judge", dest="second_judge", action="store_false",
                   help="skip grading citations a second time with the meaning judge (the local model's calibrated "
                   "yes/no, which the verifier does not use by default; about 1 s a citation)")
    p.add_argument("--k", type=int, help="retrieval cut-off for hit@k, recall@k, nDCG@k (default: max_sources)")
    p.add_argument("--gates", type=Path, default=gates_mod.DEFAULT_GATES, help="gates file (default: eval/gates.toml)")
    p.add_argument("--baseline", type=Path, help="baseline file (default: from the gates file, one per set: "
                   "eval/baseline.json, eval/baseline-<set>.json)")
    p.add_argument("--refresh-baseline", action="store_true", help="rewrite the baseline from this run")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the support judge on the labelled pairs and print refitted weights")
    p.add_argument("--questions", type=Path, help="gold questions (JSONL; default: the set's)")
    p.add_argument("--pairs", type=Path, default=PAIRS, help="labelled support pairs (JSONL), for --calibrate")
    p.add_argument("--llm", help="model id (default: RAG_LLM or llamacpp:default)")
    p.add_argument("--corpus", type=Path, help="folder of articles (default: the set's, e.g. data/corpus; "
                   "RAG_CORPUS is not read: the gold spans quote the set's corpus)")
    p.add_argument("--store", help="store folder or http://HOST:PORT (default: <home>/eval-store/<set>; "
                   "RAG_STORE is not read)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-question progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), lambda args: calibrate(args) if args.calibrate else evaluate(args), argv)


# ----------------------------------------------------------------------------- gold questions
def load_questions(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"no gold questions at {path}: pass the path of a gold questions JSONL file")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _kind(q: dict) -> str:
    return "followup" if q["history"] else "answerable" if q["answerable"] else "unanswerable"


def select(questions: list[dict], limit: int | None = None, ids: str | None = None, split: str = "all"
           ) -> list[dict]:
    """The questions to score, in gold order: those of `split` ("dev", "test" or "all"). `limit` deals from each
    kind in turn, so a small run still has answerable questions, unanswerable ones and follow-ups."""
    if split != "all":
        questions = [q for q in questions if q.get("split") == split]
        if not questions:
            raise UserError(f"no gold question is in the {split!r} split: give each a \"split\" with "
                            "python -m eval.splits FILE")
    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        unknown = sorted(set(wanted) - {q["id"] for q in questions})
        if unknown:
            raise UserError(f"unknown question id(s): {', '.join(unknown)}")
        questions = [q for q in questions if q["id"] in wanted]
    if limit is None or limit >= len(questions):
        return questions
    if limit < 1:
        raise UserError("--limit must be at least 1")
    queues = {k: [q for q in questions if _kind(q) == k] for k in ("answerable", "unanswerable", "followup")}
    picked: list[dict] = []
    while len(picked) < limit:
        for queue in queues.values():
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    order = {q["id"]: i for i, q in enumerate(questions)}
    return sorted(picked, key=lambda q: order[q["id"]])


# ----------------------------------------------------------------------------- answers and their cache
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_fingerprint(settings) -> str:
    """The model file's sha256 for llama.cpp models (known for the embedded ones), otherwise the model id."""
    from rag.llm import check_llm_id
    from rag.model_files import MODELS, sha256_file

    kind, arg = check_llm_id(settings.llm)
    if kind != "llamacpp":
        return settings.llm
    arg = arg or "default"
    if arg in MODELS:
        return MODELS[arg].sha256
    path = Path(arg).expanduser()
    return sha256_file(path) if path.is_file() else settings.llm


def code_fingerprint() -> str:
    """The source of rag/ and ingest/: a changed prompt, retriever or verifier makes cached answers stale."""
    import ingest
    import rag

    h = hashlib.sha256()
    for folder in (*rag.__path__, *ingest.__path__):
        for path in sorted(Path(folder).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class AnswerCache:
    """Answers as JSON files under `<home>/eval-cache/`, one per (model, settings, corpus, code, question)."""

    def __init__(self, folder: Path, context: dict) -> None:
        self.folder = folder
        self.context = context

    def key(self, question: str, history: list[dict]) -> str:
        payload = json.dumps({**self.context, "question": question, "history": history}, sort_keys=True)
        return _sha(payload.encode("utf-8"))

    def get(self, question: str, history: list[dict]) -> dict | None:
        path = self.folder / f"{self.key(question, history)}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (json.JSONDecodeError, KeyError):
            return None  # a damaged entry is regenerated

    def put(self, question: str, history: list[dict], answer: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.key(question, history)}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"question": question, "history": history, "answer": answer},
                                  ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


def cache_for(pipe, docs: dict[str, str], folder: Path | None = None) -> AnswerCache:
    settings = pipe.settings
    corpus = _sha("\0".join(f"{d}\0{docs[d]}" for d in sorted(docs)).encode("utf-8"))
    context = {"model": model_fingerprint(settings), "corpus": corpus, "code": code_fingerprint(),
               "settings": settings.model_dump(mode="json", exclude={"store", "home", "corpus"})}
    return AnswerCache(folder or settings.home / "eval-cache", context)


def answer_all(pipe, questions: list[dict], cache: AnswerCache, reuse: bool, quiet: bool = False
               ) -> tuple[dict[str, dict], int]:
    """{question id: answer dict}, and how many came from the cache."""
    answers: dict[str, dict] = {}
    hits = 0
    for i, q in enumerate(questions, 1):
        t0 = time.perf_counter()
        answer = cache.get(q["question"], q["history"]) if reuse else None
        if answer is not None:
            hits += 1
            how = "cached"
        else:
            answer = pipe.ask(q["question"], q["history"] or None).to_dict()
            cache.put(q["question"], q["history"], answer)
            how = "abstained" if answer["abstained"] else "answered"
        answers[q["id"]] = answer
        if not quiet:
            print(f"  {i:>3}/{len(questions)} {q['id']} {how:<9} {time.perf_counter() - t0:5.1f}s", file=sys.stderr)
    return answers, hits


# ----------------------------------------------------------------------------- the eval
def score(questions: list[dict], answers: dict[str, dict], docs: dict[str, str], judge, k: int) -> list[dict]:
    """One metrics row per question (eval/metrics.py), plus what the runner adds: invalid citations in answers
    to unanswerable questions, and no first-token latency for abstentions that never asked the model."""
    try:
        rows = [score_answer(answers[q["id"]], q, docs, judge, k) for q in questions]
    except ValueError as e:  # a gold span that is not in the corpus being scored
        raise UserError(f"{e}: the gold questions belong to their set's corpus (drop --corpus, or pass the "
                        "folder the set's spans quote)") from None
    for row in rows:
        if not row["answerable"]:
            row["invalid_citations"] = citation_metrics(answers[row["id"]], _no_judge, docs=docs)["invalid_citations"]
        if not row["prompt_tokens"]:
            for stage in ("first_token", "generate"):
                row["timings"].pop(stage, None)
    return rows


def _no_judge(claim: str, passages: list[str]) -> bool:
    return False  # only the invalid-citation count is wanted, not support


def _second_judge(pipe):
    """The meaning judge (rag/support.py) over the pipeline's model, or None when the backend gives no logits or
    the verifier already used it (then it would not be a second opinion)."""
    from rag.answer import SYSTEM_PROMPT
    from rag.support import MeaningJudge

    llm = pipe.llm()
    if pipe.settings.meaning_judge or not MeaningJudge.available(llm):
        return None
    return MeaningJudge(llm, SYSTEM_PROMPT)


def _settings(args):
    """The set's corpus and a store of its own under the home, unless --corpus / --store say otherwise."""
    from rag.settings import Settings

    gold = SETS[args.gold_set]
    home = Settings.from_env().home
    return Settings.from_env(llm=args.llm, corpus=args.corpus or gold.corpus,
                             store=args.store or str(home / "eval-store" / gold.name))


def summarise(rows: list[dict]) -> dict[str, float]:
    summary = aggregate(rows)
    summary["invalid_citations"] = float(sum(r.get("invalid_citations", 0) for r in rows))
    return summary


def summary_by_split(rows: list[dict], questions: list[dict]) -> dict[str, dict[str, float]]:
    """The summary of each split that has questions in this run, dev before test."""
    split_of = {q["id"]: q.get("split") for q in questions}
    return {split: summarise([r for r in rows if split_of[r["id"]] == split]) for split in SPLIT_CHOICES[:2]
            if any(split_of[r["id"]] == split for r in rows)}


def evaluate(args) -> int:
    from rag import pipeline

    config = gates_mod.load_config(args.gates)
    gold = SETS[args.gold_set]
    partial = args.limit or args.ids or args.split != "all" or args.questions
    if args.refresh_baseline and args.baseline is None and (partial or args.judge != "support"):
        raise UserError("the committed baseline is for every gold question and the support judge: drop --limit, "
                        "--ids, --split, --questions and --judge, or write elsewhere with --baseline FILE")
    questions = select(load_questions(args.questions or gold.questions), args.limit, args.ids, args.split)
    settings = _settings(args)
    pipe = pipeline(settings)
    pipe.retriever()  # sync the corpus first: the documents are needed for the cache key and for scoring
    docs = {doc_id: rec.text for doc_id, rec in pipe.documents().items()}
    k = args.k or settings.max_sources
    judge = judge_mod.LLMJudge(pipe.llm()) if args.judge == "llm" else pipe.judge
    judge_name = judge.name if isinstance(judge, judge_mod.LLMJudge) else "support"
    out = run_folder(args.out, "eval")
    if not args.quiet:
        print(f"rag eval: {len(questions)} {gold.name} questions ({args.split}) with {settings.llm} -> {out}",
              file=sys.stderr)

    answers, hits = answer_all(pipe, questions, cache_for(pipe, docs, args.cache), args.cached, args.quiet)
    rows = score(questions, answers, docs, judge.supports, k)
    second = _second_judge(pipe) if args.second_judge and args.judge == "support" else None
    if second is not None:  # the same citations graded by a judge the verifier did not use
        for row in rows:
            if row["answerable"]:
                graded = citation_metrics(answers[row["id"]], second.supports, docs=docs)
                row["citation_recall_meaning"] = graded["citation_recall"]
                row["citation_precision_meaning"] = graded["citation_precision"]
    summary = summarise(rows)
    by_split = summary_by_split(rows, questions)
    models = sorted({a["model"] for a in answers.values() if a.get("model")})
    scope = {"llm": settings.llm, "model": ", ".join(models), "embedder": settings.embedder,
             "judge": judge_name, "k": k, "questions": len(questions),
             "gold": gates_mod.gold_fingerprint([_without_split(q) for q in questions])}

    where = gates_mod.baseline_path(config, args.baseline, None if gold.name == DEFAULT_SET else gold.name)
    baseline = gates_mod.read_baseline(where)
    fingerprints = {q["id"]: gates_mod.question_fingerprint(q) for q in questions}
    results = [gates_mod.check_baseline(rows, summary, scope, baseline, config, where, fingerprints),
               gates_mod.check_invalid(rows, config)]
    created = datetime.now().isoformat(timespec="seconds")
    if args.refresh_baseline:
        if results[1].failed:
            results.append(gates_mod.GateResult("refresh_baseline", "fail",
                                                f"baseline not rewritten: {results[1].summary}"))
        else:
            command = ("rag eval --refresh-baseline" + (f" --set {gold.name}" if gold.name != DEFAULT_SET else "")
                       + (f" --judge {args.judge}" if args.judge != "support" else ""))
            gates_mod.write_baseline(where, gates_mod.baseline_record(summary, scope, created, command, rows,
                                                                             fingerprints))
            baseline = gates_mod.read_baseline(where)
            before = results[0]
            results[0] = gates_mod.GateResult("baseline", "pass", f"baseline rewritten: {where} (against the "
                                              f"previous one: {before.status}, {before.summary})", before.details)
    gaps = gates_mod.target_gaps(summary, config)

    source = ("generated fresh" if not hits else "all from the cache" if hits == len(questions)
              else f"{hits} from the cache, {len(questions) - hits} generated fresh")
    run = {"created": created, "set": gold.name, "split": args.split, "scope": scope, "answers_source": source,
           "summary": summary, "summary_by_split": by_split,
           "gates": [vars(g) for g in results], "passed": not any(g.failed for g in results),
           "targets": gaps, "baseline": {"path": str(where), "metrics": (baseline or {}).get("metrics")},
           "questions": [{**r, "checks": report.question_checks(r), "failed": report.failed_checks(r)}
                         for r in rows]}
    with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(report.jsonable({"id": q["id"], "answer": answers[q["id"]]}), ensure_ascii=False)
                    + "\n")
    report.write_json(out / "report.json", run)
    report.write_charts(out, summary, baseline, gaps, rows)
    report.write_markdown(out / "report.md", run, rows, answers, {q["id"]: q for q in questions}, results, gaps,
                          baseline)
    print(summary_text(run, results, gaps, out))
    return 0 if run["passed"] else 1


def _without_split(q: dict) -> dict:
    # Which split a question is in does not change what it measures: a baseline stays comparable when the
    # questions it was measured on are later given their split.
    return {k: v for k, v in q.items() if k != "split"}


def _f(summary: dict, key: str) -> str:
    v = summary.get(key, float("nan"))
    return "–" if math.isnan(v) else f"{v:.3f}"


def summary_text(run: dict, results: list, gaps: list[dict], out: Path) -> str:
    s, scope = run["summary"], run["scope"]

    def f(key: str) -> str:
        return _f(s, key)

    lines = [
        f"rag eval: {run['set']} set, {int(s['n_questions'])} questions ({int(s['n_answerable'])} answerable, "
        f"split {run['split']}), {scope['llm']}, judge {scope['judge']}, k={scope['k']}; answers "
        f"{run['answers_source']}",
        f"  retrieval  hit@k {f('hit@k')}  recall@k {f('recall@k')}  mrr {f('mrr')}  ndcg@k {f('ndcg@k')}",
        f"  answers    facts {f('facts_present')}  token F1 {f('token_f1')}  disagreements with both sides cited "
        f"{f('both_sides')}",
        f"  citations  recall {f('citation_recall')}  precision {f('citation_precision')}  unsupported share "
        f"{f('unsupported_share')}  invalid {int(s['invalid_citations'])}",
        f"  citations by the meaning judge (a second opinion)  recall {f('citation_recall_meaning')}  precision "
        f"{f('citation_precision_meaning')}",
        f"  abstention recall {f('abstention_recall')}  precision {f('abstention_precision')}  false abstention "
        f"{f('false_abstention_rate')}",
        f"  cost       total p50 {f('latency_total_p50')}s p95 {f('latency_total_p95')}s  first token p50 "
        f"{f('latency_first_token_p50')}s p95 {f('latency_first_token_p95')}s  prompt tokens "
        f"{f('prompt_tokens_mean')}",
        *[f"  {split:<10} {int(m['n_questions'])} questions: hit@k {_f(m, 'hit@k')}  facts {_f(m, 'facts_present')}  "
          f"citation precision {_f(m, 'citation_precision')}  abstention recall {_f(m, 'abstention_recall')}  "
          f"false abstention {_f(m, 'false_abstention_rate')}" for split, m in run["summary_by_split"].items()],
        "gates:",
        *[f"  {g.status.upper():<7} {g.name}: {g.summary}" for g in results],
        "gaps to targets:",
    ]
    for g in gaps:
        state = "met" if g["met"] else f"short by {-g['gap']:.3f}"
        value = "–" if math.isnan(g["value"]) else f"{g['value']:.3f}"
        lines.append(f"  {g['metric']} {value} (target {g['op']} {g['target']:.2f}): {state}")
    failed = [g.name for g in results if g.failed]
    lines.append(f"result: {'FAIL (' + ', '.join(failed) + ')' if failed else 'PASS'}; report: {out / 'report.md'}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- calibration
def calibrate(args) -> int:
    from rag import pipeline

    settings = _settings(args)
    pipe = pipeline(settings)
    if not args.pairs.is_file():
        raise UserError(f"no labelled pairs at {args.pairs}: pass --pairs PATH")
    pairs = judge_mod.load_pairs(args.pairs)
    llm_judge = None
    if args.judge == "llm":  # the verifier's meaning judge where the model gives logits, else the generated verdict
        from rag.answer import SYSTEM_PROMPT
        from rag.support import MeaningJudge

        llm = pipe.llm()
        llm_judge = MeaningJudge(llm, SYSTEM_PROMPT) if MeaningJudge.available(llm) else judge_mod.LLMJudge(llm)
    def progress(done: int, total: int) -> None:
        if not args.quiet and (done % 25 == 0 or done == total):
            print(f"  LLM judge: {done}/{total} pairs", file=sys.stderr)

    result = judge_mod.calibrate(pairs, pipe.judge.features, threshold=pipe.judge.threshold, llm_judge=llm_judge,
                                 llm_pairs=args.limit, progress=progress)
    out = run_folder(args.out, "calibrate")
    text = judge_mod.calibration_text(result)
    report.write_json(out / "calibration.json", result)
    (out / "calibration.md").write_text(f"# Support judge calibration\n\n```\n{text}\n```\n", encoding="utf-8")
    print(text)
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
