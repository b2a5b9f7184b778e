"""Deleting a conversation hides it everywhere at once, Undo restores it, purge_deleted removes it for good."""

from __future__ import annotations

import datetime as dt
import io
import os

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone

from conversations.models import Attachment, Conversation, DeletedUsage, Message
from conversations.services import access, search
from conversations.services.errors import NotFound

pytestmark = pytest.mark.django_db


def make(owner, title="Doomed") -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    message = Message.objects.create(conversation=conversation, role="user", content="findable words")
    conversation.current_leaf = message
    conversation.save()
    return conversation


def test_a_deleted_conversation_is_hidden_everywhere(client, alice):
    conversation = make(alice)
    message = conversation.messages.get()
    client.force_login(alice)
    assert client.delete(f"/api/conversations/{conversation.public_id}").status_code == 200
    assert Conversation.objects.filter(pk=conversation.pk).exists()  # soft
    assert client.get("/api/conversations").json()["conversations"] == []
    assert client.get(f"/api/conversations/{conversation.public_id}").status_code == 404
    assert client.get(f"/c/{conversation.public_id}").status_code == 404
    assert search.search(alice, "findable") == []
    with pytest.raises(NotFound):
        access.get_conversation_for_user(alice, conversation.public_id)
    with pytest.raises(NotFound):
        access.get_message_for_user(alice, message.public_id)


def test_undo_restores_it(client, alice):
    conversation = make(alice)
    client.force_login(alice)
    client.delete(f"/api/conversations/{conversation.public_id}")
    response = client.post(f"/api/conversations/{conversation.public_id}/restore")
    assert response.status_code == 200 and response.json()["title"] == "Doomed"
    assert [c["title"] for c in client.get("/api/conversations").json()["conversations"]] == ["Doomed"]


def test_charlie_cannot_restore_alices_conversation(client, alice, charlie):
    conversation = make(alice)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    client.force_login(charlie)
    assert client.post(f"/api/conversations/{conversation.public_id}/restore").status_code == 404
    assert Conversation.objects.get(pk=conversation.pk).deleted_at is not None


def test_it_cannot_be_restored_after_the_retention_period(client, alice, settings):
    settings.CHAT_DELETED_RETENTION_DAYS = 30
    conversation = make(alice)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now() - dt.timedelta(days=31))
    client.force_login(alice)
    assert client.post(f"/api/conversations/{conversation.public_id}/restore").status_code == 404


def test_purge_deleted_removes_old_ones_with_their_files_and_keeps_usage(
    alice, settings, django_capture_on_commit_callbacks
):
    settings.CHAT_DELETED_RETENTION_DAYS = 30
    old, recent = make(alice, "old"), make(alice, "recent")
    make(alice, "live")
    answer = Message.objects.create(
        conversation=old,
        role="assistant",
        content="x",
        model_name="gpt-4o",
        prompt_tokens=10,
        completion_tokens=5,
    )
    attachment = Attachment(
        owner=alice,
        message=old.messages.first(),
        mime="image/png",
        width=1,
        height=1,
        bytes=1,
        sha256="ab" * 32,
    )
    attachment.file.save("x.png", ContentFile(b"x"), save=False)
    attachment.save()
    path = attachment.file.path
    Conversation.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - dt.timedelta(days=40))
    Conversation.objects.filter(pk=recent.pk).update(deleted_at=timezone.now() - dt.timedelta(days=2))
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_deleted", stdout=out)
    assert out.getvalue().strip() == "Purged 1 conversation."
    assert set(Conversation.objects.values_list("title", flat=True)) == {"recent", "live"}
    assert not Message.objects.filter(pk=answer.pk).exists()
    assert not os.path.exists(path)
    assert DeletedUsage.objects.filter(user_id=alice.pk).exists()
