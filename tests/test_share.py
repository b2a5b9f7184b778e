"""Read-only share links: public, a snapshot of the active branch at share time, revocable, reaching nothing else."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Conversation, Message, SharedConversation

pytestmark = pytest.mark.django_db


def conversation_with(owner, title, *texts) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=text
        )
    conversation.current_leaf = parent
    conversation.save()
    return conversation


def share(client, conversation) -> str:
    response = client.post(f"/api/conversations/{conversation.public_id}/share")
    assert response.status_code == 201
    return response.json()["share"]["url"]


def test_a_share_link_works_logged_out_and_shows_the_snapshot(client, alice):
    conversation = conversation_with(
        alice, "Bread", "How do I bake <b>bread</b>?", "Flour, water, salt, time."
    )
    client.force_login(alice)
    url = share(client, conversation)
    # Later turns are not part of the share.
    Message.objects.create(conversation=conversation, role="user", content="A later private question")

    anonymous = Client()
    response = anonymous.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Flour, water, salt, time." in html
    assert "How do I bake &lt;b&gt;bread&lt;/b&gt;?" in html  # escaped, not rendered
    assert "A later private question" not in html
    assert response["X-Robots-Tag"].startswith("noindex")
    assert '<meta name="robots" content="noindex' in html
    for private in ("alice", "alice@example.com", str(conversation.public_id)):
        assert private not in html


def test_a_revoked_link_is_gone(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    assert client.get(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"] == url
    assert client.delete(f"/api/conversations/{conversation.public_id}/share").status_code == 200
    assert Client().get(url).status_code == 404
    assert client.get(f"/api/conversations/{conversation.public_id}/share").json()["share"] is None


def test_sharing_again_replaces_the_old_link(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    first = share(client, conversation)
    second = share(client, conversation)
    assert first != second
    assert Client().get(first).status_code == 404
    assert Client().get(second).status_code == 200


def test_a_deleted_conversations_link_stops_working(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    client.delete(f"/api/conversations/{conversation.public_id}")
    assert Client().get(url).status_code == 404


def test_a_token_reaches_only_its_own_conversation(client, alice, charlie):
    mine = conversation_with(alice, "Mine", "my question", "my answer")
    other = conversation_with(alice, "Other", "other secret", "other answer")
    charlies = conversation_with(charlie, "Charlie's", "charlie secret", "x")
    client.force_login(alice)
    url = share(client, mine)
    html = Client().get(url).content.decode()
    assert "other secret" not in html and "charlie secret" not in html
    anonymous = Client()
    for target in (mine, other, charlies):  # the token opens no API or page of any conversation
        assert anonymous.get(f"/api/conversations/{target.public_id}").status_code == 401
        assert anonymous.get(f"/c/{target.public_id}").status_code == 302
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 32
    for guess in ("", token[:-1], token + "x", str(mine.public_id), "1"):
        assert anonymous.get(f"/share/{guess}").status_code == 404


def test_charlie_cannot_share_or_revoke_alices_conversation(client, alice, charlie):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    client.force_login(charlie)
    assert client.post(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert client.delete(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert client.get(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert Client().get(url).status_code == 200
    assert SharedConversation.objects.count() == 1
