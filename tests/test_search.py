"""Search across titles and message text: FTS5 on SQLite, tsvector + GIN on PostgreSQL (the backends lane
runs this module again on PostgreSQL), only the user's own live conversations, safe highlighted snippets."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.services import search

pytestmark = pytest.mark.django_db


def chat(owner, title: str, *texts: str) -> tuple[Conversation, list[Message]]:
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent, messages = None, []
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=text
        )
        messages.append(parent)
    conversation.current_leaf = parent
    conversation.save()
    return conversation, messages


def test_it_uses_the_databases_own_full_text_index():
    assert search.backend() in ("sqlite", "postgresql")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE name = 'conversations_message_fts'")
        else:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE indexname = 'conversations_message_search_gin'"
            )
        assert cursor.fetchone()


def test_it_finds_message_text_with_a_highlighted_snippet(client, alice):
    conversation, messages = chat(
        alice, "Cooking", "How long should I boil an egg?", "About nine minutes for a hard-boiled egg."
    )
    chat(alice, "Other", "Nothing relevant here", "Indeed.")
    client.force_login(alice)
    response = client.get("/api/search", {"q": "minutes"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [str(conversation.public_id)]
    assert results[0]["message"] == str(messages[1].public_id)
    assert "<mark>minutes</mark>" in results[0]["snippet"]


def test_it_matches_the_last_word_as_a_prefix_and_every_word(alice):
    chat(alice, "A", "the quick brown fox", "ok")
    chat(alice, "B", "a quick grey wolf", "ok")
    assert {r["title"] for r in search.search(alice, "quick bro")} == {"A"}
    assert {r["title"] for r in search.search(alice, "quick")} == {"A", "B"}


def test_it_finds_titles_and_ranks_them_first(alice):
    by_title, _ = chat(alice, "Travel plans for Lisbon", "hello", "hi")
    by_text, _ = chat(alice, "Untitled", "I want to go to Lisbon next year", "Great choice.")
    results = search.search(alice, "lisbon")
    assert [r["id"] for r in results] == [str(by_title.public_id), str(by_text.public_id)]
    assert results[0]["title_html"] == "Travel plans for <mark>Lisbon</mark>"


def test_snippets_escape_the_message_text(alice):
    chat(alice, "<b>bold</b>", "<script>alert('x')</script> dangerous payload \ue000 here", "ok")
    [result] = search.search(alice, "payload")
    assert "<script" not in result["snippet"]
    if connection.vendor == "sqlite":  # PostgreSQL's ts_headline drops tag-like tokens altogether
        assert "&lt;script&gt;" in result["snippet"]
    assert result["snippet"].count("<mark>") == result["snippet"].count("</mark>") >= 1
    assert result["snippet"].replace("<mark>", "").replace("</mark>", "").count("<") == 0
    [by_title] = search.search(alice, "bold")
    assert "<b>" not in by_title["title_html"]


def test_it_does_not_find_charlies_chats(client, alice, charlie):
    chat(charlie, "Secret recipe", "the secret ingredient is saffron", "nice")
    client.force_login(alice)
    assert client.get("/api/search", {"q": "saffron"}).json()["results"] == []
    assert client.get("/api/search", {"q": "secret"}).json()["results"] == []


def test_it_does_not_find_deleted_chats(alice):
    conversation, _ = chat(alice, "Gone", "ephemeral words", "ok")
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    assert search.search(alice, "ephemeral") == []
    assert search.search(alice, "gone") == []


def test_edited_text_is_searchable_and_old_text_is_not(alice):
    _, messages = chat(alice, "Edit", "original wording", "ok")
    messages[0].content = "replacement phrasing"
    messages[0].save()
    assert search.search(alice, "original") == []
    assert len(search.search(alice, "replacement")) == 1


def test_punctuation_and_operators_in_the_query_are_harmless(alice):
    chat(alice, "Ops", "c plus plus and NEAR OR AND", "ok")
    for query in ['"', "c++", "NEAR(", "AND OR NOT", "*", "'; drop table", "-x", "a:b"]:
        search.search(alice, query)  # never raises
    assert search.search(alice, "   ") == []


def test_search_costs_the_same_queries_for_ten_or_a_thousand_chats(client, alice):
    client.force_login(alice)
    for i in range(10):
        chat(alice, f"Chat {i}", f"common word number {i}", "reply common")
    with CaptureQueriesContext(connection) as small:
        client.get("/api/search", {"q": "common"})
    conversations = Conversation.objects.bulk_create(
        [Conversation(owner=alice, title=f"Bulk {i}") for i in range(990)]
    )
    Message.objects.bulk_create(
        [Message(conversation=c, role="user", content="a common message") for c in conversations]
    )
    with CaptureQueriesContext(connection) as large:
        response = client.get("/api/search", {"q": "common"})
    assert len(small) == len(large)
    assert len(response.json()["results"]) == search.LIMIT


def test_it_needs_a_login(client):
    assert client.get("/api/search", {"q": "x"}).status_code == 401


def test_other_peoples_newer_matches_never_crowd_out_yours(alice, charlie, monkeypatch):
    monkeypatch.setattr(search, "RANK_WINDOW", 3)
    mine, _ = chat(alice, "Mine", "an old note about gardening", "ok")
    for i in range(10):
        chat(charlie, f"Charlie {i}", "gardening tips again", "ok")
    assert [r["id"] for r in search.search(alice, "gardening")] == [str(mine.public_id)]


def test_a_very_common_word_is_ranked_among_the_newest_matches(alice, monkeypatch):
    monkeypatch.setattr(search, "RANK_WINDOW", 4)
    conversations = [chat(alice, f"C{i}", f"common {i}", "ok")[0] for i in range(10)]
    found = {r["id"] for r in search.search(alice, "common")}
    if connection.vendor == "sqlite":
        assert found == {str(c.public_id) for c in conversations[-4:]}
    else:
        assert len(found) == 10


def test_deleting_messages_keeps_the_index_consistent(alice):
    conversation, _ = chat(alice, "Temp", "transient content", "ok")
    conversation.delete()
    assert search.search(alice, "transient") == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO conversations_message_fts(conversations_message_fts, rank) VALUES ('integrity-check', 1)"
            )


def test_a_snippet_is_a_window_around_the_first_match():
    text = (
        " ".join(f"word{i}" for i in range(100))
        + " the needle is here "
        + " ".join(f"tail{i}" for i in range(50))
    )
    html = search.highlight(text, ["needle"])
    assert html.startswith("…") and html.endswith("…")
    assert "<mark>needle</mark>" in html
    assert len(html.split()) <= search.SNIPPET_WORDS + 2
    assert search.highlight("Café au lait", ["cafe"]) == "<mark>Café</mark> au lait"


def test_snippets_are_plain_text_without_markdown_with_the_terms_highlighted(alice):
    chat(
        alice,
        "Setup",
        "How do I install it?",
        "## Installing\n\nRun `pip install **pandas**` and read [the docs](https://pandas.pydata.org).\n\n"
        "| package | version |\n|---|---|\n| pandas | 2.2 |",
    )
    [result] = search.search(alice, "pandas")
    text = result["snippet"].replace("<mark>", "").replace("</mark>", "")
    for syntax in ("##", "`", "**", "](", "|", "---"):
        assert syntax not in text, syntax
    assert "Run pip install <mark>pandas</mark> and read the docs" in result["snippet"]


def _integrity_check() -> None:
    """SQLite: FTS5 compares its index with the rows of the view it indexes; raises if they differ."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO conversations_message_fts(conversations_message_fts, rank) VALUES ('integrity-check', 1)"
            )


