"""ask() and stream() end to end on the fakes: citations resolve to exact spans, abstention, errors, history."""

from __future__ import annotations

import pytest

from ingest.chunking import MAX_CHUNK_CHARS
from rag import NOT_FOUND, Answer, Pipeline, UserError, ask, stream
from rag.llm import FakeLLM
from rag.policy import worth_asking


def _doc_text(settings, doc_id: str) -> str:
    return Pipeline(settings).documents()[doc_id].text


def test_ask_cites_exact_spans(settings):
    a = ask("How far did bitcoin fall after the leak?", settings=settings)
    assert not a.abstained and a.citations
    assert "66,000" in " ".join(c.quote for c in a.citations)
    for c in a.citations:
        assert _doc_text(settings, c.doc_id)[c.char_start : c.char_end] == c.quote
    for s in a.sentences:
        assert s.supported and s.citations and all(1 <= n <= len(a.citations) for n in s.citations)
    assert set(a.timings) >= {"retrieve", "first_token", "generate", "verify", "total"}
    assert a.prompt_tokens > 0


def test_stream_yields_deltas_then_the_answer(settings):
    items = list(stream("How far did bitcoin fall after the leak?", settings=settings))
    assert all(isinstance(x, str) for x in items[:-1]) and len(items) > 2
    assert isinstance(items[-1], Answer)


def test_off_topic_question_abstains_and_lists_closest(settings):
    a = ask("Quel temps fera-t-il demain à Lyon?", settings=settings)
    assert a.abstained and a.text == NOT_FOUND and a.citations == []
    assert a.prompt_tokens == 0 and a.sources  # weak retrieval: no model call, closest passages listed


class _Scripted(FakeLLM):
    """Says what it is told: to test how the pipeline treats a model's words."""

    def __init__(self, reply: str):
        self.reply = reply

    def _reply(self, messages):
        return self.reply


def _with_llm(settings, monkeypatch, reply: str) -> Pipeline:
    pipe = Pipeline(settings)
    monkeypatch.setattr(pipe, "llm", lambda: _Scripted(reply))
    return pipe


def test_model_declining_means_abstention(settings, monkeypatch):
    a = _with_llm(settings, monkeypatch, "NOT_FOUND").ask("What did the leak reveal about bitcoin?")
    assert a.abstained and a.sources


def test_hallucinated_answer_is_not_passed_off_as_cited(settings, monkeypatch):
    pipe = _with_llm(settings, monkeypatch, "Anthropic shares closed at 412 dollars on Friday [1].")
    a = pipe.ask("What happened to bitcoin after the leak?")
    assert a.abstained  # no sentence is supported, so the answer is withheld


def test_partially_supported_answer_flags_the_unsupported_sentence(settings, monkeypatch):
    reply = ("Markets reacted immediately — cybersecurity stocks dropped 4–6%, bitcoin slid to $66,000 [2]. "
             "Anthropic shares closed at 412 dollars on Friday [1].")
    a = _with_llm(settings, monkeypatch, reply).ask("What happened to bitcoin after the leak?")
    assert not a.abstained
    assert [s.supported for s in a.sentences] == [True, False]
    assert a.sentences[1].citations == []
    assert "66,000" in a.citations[0].quote


def test_a_claim_about_something_no_article_names_is_not_supported(settings, monkeypatch):
    # The bitcoin passage supports "$66,000" word for word; the corpus never mentions Ethereum.
    pipe = _with_llm(settings, monkeypatch, "Ethereum dropped to $66,000 after the leak [1].")
    assert pipe.ask("How much did Ethereum drop after the leak?").abstained
    pipe = _with_llm(settings, monkeypatch, "Bitcoin dropped to $66,000 after the leak [1].")
    a = pipe.ask("How much did Bitcoin drop after the leak?")
    assert not a.abstained and "66,000" in a.citations[0].quote


