"""Read-only public links. A share copies the active branch (roles and text only) at the moment it is made,
so the page shows exactly that and reaches nothing else: no names, no ids, no later turns."""

from __future__ import annotations

import secrets

from django.utils import timezone

from conversations.models import SharedConversation
from conversations.services import tree
from conversations.services.access import get_conversation_for_user
from conversations.services.errors import NotFound


def _share_dict(share: SharedConversation) -> dict:
    return {"token": share.token, "url": f"/share/{share.token}", "created_at": share.created_at.isoformat()}


def create_share(user, conversation_id: str) -> dict:
    """A new link (an earlier live link of the same conversation is revoked: one link per conversation)."""
    conversation = get_conversation_for_user(user, conversation_id)
    messages = tree.load_messages(conversation)
    path = tree.active_path(messages, conversation.current_leaf_id)
    snapshot = {
        "title": conversation.title,
        "messages": [
            {"role": m.role, "content": m.content}
            for m in path
            if m.role in ("user", "assistant") and m.content
        ],
    }
    SharedConversation.objects.filter(conversation=conversation, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    share = SharedConversation.objects.create(
        conversation=conversation, token=secrets.token_urlsafe(24), snapshot=snapshot
    )
    return _share_dict(share)


def get_share_for_owner(user, conversation_id: str) -> dict | None:
    conversation = get_conversation_for_user(user, conversation_id)
    share = SharedConversation.objects.filter(conversation=conversation, revoked_at__isnull=True).first()
    return _share_dict(share) if share else None


def revoke_share(user, conversation_id: str) -> None:
    conversation = get_conversation_for_user(user, conversation_id)
    SharedConversation.objects.filter(conversation=conversation, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


class ShareTurnedOff(NotFound):
    """The link existed: its owner revoked it or deleted the chat."""


def shared_snapshot(token: str) -> dict:
    """What the public page shows; NotFound for an unknown link, ShareTurnedOff for a revoked one or one whose
    chat was deleted. One query for a live link."""
    share = (
        SharedConversation.objects.filter(
            token=token, revoked_at__isnull=True, conversation__deleted_at__isnull=True
        )
        .only("snapshot", "created_at")
        .first()
    )
    if share is None or not token:
        # A second query only for a link that doesn't open: was there one here, that its owner turned off
        # (or whose chat they deleted)?
        if token and SharedConversation.objects.filter(token=token).exists():
            raise ShareTurnedOff("This link was turned off by its owner.")
        raise NotFound("This link doesn't exist.")
    return {**share.snapshot, "shared_at": share.created_at}
