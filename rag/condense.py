"""Turn a follow-up into one standalone question before retrieval and generation.

A 1.5B model given "Earlier question: ..." and "Question: and how long has he worked there?" too often answers
NOT_FOUND although the passage is in front of it; given "How long has Martin von Wysiecki worked in the industry?"
it answers. So a follow-up that leans on the conversation (a pronoun, "the xAI one", a leading "and", an ellipsis
like "what about bitcoin?") is rewritten by the model itself, in a short prompt under the same system turn as
answering (so llama.cpp's cached system turn is reused, rag/llm.py); a follow-up that stands on its own only loses
its leading "and". The rewrite is accepted only when it looks like a question of the same size and it does not
introduce words that neither the conversation nor the follow-up used; otherwise the follow-up is used as it is,
with the earlier questions added for retrieval only. This module does no retrieval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.llm import LLM, Message
from rag.tokens import STOPWORDS, terms

# Words that make a question lean on what was said before.
_DEPENDS = re.compile(r"\b(?:he|she|him|her|his|hers|it|its|they|them|their|theirs|this|that|these|those|there|"
                      r"one|ones|same|else|too|either|former|latter)\b|^\W*(?:what|how) about\b", re.I)
_LEADING = re.compile(r"^\W*(?:(?:and|so|but|also|then|ok(?:ay)?|well|now)\b[\s,]*)+", re.I)
REWRITE_TOKENS = 40  # a standalone question is short; a longer reply is not one
MAX_GROWTH = 3.0  # a rewrite may name what the follow-up refers to, not triple in length

INSTRUCTION = ("Rewrite the follow-up question so that it can be understood without the conversation: replace "
               "words like he, it, they, that and one with what they refer to. Reply with the rewritten question "
               "only.")
EXAMPLE = [
    ("Which company released the new chip?", "Nvidia released the H300 chip [1].", "How fast is it?",
     "How fast is Nvidia's H300 chip?"),
]


@dataclass(frozen=True)
class Standalone:
    asked: str  # the question as the user asked it
    question: str  # what retrieval and the model are given
    retrieval_context: str  # earlier questions to add to the retrieval query ("" when the rewrite stands alone)
    rewritten: bool  # the model rewrote it


def strip_leading(question: str) -> str:
    """ "and what happened to bitcoin?" -> "What happened to bitcoin?" """
    rest = _LEADING.sub("", question).strip()
    return rest[:1].upper() + rest[1:] if rest else question


def depends_on_history(question: str) -> bool:
    return bool(_DEPENDS.search(question)) or len(terms(question)) <= 3


def _turns(history: list[Message]) -> list[tuple[str, str]]:
    """(user question, assistant answer) pairs, most recent last; markers dropped from answers."""
    pairs: list[tuple[str, str]] = []
    for m in history:
        text = " ".join(str(m.get("content", "")).split())
        if m.get("role") == "user":
            pairs.append((text, ""))
        elif m.get("role") == "assistant" and pairs:
            pairs[-1] = (pairs[-1][0], re.sub(r"\s*\[[\d,\s]+\]", "", text))
    return pairs


def prompt(question: str, history: list[Message], system: str) -> list[Message]:
    """The rewrite request: the system turn of answering, then the last two exchanges and the follow-up."""
    def block(pairs, follow_up):
        lines = []
        for q, a in pairs:
            lines.append(f"User: {q[:300]}")
            if a:
                lines.append(f"Assistant: {a[:300]}")
        return "Conversation:\n" + "\n".join(lines) + f"\nFollow-up: {follow_up}"

    shots = [f"{block([(q, a)], f)}\nRewritten: {r}" for q, a, f, r in EXAMPLE]
    user = "\n\n".join([INSTRUCTION, *shots, block(_turns(history)[-2:], question) + "\nRewritten:"])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _acceptable(rewrite: str, question: str, history: list[Message]) -> bool:
    if not rewrite or "NOT_FOUND" in rewrite or len(rewrite) > MAX_GROWTH * len(question) + 40:
        return False
    if not rewrite.rstrip().endswith("?"):
        return False
    asked = {w.lower() for w in terms(question)}
    said = {w.lower() for w in terms(" ".join(str(m.get("content", "")) for m in history))}
    new = [w for w in terms(rewrite) if w.lower() not in asked | said and len(w) > 3]
    # It names what the conversation named: at least one word of it ("How do I get back and take them off the
    # list?" for "How do I get them back and take them off the list?" only lost the earlier questions that
    # retrieval gets without it), and it brings no facts of its own.
    named = [w for w in terms(rewrite) if w.lower() in said - asked and w.lower() not in STOPWORDS]
    return bool(named) and len(new) <= 2


def standalone(question: str, history: list[Message] | None, llm: LLM | None, system: str,
               seed: int = 0) -> Standalone:
    """The question to retrieve and answer with, given the chat so far."""
    if not history or not any(m.get("role") == "user" for m in history):
        return Standalone(question, question, "", False)
    earlier = " ".join(q for q, _ in _turns(history)[-2:])[:500]
    stripped = strip_leading(question)
    if not depends_on_history(stripped):
        return Standalone(question, stripped, earlier, False)
    if llm is not None:
        reply = "".join(llm.stream(prompt(question, history, system), max_tokens=REWRITE_TOKENS, temperature=0.0,
                                   seed=seed)).strip().splitlines()
        rewrite = re.sub(r"^(?:Rewritten|Question|Standalone question)\s*:\s*", "", reply[0].strip()).strip('"')\
            if reply else ""
        if _acceptable(rewrite, question, history):
            return Standalone(question, rewrite, "", True)
    return Standalone(question, stripped, earlier, False)
