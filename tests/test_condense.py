"""Follow-ups become standalone questions (rag/condense.py); a decline is retried with the best source alone."""

from __future__ import annotations

import re

import pytest

from rag import Pipeline
from rag.condense import depends_on_history, standalone, strip_leading
from rag.llm import FakeLLM

HISTORY = [{"role": "user", "content": "Who wrote the short post about the Mythos leak?"},
           {"role": "assistant", "content": "Martin von Wysiecki wrote it [1]."}]


class Recording(FakeLLM):
    """Answers by a rule of the test and records every prompt it was given."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.prompts: list[str] = []

    def _reply(self, messages):
        self.prompts.append(messages[-1]["content"])
        return self.rule(messages[-1]["content"])


@pytest.mark.parametrize("question, expected", [
    ("and what happened to bitcoin?", "What happened to bitcoin?"),
    ("So, what does he recommend?", "What does he recommend?"),
    ("And also then how?", "How?"),
    ("What happened to bitcoin?", "What happened to bitcoin?"),
    ("Andrew Ng said what?", "Andrew Ng said what?"),
])
def test_strip_leading(question, expected):
    assert strip_leading(question) == expected


@pytest.mark.parametrize("question, depends", [
    ("How long has he worked in the industry?", True),
    ("What did the xAI one launch with?", True),
    ("Why did they choose that approach?", True),
    ("What about bitcoin?", True),
    ("Why?", True),
    ("What happened to bitcoin after the leak?", False),
    ("How many documents did the misconfiguration expose?", False),
])
def test_depends_on_history(question, depends):
    assert depends_on_history(question) is depends


def test_a_follow_up_is_rewritten_by_the_model_and_stands_alone():
    llm = Recording(lambda p: "How long has Martin von Wysiecki worked in the industry?")
    s = standalone("How long has he worked in the industry?", HISTORY, llm, "system")
    assert s.rewritten and s.question == "How long has Martin von Wysiecki worked in the industry?"
    assert s.retrieval_context == "" and s.asked == "How long has he worked in the industry?"
    assert "Follow-up: How long has he worked in the industry?" in llm.prompts[0]
    assert "Assistant: Martin von Wysiecki wrote it." in llm.prompts[0]  # markers are not the model's business


@pytest.mark.parametrize("reply", [
    "NOT_FOUND",
    "",
    "Martin von Wysiecki has worked in the industry for 30 years.",  # an answer, not a question
    "How long has Elon Musk of Tesla and SpaceX worked in the automotive industry?",  # names what no one said
    "How long has he been working in the industry?",  # names nothing the conversation said: not a rewrite
])
def test_a_bad_rewrite_falls_back_to_the_follow_up_with_the_earlier_questions(reply):
    s = standalone("and how long has he worked in the industry?", HISTORY, Recording(lambda p: reply), "system")
    assert not s.rewritten and s.question == "How long has he worked in the industry?"
    assert s.retrieval_context == "Who wrote the short post about the Mythos leak?"


def test_a_follow_up_that_stands_alone_is_not_sent_to_the_model():
    llm = Recording(lambda p: "unused?")
    s = standalone("And what happened to bitcoin after the leak?", HISTORY, llm, "system")
    assert s.question == "What happened to bitcoin after the leak?" and not llm.prompts


def test_the_model_answers_the_rewritten_question_without_an_earlier_question_line(settings, monkeypatch):
    def rule(prompt: str) -> str:
        if "Follow-up:" in prompt:
            return "How far did bitcoin slide after the leak?"
        n = re.search(r"^\[(\d+)\] .*66,000", prompt, re.M)
        return f"Bitcoin slid to $66,000 [{n.group(1)}]." if n else "NOT_FOUND"

    llm = Recording(rule)
    pipe = Pipeline(settings)
    monkeypatch.setattr(pipe, "llm", lambda: llm)
    history = [{"role": "user", "content": "How far did cybersecurity stocks and bitcoin slide after the leak?"},
               {"role": "assistant", "content": "Cybersecurity stocks dropped 4-6% [1]."}]
    a = pipe.ask("and the second one?", history=history)
    assert not a.abstained and "66,000" in a.text and a.standalone == "How far did bitcoin slide after the leak?"
    answer_prompt = llm.prompts[-1]
    assert answer_prompt.endswith("Question: How far did bitcoin slide after the leak?")
    assert "Earlier question" not in answer_prompt and "second one" not in answer_prompt


def test_a_decline_is_retried_with_the_best_source_alone(settings, monkeypatch):
    def rule(prompt: str) -> str:  # overlooks the answer among several sources, finds it in one
        sources = re.findall(r"^\[(\d+)\] (.*)$", prompt, re.M)
        if len(sources) == 1:
            return f"{sources[0][1].split('. ')[0].rstrip('.')} [1]."
        return "NOT_FOUND"

    llm = Recording(rule)
    pipe = Pipeline(settings)
    monkeypatch.setattr(pipe, "llm", lambda: llm)
    a = pipe.ask("How far did bitcoin slide after the leak?")
    assert not a.abstained and a.attempts == 2 and len(llm.prompts) == 2
    assert a.citations and all(c.quote in a.sources[0].quote or c.quote == a.sources[0].quote for c in a.citations)


def test_a_decline_far_from_every_source_is_not_retried(settings, monkeypatch):
    llm = Recording(lambda p: "NOT_FOUND")
    pipe = Pipeline(settings)
    monkeypatch.setattr(pipe, "llm", lambda: llm)
    monkeypatch.setattr("rag.policy.RETRY_SIMILARITY", 2.0)  # nothing is near enough
    monkeypatch.setattr("rag.policy.RETRY_OVERLAP", 2.0)
    a = pipe.ask("How far did bitcoin slide after the leak?")
    assert a.abstained and a.abstain_reason == "declined" and len(llm.prompts) == 1


def test_a_not_found_reply_never_reaches_the_stream(settings, monkeypatch):
    pipe = Pipeline(settings)
    monkeypatch.setattr(pipe, "llm", lambda: Recording(lambda p: "NOT_FOUND"))
    items = list(pipe.stream("How far did bitcoin slide after the leak?"))
    assert items[-1].abstained and not any(isinstance(x, str) and "NOT" in x for x in items[:-1])
