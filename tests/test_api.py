"""The JSON endpoints behind the sidebar and the chat page."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def make_conversations(owner, count: int, **extra) -> list[Conversation]:
    now = timezone.now()
    rows = Conversation.objects.bulk_create(
        [Conversation(owner=owner, title=f"Chat {i}", **extra) for i in range(count)]
    )
    for i, row in enumerate(rows):  # distinct, decreasing activity times
        Conversation.objects.filter(pk=row.pk).update(updated_at=now - dt.timedelta(minutes=i))
    return rows


def test_the_sidebar_pages_through_every_conversation_once_with_pinned_first(client, alice):
    make_conversations(alice, 120)
    pinned = Conversation.objects.filter(title="Chat 77").update(pinned=True)
    assert pinned == 1
    client.force_login(alice)
    seen, cursor = [], None
    while True:
        response = client.get("/api/conversations", {"cursor": cursor} if cursor else {})
        assert response.status_code == 200
        page = response.json()
        seen += [c["title"] for c in page["conversations"]]
        cursor = page["next"]
        if not cursor:
            break
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen[0] == "Chat 77"
    assert seen[1:4] == ["Chat 0", "Chat 1", "Chat 2"]


def test_the_sidebar_costs_the_same_queries_for_ten_or_a_thousand_chats(client, alice, charlie):
    client.force_login(alice)
    make_conversations(alice, 10)
    with CaptureQueriesContext(connection) as small:
        client.get("/api/conversations")
    make_conversations(alice, 990)
    with CaptureQueriesContext(connection) as large:
        client.get("/api/conversations")
    assert len(small) == len(large)


def test_the_sidebar_searches_titles_and_hides_other_peoples_chats(client, alice, charlie):
    make_conversations(alice, 3)
    Conversation.objects.create(owner=charlie, title="Chat of charlie")
    client.force_login(alice)
    titles = [c["title"] for c in client.get("/api/conversations", {"q": "chat"}).json()["conversations"]]
    assert sorted(titles) == ["Chat 0", "Chat 1", "Chat 2"]


def test_it_renames_pins_and_archives(client, alice):
    conversation = make_conversations(alice, 1)[0]
    client.force_login(alice)
    url = f"/api/conversations/{conversation.public_id}"
    response = client.patch(url, json.dumps({"title": "  Trip   plans ", "pinned": True}), "application/json")
    assert response.status_code == 200 and response.json()["title"] == "Trip plans"
    client.patch(url, json.dumps({"archived": True}), "application/json")
    conversation.refresh_from_db()
    assert (conversation.title, conversation.pinned, conversation.archived) == ("Trip plans", True, True)
    assert client.get("/api/conversations").json()["conversations"] == []
    assert len(client.get("/api/conversations", {"archived": "1"}).json()["conversations"]) == 1


def test_it_rejects_bad_changes(client, alice):
    conversation = make_conversations(alice, 1)[0]
    client.force_login(alice)
    url = f"/api/conversations/{conversation.public_id}"
    for body in ['{"pinned": "yes"}', '{"title": 5}', '{"owner": 1}', "not json", "[]"]:
        response = client.patch(url, body, "application/json")
        assert response.status_code == 400, body
        assert response.json()["error"]["message"]


def test_it_deletes_a_conversation_softly_until_the_purge(client, alice):
    conversation = make_conversations(alice, 1)[0]
    Message.objects.create(conversation=conversation, role="user", content="bye")
    client.force_login(alice)
    assert client.delete(f"/api/conversations/{conversation.public_id}").status_code == 200
    assert Conversation.objects.get().deleted_at is not None and Message.objects.exists()
    assert client.get(f"/api/conversations/{conversation.public_id}").status_code == 404
    # More in tests/test_soft_delete.py.


def test_charlie_cannot_read_change_or_delete_alices_conversation(client, alice, charlie):
    conversation = make_conversations(alice, 1)[0]
    client.force_login(charlie)
    url = f"/api/conversations/{conversation.public_id}"
    assert client.get(url).status_code == 404
    assert client.patch(url, '{"title": "pwned"}', "application/json").status_code == 404
    assert client.delete(url).status_code == 404
    assert client.get(f"/c/{conversation.public_id}").status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Chat 0"


def test_it_answers_401_json_when_logged_out(client):
    response = client.get("/api/conversations")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


def test_it_lists_only_available_models(client, alice, sim_model):
    client.force_login(alice)
    names = [m["id"] for m in client.get("/api/models").json()["models"]]
    assert "gpt-4o" in names
    assert "gpt-4" not in names  # seeded, retired, disabled
