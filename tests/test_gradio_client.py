"""The web UI's own API (`/ask`), driven by `gradio_client` against the app launched on loopback, on the fakes:
the outputs stream while the answer is written, and one client keeps its conversation for a follow-up."""

from __future__ import annotations

import pytest

from rag import pipeline

from .conftest import free_port

pytestmark = pytest.mark.integration  # servers, subprocesses, whole harnesses: the full run only

gradio_client = pytest.importorskip("gradio_client")

QUESTION = "How far did bitcoin fall after the leak?"


@pytest.fixture
def url(settings):
    from ui.app import launch

    port = free_port()
    demo = launch(settings, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def _assistant_text(chat: list[dict]) -> str:
    content = chat[-1]["content"]
    return " ".join(part.get("text", "") for part in content) if isinstance(content, list) else str(content)


def test_ask_streams_its_outputs_and_keeps_the_conversation(url, settings):
    client = gradio_client.Client(url, verbose=False)
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]
    assert len(endpoint["parameters"]) == 1 and len(endpoint["returns"]) == 5  # the question; the page's outputs

    job = client.submit(QUESTION, api_name="/ask")
    outputs = list(job)  # every update the page would get, as it streams
    assert len(outputs) > 3, "the answer did not stream"
    drafts = [o[0] for o in outputs[:-1] if isinstance(o[0], list) and o[0][-1]["role"] == "assistant"]
    assert drafts and "rag-draft" in _assistant_text(drafts[0])  # the model's draft, before it is verified
    chat, status, sources, timings, question = job.result()
    assert outputs[-1][0] == chat and [m["role"] for m in chat] == ["user", "assistant"]
    answer = _assistant_text(chat)
    assert "66,000" in answer and 'class="cite" href="#cite-0-1"' in answer and "rag-draft" not in answer
    assert "Answered in" in status and "Sources" in sources and "prompt tokens" in timings and question == ""
    expected = pipeline(settings).ask(QUESTION)
    assert expected.citations[0].title in sources

    chat2 = client.submit("and how much did it fall?", api_name="/ask").result()[0]
    assert [m["role"] for m in chat2] == ["user", "assistant"] * 2  # the same client session: a follow-up
    assert chat2[:2] == chat

    other = gradio_client.Client(url, verbose=False).predict("What is Capybara?", api_name="/ask")[0]
    assert len(other) == 2  # a new client is a new conversation