def test_a_reply_that_only_points_at_a_source_answers_with_that_source(settings, monkeypatch):
    # The 1.5B model answered "Which outlet first published the story?" with a bare "[2]": the passage it pointed
    # at was the answer. It becomes that passage, cited and verified, not an unsupported abstention.
    pipe = _with_llm(settings, monkeypatch, "placeholder")
    sources = pipe.retrieve("How far did bitcoin fall after the leak?").sources
    n = next(s.number for s in sources if "66,000" in s.text)
    monkeypatch.setattr(pipe, "llm", lambda: _Scripted(f"[{n}]."))
    a = pipe.ask("How far did bitcoin fall after the leak?")
    assert not a.abstained and "66,000" in a.text and a.sentences and all(s.supported for s in a.sentences)
    assert [c.quote for c in a.citations] == [next(s.text for s in sources if s.number == n)]
    for reply in ("[99]", "[0]"):  # numbers that name no source leave nothing to answer with
        monkeypatch.setattr(pipe, "llm", lambda reply=reply: _Scripted(reply))
        assert pipe.ask("How far did bitcoin fall after the leak?").abstained


def test_a_declined_yes_no_question_is_answered_by_quoting_its_best_source(settings, monkeypatch):
    pipe = _with_llm(settings, monkeypatch, "NOT_FOUND")
    best = pipe.retrieve("Did bitcoin slide to $66,000 after the leak?").sources[0]
    a = pipe.ask("Did bitcoin slide to $66,000 after the leak?")
    assert not a.abstained and a.attempts == 3  # two model calls declined, then the quote
    assert [c.quote for c in a.citations] == [best.text] and "66,000" in a.text
    assert len(a.sources) == len(pipe.retrieve("Did bitcoin slide to $66,000 after the leak?").sources) > 1
    assert all(s.supported for s in a.sentences)
    # Not for a question that is not yes-or-no, nor for one whose best source is far from it.
    assert pipe.ask("How far did bitcoin fall after the leak?").abstained
    assert pipe.ask("Did the zebra herd at the city zoo grow?").abstained


def test_a_declined_question_whose_best_sentence_holds_most_of_its_words_is_answered_by_quoting_it(settings,
                                                                                                  monkeypatch):
    # A 1.5B model overlooks the sentence that answers ("Which macOS release is required for git maintenance to
    # schedule its jobs?" next to "... available only in macOS 10.11 or later"): when one sentence holds most of the
    # question's words, a decline gives way to that source, quoted and cited, whatever the question's form.
    from rag.policy import QUOTE_OVERLAP

    pipe = _with_llm(settings, monkeypatch, "NOT_FOUND")
    question = "Which tech-software ETF fell 2.5% as bitcoin slid to $66,000?"
    retrieval = pipe.retrieve(question)
    assert retrieval.best_overlap >= QUOTE_OVERLAP
    a = pipe.ask(question)
    assert not a.abstained and [c.quote for c in a.citations] == [retrieval.sources[0].text]
    assert "2.5%" in a.text and all(s.supported for s in a.sentences)
    loose = "Why did the author write the blog?"  # its best sentence has too few of its words
    assert pipe.retrieve(loose).best_overlap < QUOTE_OVERLAP and pipe.ask(loose).abstained


def test_an_unsupported_yes_or_no_verdict_gives_way_to_the_passage_that_settles_it(settings, monkeypatch):
    # The 1.5B model says yes to nearly every yes-or-no question ("Yes, von Wysiecki thinks Mythos will replace the
    # models people use today." where the passage says "it won't replace"). An unsupported verdict is not shown as
    # the answer: the best source, quoted and cited, takes its place, and the model's other sentences stay.
    question = "Did bitcoin rise to $90,000 after the leak?"
    reply = "Yes, bitcoin rose to $90,000 after the leak. Cybersecurity stocks dropped 4–6% [1]."
    pipe = _with_llm(settings, monkeypatch, reply)
    best = pipe.retrieve(question).sources[0]
    a = pipe.ask(question)
    assert not a.abstained and not a.text.startswith("Yes")
    assert a.citations[0].quote == best.text and a.text.startswith(" ".join(best.text.split())[:40])
    assert all(s.supported for s in a.sentences) and "4–6%" in a.text
    # A supported verdict stands as the model wrote it (one that only restates the question never is: it adds
    # nothing a passage could support).
    pipe = _with_llm(settings, monkeypatch, "Yes, bitcoin slid to $66,000 after the leak [1].")
    assert pipe.ask("Did bitcoin fall after the leak?").text.startswith("Yes, bitcoin slid to $66,000")


