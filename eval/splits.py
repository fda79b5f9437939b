"""The dev/test split of a gold question set: each question's `split`, assigned deterministically and stratified
by tag, so that tuning on dev can be checked on test.

    python -m eval.splits eval/gold/questions.jsonl     # give every question that lacks one a "split"

Questions are dealt in file order; each goes to the split that leaves its tags best balanced between dev and
test (ties: the smaller split, then dev). A question that already has a split keeps it, so adding questions to a
set never moves the old ones from test to dev. A follow-up may land in another split than the question it
follows: the split is by question, and a history is part of its question. Scoring is not done here.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

SPLITS = ("dev", "test")


def assign_splits(questions: list[dict]) -> list[str]:
    """The split of each question, in order: its own where it has one, otherwise the one that balances its tags."""
    counts = {s: Counter() for s in SPLITS}
    for q in questions:
        if q.get("split") in SPLITS:
            counts[q["split"]].update(q["tags"])

    def cost(split: str, tags: list[str]) -> tuple[int, int, int]:
        other = SPLITS[1 - SPLITS.index(split)]
        skew = sum(counts[split][t] - counts[other][t] for t in tags)  # how far this split is ahead on these tags
        return skew, sum(counts[split].values()), SPLITS.index(split)

    out = []
    for q in questions:
        split = q.get("split")
        if split not in SPLITS:
            split = min(SPLITS, key=lambda s: cost(s, q["tags"]))
            counts[split].update(q["tags"])
        out.append(split)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m eval.splits QUESTIONS.jsonl", file=sys.stderr)
        return 2
    path = Path(args[0])
    questions = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for q, split in zip(questions, assign_splits(questions), strict=True):
        q["split"] = split
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    print(f"{path}: " + ", ".join(f"{s} {sum(q['split'] == s for q in questions)}" for s in SPLITS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
