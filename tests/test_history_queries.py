"""Constant query counts for the pages that grow with history: the sidebar, a conversation (snapshot, its
page, older turns) and search, from 10 to 1,000 conversations and from 10 to 1,000 messages."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def add_conversations(owner, count: int) -> None:
    rows = Conversation.objects.bulk_create(
        [Conversation(owner=owner, title=f"Chat {i}") for i in range(count)]
    )
    Message.objects.bulk_create([Message(conversation=c, role="user", content="hello there") for c in rows])


def grow_branch(conversation: Conversation, count: int) -> list[Message]:
    """`count` more messages on the current branch, one per tree level, with a regenerated sibling each 10."""
    parent = conversation.current_leaf
    added = []
    for i in range(count):
        if i % 10 == 5 and parent is not None:
            Message.objects.create(
                conversation=conversation, parent=parent.parent, role=parent.role, content="alt"
            )
        parent = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role="user" if i % 2 == 0 else "assistant",
            content=f"m{i}",
        )
        added.append(parent)
    conversation.current_leaf = parent
    conversation.save()
    return added


def count(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200, response.content[:300]
    return len(queries)


def test_the_sidebar_and_search_cost_the_same_for_10_or_1000_conversations(client, alice):
    client.force_login(alice)
    add_conversations(alice, 10)
    count(client, "/")  # the first page reads this process's model catalogue (services/model_choices.Catalog)
    small = [
        count(client, "/api/conversations"),
        count(client, "/api/search", {"q": "hello"}),
        count(client, "/"),
    ]
    add_conversations(alice, 990)
    large = [
        count(client, "/api/conversations"),
        count(client, "/api/search", {"q": "hello"}),
        count(client, "/"),
    ]
    assert small == large


def test_a_conversation_costs_the_same_for_10_or_1000_messages(client, alice, settings):
    settings.CHAT_HISTORY_PAGE_MESSAGES = 100
    conversation = Conversation.objects.create(owner=alice, title="Long")
    grow_branch(conversation, 10)
    client.force_login(alice)
    url = f"/api/conversations/{conversation.public_id}"
    small = [count(client, url), count(client, f"/c/{conversation.public_id}")]
    snapshot = client.get(url).json()
    assert snapshot["has_more"] is False and len(snapshot["messages"]) == 10
    grow_branch(conversation, 990)
    large = [count(client, url), count(client, f"/c/{conversation.public_id}")]
    assert small == large
    snapshot = client.get(url).json()
    assert snapshot["has_more"] is True and len(snapshot["messages"]) == 100
    assert snapshot["messages"][-1]["content"] == "m989"


def test_older_turns_page_back_along_the_branch_at_constant_cost(client, alice, settings):
    settings.CHAT_HISTORY_PAGE_MESSAGES = 100
    conversation = Conversation.objects.create(owner=alice, title="Long")
    grow_branch(conversation, 1000)
    client.force_login(alice)
    first = client.get(f"/api/conversations/{conversation.public_id}").json()["messages"]
    url = f"/api/conversations/{conversation.public_id}/messages"
    seen, before, costs = [m["content"] for m in first], first[0]["id"], set()
    while True:
        costs.add(count(client, url, {"before": before, "limit": 200}))
        page = client.get(url, {"before": before, "limit": 200}).json()
        seen = [m["content"] for m in page["messages"]] + seen
        if not page["has_more"]:
            break
        before = page["messages"][0]["id"]
    assert seen == [f"m{i}" for i in range(1000)]
    assert len(costs) == 1


def test_charlie_cannot_page_alices_conversation(client, alice, charlie):
    conversation = Conversation.objects.create(owner=alice, title="Long")
    [message] = grow_branch(conversation, 1)
    client.force_login(charlie)
    url = f"/api/conversations/{conversation.public_id}/messages"
    assert client.get(url, {"before": str(message.public_id)}).status_code == 404