def test_an_answer_whose_sources_never_name_what_was_asked_for_abstains(settings, monkeypatch):
    # "Which exchange ...?" asks for an exchange; no passage names one, however well it would support the sentence
    reply = "Bitcoin slid to $66,000 after the leak [1]."
    a = _with_llm(settings, monkeypatch, reply).ask("Which exchange did bitcoin fall on after the leak?")
    assert a.abstained and a.abstain_reason == "off_focus" and a.text == NOT_FOUND
    assert a.prompt_tokens == 0 and a.sources  # the model was not asked; the closest passages are listed
    # asked for the price, the same passage answers: a price is given as a figure, not as the word
    a = _with_llm(settings, monkeypatch, reply).ask("What price did bitcoin slide to after the leak?")
    assert not a.abstained and "66,000" in a.text
    # and asked which markets reacted, it names them
    a = _with_llm(settings, monkeypatch, reply).ask("Which markets reacted to the leak?")
    assert not a.abstained


def test_known_names_come_from_every_word_of_every_article(settings):
    from rag.policy import foreign_names

    knows = Pipeline(settings).retriever().knows
    assert knows("Wysiecki"), "a byline is left out of chunks but is still the article's word"
    assert knows("Chinese"), "the corpus says China: a word that starts the same counts"
    assert not knows("Ethereum") and not knows("Nvidia")
    assert foreign_names("How much did Ethereum and Bitcoin drop after Anthropic's leak?", knows) == {"ethereum"}


@pytest.mark.parametrize("question,match", [("", "empty"), ("   \n\t ", "empty"), ("x" * 4001, "4,000")])
def test_bad_questions_are_user_errors(settings, question, match):
    with pytest.raises(UserError, match=match):
        ask(question, settings=settings)


def test_control_characters_are_dropped(settings):
    a = ask("How far did \x00bitcoin\x1b fall after the leak?", settings=settings)
    assert a.question == "How far did bitcoin fall after the leak?"


def test_follow_up_retrieves_with_history(settings):
    pipe = Pipeline(settings)
    history = [{"role": "user", "content": "How did bitcoin react to the Mythos leak?"},
               {"role": "assistant", "content": "It slid to $66,000 [1]."}]
    alone = pipe.retrieve("and how much did it fall?")
    followed = pipe.retrieve("and how much did it fall?", history)
    assert any("66,000" in s.text for s in followed.sources)
    assert [s.text for s in alone.sources] != [s.text for s in followed.sources]


def test_unknown_model_id_says_did_you_mean(settings):
    with pytest.raises(UserError, match="did you mean 'ollama'"):
        ask("How far did bitcoin fall?", settings=settings.model_copy(update={"llm": "olama:qwen"}))


def test_corpus_changes_are_picked_up_on_reingest(settings, corpus):
    pipe = Pipeline(settings)
    pipe.ingest()
    (corpus / "new.md").write_text("# Zebra news\n\nThe zebra count at the zoo reached 4,242 in May.\n",
                                   encoding="utf-8")
    report = pipe.ingest()
    assert report.added == ["new"]
    a = pipe.ask("How many zebras were counted at the zoo?")
    assert not a.abstained and any("4,242" in c.quote for c in a.citations)
    assert a.citations[0].title == "Zebra news"


def test_a_question_is_worth_a_model_call_when_near_in_meaning_or_in_words(settings):
    pipe = Pipeline(settings)
    on_topic = pipe.retrieve("After how many years in this industry were leaked roadmaps just marketing?")
    off_topic = pipe.retrieve("Quel temps fera-t-il demain à Lyon?")
    assert on_topic.best_overlap >= 0.6 > off_topic.best_overlap
    assert worth_asking(True, on_topic.best_similarity, on_topic.best_overlap, 1.5, 0.6), "its words alone do"
    assert not worth_asking(True, off_topic.best_similarity, off_topic.best_overlap, 1.5, 0.6)
    assert not worth_asking(True, on_topic.best_similarity, on_topic.best_overlap, 1.5, 1.01)