def test_an_answer_is_found_once_it_ends_not_while_it_is_written(alice):
    from conversations.services import answers

    conversation, [question] = chat(alice, "Zoo", "tell me about animals")
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="pending", content=""
    )
    answers.save_checkpoints({answer.pk: "the zebra"})  # streaming now: a checkpoint, not indexed
    assert search.search(alice, "zebra") == []
    _integrity_check()
    answers.save_checkpoints({answer.pk: "the zebra and the okapi"})
    assert search.search(alice, "okapi") == []
    Message.objects.filter(pk=answer.pk).update(content="the zebra and the okapi graze", status="complete")
    [hit] = search.search(alice, "okapi")
    assert hit["message"] == str(answer.public_id)
    _integrity_check()
    Message.objects.filter(pk=answer.pk).update(content="only a giraffe now")  # settled, edited: re-indexed
    assert search.search(alice, "okapi") == [] and len(search.search(alice, "giraffe")) == 1
    _integrity_check()


def test_an_answer_the_sweeper_settles_is_found_and_a_deleted_running_one_leaves_no_trace(alice):
    conversation, [question] = chat(alice, "Cut", "a question")
    cut = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="streaming",
        content="half a walrus",
    )
    running = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="streaming", content="a narwhal"
    )
    Message.objects.filter(pk=cut.pk).update(status="interrupted")  # what the sweep writes: the text stays
    assert [h["message"] for h in search.search(alice, "walrus")] == [str(cut.public_id)]
    running.delete()
    assert search.search(alice, "narwhal") == []
    _integrity_check()
