"""Read-only public links. A share copies the active branch (roles, text and which images) at the moment it is
made, so the page shows exactly that and reaches nothing else: no names, no ids, no later turns. Its images
are served through the share's token by their number in the snapshot (`shared_image`): turning the link off
turns them off too."""

from __future__ import annotations

import secrets

from django.utils import timezone

from conversations.models import Attachment, SharedConversation
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
    path = [m for m in path if m.role in ("user", "assistant")]
    images_of: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message__in=[m for m in path if m.role == "user"]):
        images_of.setdefault(attachment.message_id, []).append(attachment)  # in the order attached
    image_pks: list[int] = []  # kept server-side only: the page names an image by its number
    messages = []
    for m in path:
        images = []
        for attachment in images_of.get(m.pk, []):
            image_pks.append(attachment.pk)
            images.append({"n": len(image_pks), "width": attachment.width, "height": attachment.height})
        if m.content or images:
            messages.append({"role": m.role, "content": m.content, "images": images})
    snapshot = {"title": conversation.title, "messages": messages, "image_pks": image_pks}
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
    snapshot = {k: v for k, v in share.snapshot.items() if k != "image_pks"}
    for message in snapshot.get("messages", []):
        count = len(message.get("images", []))
        for index, image in enumerate(message.get("images", []), 1):
            image["alt"] = (
                f"Image {index} of {count} attached to the prompt"
                if count > 1
                else "Image attached to the prompt"
            )
    return {**snapshot, "shared_at": share.created_at}


def shared_image(token: str, number: int) -> Attachment:
    """Image `number` (1-based) of a live share; NotFound for a revoked link, a deleted chat or no such image.
    Two queries."""
    share = (
        SharedConversation.objects.filter(
            token=token, revoked_at__isnull=True, conversation__deleted_at__isnull=True
        )
        .only("snapshot")
        .first()
    )
    image_pks = share.snapshot.get("image_pks", []) if share is not None and token else []
    if not 1 <= number <= len(image_pks):
        raise NotFound("This image isn't part of a shared chat.")
    attachment = Attachment.objects.filter(pk=image_pks[number - 1]).first()
    if attachment is None:
        raise NotFound("This image isn't part of a shared chat.")
    return attachment