def test_the_sentence_after_a_best_pick_joins_it(settings, corpus):
    # Reference pages name a thing in one sentence and give its figure in the next.
    (corpus / "gc.md").write_text(
        "# Garbage collection\n\nRecords of conflicted merges you have not resolved are kept for this many days "
        "when the cleanup runs. The default is 15 days. Other settings exist too.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    r = pipe.retrieve("How many days are records of unresolved conflicted merges kept?")
    top = next(s for s in r.sources if s.doc_id == "gc")
    assert "kept for this many days" in top.text and "The default is 15 days." in top.text
    assert pipe.documents()["gc"].text[top.start : top.end] == top.text


def test_a_lead_in_that_ends_its_chunk_is_joined_by_the_first_item_of_the_next(settings, corpus):
    # A list's lead-in ("A few signals stand out:") can be the last sentence of a chunk, its items the next chunk's.
    filler = " ".join(f"The museum opened gallery number {n} in the spring of that year." for n in range(1, 9))
    (corpus / "zoo.md").write_text(f"# Zoo report\n\n{filler} Three wombat findings stand out:\n"
                                   "- Wombats sleep sixteen hours a day in the new burrows.\n"
                                   "- Wombat droppings are cube shaped.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    retriever = pipe.retriever()
    text = pipe.documents()["zoo"].text
    lead = text.index("Three wombat findings")
    chunks = {cid: retriever.metas.start(cid) for cid in retriever.metas.chunk_ids("zoo")}
    texts = pipe.store.texts_of(list(chunks))
    ends = {cid: chunks[cid] + len(texts[cid]) for cid in chunks}
    assert any(end == text.index("\n- Wombats") for end in ends.values()), "the lead-in ends its chunk"
    r = pipe.retrieve("Which wombat findings stand out?")
    spans = sorted((s.start, s.end) for s in r.sources if s.doc_id == "zoo")
    first_item = text.index("- Wombats sleep")
    assert any(a <= lead < b for a, b in spans), spans
    assert any(a <= first_item < b for a, b in spans), "the item after the lead-in is a source too"
    for s in r.sources:
        assert pipe.documents()[s.doc_id].text[s.start : s.end] == s.text


@pytest.mark.parametrize("between", ["\n", "\n\n", " "], ids=["line break", "blank line", "space"])
def test_a_source_read_on_into_the_next_chunk_is_one_exact_span(settings, corpus, between):
    # Chunks are whole lines, or the sentences of a long one: what lies between two is a line break, a blank line
    # (HTML and Markdown paragraphs) or a space. A pick that ends its chunk reads on into the next over any of them,
    # and the joined source is exactly the document's text between its offsets.
    lead_in = "Three wombat findings stand out this year." if between == " " else "Three wombat findings stand out:"
    item = "Wombats sleep sixteen hours a day in the new burrows."
    filler = [f"The museum opened gallery number {n} in the spring of that year." for n in range(1, 9)]
    if between == " ":  # one long line, split at its sentences: the item is the first that does not fit
        while len(" ".join([*filler, lead_in])) + 64 <= MAX_CHUNK_CHARS:
            filler.append(f"The museum opened gallery number {len(filler) + 1} in the spring of that year.")
        short = MAX_CHUNK_CHARS - len(" ".join([*filler, lead_in]))
        filler[0] = filler[0].replace("The museum", "The " + "very " * (short // 5) + "museum")
    lead = " ".join([*filler, lead_in])
    if between == " ":
        body = f"{lead} {item} " + " ".join(f"The aviary added perch number {n} for the parrots." for n in range(12))
    else:
        body = f"{lead}{between}{item}{between}Wombat droppings are cube shaped."
    (corpus / "zoo.md").write_text(f"# Zoo report\n\n{body}\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    retriever = pipe.retriever()
    text = pipe.documents()["zoo"].text
    chunks = {cid: retriever.metas.start(cid) for cid in retriever.metas.chunk_ids("zoo")}
    texts = pipe.store.texts_of(list(chunks))
    at = text.index(lead_in)
    assert any(chunks[c] + len(texts[c]) == at + len(lead_in) for c in chunks), "the lead-in ends its chunk"
    r = pipe.retrieve("Which three wombat findings stand out this year?")
    joined = [s for s in r.sources if s.doc_id == "zoo" and s.start <= at and text.index(item) < s.end]
    assert joined, [(s.text, s.start, s.end) for s in r.sources if s.doc_id == "zoo"]
    assert f"{lead_in}{between}{item[:20]}" in joined[0].text
    for s in r.sources:
        assert pipe.documents()[s.doc_id].text[s.start : s.end] == s.text


def test_a_lead_in_reads_the_heads_of_its_items_not_the_first_items_explanation(settings, corpus):
    # "A few technical signals stand out:" was given with its first item and that item's explanation, so the other
    # two signals never reached the model. A pick that leads into a list reads the first sentence of each item.
    (corpus / "zoo.md").write_text(
        "# Zoo report\n\nThree wombat findings stand out:\n"
        "- Deep sleepers. The keepers timed them with a stopwatch for a month. They logged it all in a notebook.\n"
        "- Cube droppings. The shape keeps them from rolling off rocks. Nobody knows how the gut does it.\n"
        "- Night diggers. Their burrows grow after dark. The gardeners are not pleased.\n"
        "Opening hours\nThe zoo opens at nine.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    sources = [s for s in pipe.retrieve("Which three wombat findings stand out?").sources if s.doc_id == "zoo"]
    given = " ".join(s.text for s in sources)
    assert all(head in given for head in ("- Deep sleepers.", "- Cube droppings.", "- Night diggers.")), sources
    assert "stopwatch" not in given and "Opening hours" not in given, sources
    for s in sources:
        assert pipe.documents()[s.doc_id].text[s.start : s.end] == s.text


def test_a_best_pick_reads_on_past_a_short_aside_to_the_figure(settings, corpus):
    # Reference pages put an aside between the sentence that names a setting and the one that gives its value:
    # "... kept for this many days. You can also use "1.month.ago", etc. The default is 15 days." The sentences
    # after a best pick join it one at a time while they fit NEIGHBOUR_CHARS, so the figure comes too.
    (corpus / "rerere.md").write_text(
        "# Rerere settings\n\nRecords of unresolved wombat merges are kept for this many days when the burrow "
        "cleaner runs. You can also use a more human-readable form such as one month ago. The default is 15 "
        "days.\n\nThe burrow cleaner also packs loose wombat objects into one file.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    sources = pipe.retrieve("For how many days are records of unresolved wombat merges kept?").sources
    mine = [s for s in sources if s.doc_id == "rerere"]
    assert any("kept for this many days" in s.text and "The default is 15 days." in s.text for s in mine), mine
    for s in sources:
        assert pipe.documents()[s.doc_id].text[s.start : s.end] == s.text


def test_a_pick_that_points_back_brings_the_sentence_before_it(settings, corpus):
    # "It tells git bisect run that the current commit should be marked as untestable" was the best pick for
    # "Which exit code tells git bisect run that a commit cannot be tested?"; the code, 125, is in the sentence
    # before it. Here that sentence shares no word with the question; a pick that opens by pointing back brings it.
    (corpus / "census.md").write_text(
        "# Wombat census\n\nHeavy rain sometimes floods the valley. The special exit code 125 should be used in that "
        "case. It tells the wombat census that the current burrow must be marked as uncountable and skipped.\n",
        encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    sources = pipe.retrieve("Which number tells the wombat census that a burrow must be marked as uncountable?").sources
    mine = [s for s in sources if s.doc_id == "census"]
    assert any("exit code 125" in s.text and s.text.endswith("marked as uncountable and skipped.") for s in mine), mine
    assert not any("Heavy rain" in s.text for s in mine), mine  # one sentence back, for a pick that points back
    for s in sources:
        assert pipe.documents()[s.doc_id].text[s.start : s.end] == s.text


def test_a_source_never_reads_on_into_a_heading_or_back_to_one(settings, corpus):
    # In plain-text articles a section title is a line of its own ("Cyber Capabilities as a Differentiator"),
    # and reading on after a pick, or back from one that opens with "It", took it into the source: tokens the model
    # must read, a dangling title in the quote. A heading starts another section, so reading stops before it.
    (corpus / "census.txt").write_text(
        "Wombat census\n\nThe spring census counted 412 wombats in the valley.\n\nBurrow Flooding and Its "
        "Aftermath\n\nIt drowned seven burrows near the river in one night.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    for question in ("How many wombats did the spring census count in the valley?",
                     "How many burrows near the river drowned in one night?"):
        mine = [s for s in pipe.retrieve(question).sources if s.doc_id == "census"]
        assert mine, question
        assert not any("Flooding" in s.text for s in mine), mine
    counted = [s for s in pipe.retrieve("How many wombats did the spring census count in the valley?").sources
               if "412" in s.text]
    assert counted and counted[0].text.endswith("in the valley."), counted


def test_no_two_sources_share_a_sentence(settings, corpus):
    # The sentence after a best pick joins it; when that sentence was picked on its own too, it is given once.
    (corpus / "wombats.md").write_text("# Wombats\n\nWombats dig deep burrows in the dry hills near the river. "
                                       "Wombats dig their burrows at night in the dry hills.\n", encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    sources = pipe.retrieve("Where and when do wombats dig burrows in the dry hills?").sources
    mine = [s for s in sources if s.doc_id == "wombats"]
    assert any("at night" in s.text for s in mine) and any("near the river" in s.text for s in mine)
    for a in sources:
        for b in sources:
            if a.number < b.number and a.doc_id == b.doc_id:
                assert a.end <= b.start or b.end <= a.start, (a.text, b.text)


def test_a_word_every_passage_repeats_does_not_pick_the_sentence(settings, corpus, monkeypatch):
    # In a folder about Mythos, "How did the Mythos leak happen?" ranked "The market's reaction to the Mythos leak
    # ..." above the sentence that says how it happened, which does not repeat "Mythos". A word in most passages
    # tells none of them apart, so sentences are also ranked by the question without it.
    import rag.retrieve as retrieve

    for f in corpus.iterdir():
        f.unlink()
    for n, town in enumerate(["Perth", "Hobart", "Darwin", "Cairns", "Sydney"]):
        (corpus / f"wombat{n}.md").write_text(
            f"# Wombat news from {town}\n\nThe wombat keepers of {town} counted every wombat in the wombat park. "
            f"Visitors in {town} photographed a wombat near the wombat pond.\n", encoding="utf-8")
    (corpus / "escape.md").write_text(
        "# Night at the zoo\n\nThe escape began through a gate left unlatched by a night guard. Lunch is served at "
        "noon in the cafe by the lake. Wombat fans say the wombat story was the wombat story of the year.\n",
        encoding="utf-8")
    pipe = Pipeline(settings)
    pipe.ingest()
    question = "How did the wombat escape happen?"
    assert pipe.retriever()._without_common(question) == "How did the escape happen?"

    r = pipe.retrieve(question)
    assert r.sources[0].text.startswith("The escape began")
    overlap = r.best_overlap
    monkeypatch.setattr(retrieve, "COMMON_SHARE", 1.0)  # no word is too common: the repeated word wins
    r = pipe.retrieve(question)
    assert "wombat" in r.sources[0].text.lower() and not r.sources[0].text.startswith("The escape began")
    # The policy's thresholds were set on the share of all the question's words, "wombat" included: what it is
    # told does not move with the ranking.
    assert r.best_overlap == pytest.approx(overlap) and 0.5 < overlap < 1.0
