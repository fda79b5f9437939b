"""The UI's own-documents handlers, in-process: collections, uploads, the document list, removal and the documents
filter of a question; fake model, fake embedder, every store and folder under tmp_path."""

from __future__ import annotations

import html
import re

import pytest

from rag import Settings, pipeline
from ui import handlers
from ui.collections import new_collection_settings

NOTES = ("Reactor notes\n\nThe reactor in the harbour town was inspected on Monday by seven inspectors. "
         "The inspectors found a cracked valve in the reactor.\n")
EVIL = ("Evil <script>window.__pwned=1</script> notes\n\nThe reactor valve was replaced on Friday by the night crew. "
        "The crew tested the reactor afterwards.\n")
QUESTION = "What happened to the reactor valve?"


@pytest.fixture
def base(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bundled.txt").write_text("Bundled\n\nThe bundled article is about bread and ovens.\n", encoding="utf-8")
    settings = Settings(corpus=corpus, store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake",
                        embedder="fake")
    pipeline(settings).ingest()
    return settings


def _upload(base, files, new_name=""):
    progress = []
    page, status = handlers.upload(base, base, files, new_name, lambda *a: progress.append(a))
    return page, status, progress


def test_upload_into_a_new_collection_keeps_every_file_inside_its_folder(base, tmp_path):
    page, status, progress = _upload(base, [("notes.txt", NOTES.encode()), ("../../evil.txt", EVIL.encode())], "mine")
    folder = tmp_path / "home" / "collections" / "mine"
    assert sorted(p.name for p in folder.iterdir()) == ["evil.txt", "notes.txt"]
    assert not list(tmp_path.glob("**/evil.txt"))[1:], "one evil.txt only, the one in the collection's folder"
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "home" / "evil.txt").exists()
    assert page.settings.collection_name == "mine" and "mine" in page.names
    assert 'role="alert"' not in status and status.count('class="rag-added"') == 2 and "2 added" in status
    assert progress and progress[-1][0] == progress[-1][1], "progress ends at all chunks done"
    docs = pipeline(page.settings).documents()
    assert {d.path.rsplit("/", 1)[-1] for d in docs.values()} == {"notes.txt", "evil.txt"}
    assert [doc_id for _, doc_id in page.choices] and {doc_id for _, doc_id in page.choices} == set(docs)
    # Escaped: a title that holds markup is text in the table, never a tag.
    assert "<script>" not in page.table and "&lt;script&gt;" in page.table
    assert page.table.count("<tr data-doc=") == 2 and "<td>txt</td>" in page.table
    # The configured collection is untouched by the upload.
    assert {d.path.rsplit("/", 1)[-1] for d in pipeline(base).documents().values()} == {"bundled.txt"}


def test_upload_into_the_current_collection_and_pick_it_back(base):
    page, status, _ = _upload(base, [("notes.txt", NOTES.encode())])
    assert page.settings == base and "1 added" in status
    assert (base.corpus / "notes.txt").read_text(encoding="utf-8") == NOTES
    again = handlers.pick_collection(base, base.collection_name)
    assert again.table.count("<tr data-doc=") == 2 and again.status == ""


@pytest.mark.parametrize("files, new_name, says", [
    ([("notes.txt", b"x")], "Bad Name!", "collection name"),
    ([("tool.exe", b"MZ")], "", "only"),
    ([], "", "choose one or more files"),
    ([(".hidden.txt", b"x")], "", "not a file name"),
])
def test_upload_errors_are_a_message_and_change_nothing(base, files, new_name, says):
    page, status, _ = _upload(base, files, new_name)
    assert 'role="alert"' in status and says in html.unescape(status)
    assert page.settings == base
    assert sorted(p.name for p in base.corpus.iterdir()) == ["bundled.txt"]


def test_a_file_over_the_size_limit_is_refused(base, monkeypatch):
    monkeypatch.setattr("rag.answer.MAX_FILE_BYTES", 10)
    page, status, _ = _upload(base, [("notes.txt", NOTES.encode())])
    assert 'role="alert"' in status and "limit" in status and not (base.corpus / "notes.txt").exists()


def test_remove_a_document_then_the_list_shows_the_rest(base):
    page, _, _ = _upload(base, [("notes.txt", NOTES.encode()), ("evil.txt", EVIL.encode())], "mine")
    docs = pipeline(page.settings).documents()
    gone = next(i for i, d in docs.items() if d.path.endswith("notes.txt"))
    table, choices, status = handlers.remove(page.settings, gone)
    assert "Removed Reactor notes" in status and 'role="alert"' not in status
    assert gone not in {i for _, i in choices} and len(choices) == 1
    assert gone not in pipeline(page.settings).documents() and "Reactor notes" not in table
    table, choices, status = handlers.remove(page.settings, None)
    assert 'role="alert"' in status and len(choices) == 1


def test_unknown_collection_is_a_message_and_keeps_the_configured_one(base):
    page = handlers.pick_collection(base, "nope")
    assert 'role="alert"' in page.status and "unknown collection" in page.status and page.settings == base


def test_new_collection_settings_validate_the_name(base, tmp_path):
    s = new_collection_settings(base, "reports")
    assert s.collection_name == "reports" and s.corpus == tmp_path / "home" / "collections" / "reports"
    assert s.llm == base.llm and s.store == base.store
    with pytest.raises(Exception, match="not allowed"):
        new_collection_settings(base, "../up")


def _cited_docs(view) -> set[str]:
    answer = view.turns[-1].answer
    return {c.doc_id for c in answer.citations} | {c.doc_id for c in answer.sources}


def test_a_question_scoped_to_one_document_cites_only_that_one(base):
    page, _, _ = _upload(base, [("notes.txt", NOTES.encode()), ("evil.txt", EVIL.encode())], "mine")
    docs = pipeline(page.settings).documents()
    notes = next(i for i, d in docs.items() if d.path.endswith("notes.txt"))
    whole = list(handlers.ask(page.settings, QUESTION, []))[-1]
    assert len(_cited_docs(whole)) == 2, "unscoped, both documents answer (else the scoped check proves nothing)"
    scoped = list(handlers.ask(page.settings, QUESTION, [], [notes]))[-1]
    assert scoped.turns and _cited_docs(scoped) == {notes}
    ids = set(re.findall(r'href="#(?:cite|src)-0-(\d+)"', scoped.sources))
    assert ids and all(c.doc_id == notes for c in scoped.turns[0].answer.citations)
    # A citation from this collection is shown from it, whichever collection the page has now.
    c = scoped.turns[0].answer.citations[0]
    passage = handlers.show_passage(base, scoped.turns, f"#cite-0-{c.number}")
    assert html.unescape(re.search(r"<mark>(.*?)</mark>", passage, re.S).group(1)) == c.quote


def test_the_bundled_articles_take_no_upload(tmp_path):
    from rag.settings import BUNDLED_CORPUS

    bundled = Settings(store=str(tmp_path / "store"), home=tmp_path / "home", llm="fake", embedder="fake")
    before = sorted(p.name for p in BUNDLED_CORPUS.iterdir())
    page, status = handlers.upload(bundled, bundled, [("notes.txt", NOTES.encode())])
    assert 'role="alert"' in status and "new collection" in status and page.settings == bundled
    assert sorted(p.name for p in BUNDLED_CORPUS.iterdir()) == before
    page, status = handlers.upload(bundled, bundled, [("notes.txt", NOTES.encode())], "mine")
    assert "1 added" in status and page.settings.collection_name == "mine"
