"""The dev/test split of a gold question set: each question's `split`, assigned deterministically and stratified
by tag, so that tuning on dev can be checked on test.

    python -m eval.splits eval/gold/questions.jsonl     # give every question that lacks one a "split"

Tags are dealt rarest first; each question of a tag goes to the split with fewer of that tag (ties: the one with
fewer of its other tags, then the smaller split, then dev). A question that already has a split keeps it, so
adding questions to a set never moves old ones from test to dev. A follow-up may land in another split than the
question it follows: the split is by question, and a history is part of its question. Scoring is not done here.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

SPLITS = ("dev", "test")


def assign_splits(questions: list[dict]) -> list[str]:
    """The split of each question, in order: its own where it has one, otherwise one that balances its tags."""
    splits: list[str | None] = [q.get("split") if q.get("split") in SPLITS else None for q in questions]
    counts: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}  # per split: questions per tag
    sizes: Counter[str] = Counter()  # per split: questions
    for q, split in zip(questions, splits, strict=True):
        if split:
            counts[split].update(q["tags"])
            sizes[split] += 1
    # Iterative stratification (Sechidis et al., 2011): the rarest tag among the questions left is dealt first,
    # so a small tag (follow-ups, multi-doc) is not thrown off balance by questions placed for a common one.
    while left := [i for i, split in enumerate(splits) if split is None]:
        freq = Counter(t for i in left for t in questions[i]["tags"])
        tag = min(freq, key=lambda t: (freq[t], t))
        for i in [i for i in left if tag in questions[i]["tags"]]:
            best = min(SPLITS, key=lambda s: _cost(s, tag, questions[i]["tags"], counts, sizes))
            splits[i] = best
            counts[best].update(questions[i]["tags"])
            sizes[best] += 1
    return [split for split in splits if split]


def _cost(split: str, tag: str, tags: list[str], counts: dict[str, Counter[str]], sizes: Counter[str]
          ) -> tuple[int, int, int, int]:
    """Lower is better: fewer of `tag` in `split` than in the other, then fewer of the question's other tags,
    then fewer questions, then dev before test."""
    other = SPLITS[1 - SPLITS.index(split)]
    skew = sum(counts[split][t] - counts[other][t] for t in tags if t != tag)
    return counts[split][tag] - counts[other][tag], skew, sizes[split] - sizes[other], SPLITS.index(split)


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
