"""A user's conversation list: the sidebar page by page, and rename / pin / archive / delete.

Pages use keyset pagination on (pinned, updated_at, id), so page 500 costs what page 1 costs and a chat that
moves to the top between two pages is neither skipped nor repeated in a way that breaks the list.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

from django.db.models import Q

from conversations.models import Attachment, ChatModel, Conversation
from conversations.services.access import get_conversation_for_user
from conversations.services.errors import InvalidInput
from conversations.services.serialize import chat_model_dict

PAGE_SIZE = 50
TITLE_MAX = 200


def _encode_cursor(conversation: Conversation) -> str:
    raw = json.dumps([conversation.pinned, conversation.updated_at.isoformat(), conversation.pk])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[bool, dt.datetime, int]:
    try:
        pinned, updated_at, pk = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return bool(pinned), dt.datetime.fromisoformat(updated_at), int(pk)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("That page link is not valid.") from exc


def sidebar_item(conversation: Conversation) -> dict:
    return {
        "id": str(conversation.public_id),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "updated_at": conversation.updated_at.isoformat(),
    }


def list_conversations(
    user, *, cursor: str | None = None, query: str = "", archived: bool = False, limit: int = PAGE_SIZE
) -> dict:
    """One page of the sidebar. One query, whatever the number of conversations."""
    rows = Conversation.objects.filter(owner=user, archived=archived).only(
        "public_id", "title", "pinned", "archived", "updated_at"
    )
    if query:
        rows = rows.filter(title__icontains=query)
    if cursor:
        pinned, updated_at, pk = _decode_cursor(cursor)
        # Rows after the cursor in the order (-pinned, -updated_at, -id).
        after = Q(pinned=pinned, updated_at=updated_at, pk__lt=pk) | Q(
            pinned=pinned, updated_at__lt=updated_at
        )
        if pinned:
            after |= Q(pinned=False)
        rows = rows.filter(after)
    page = list(rows.order_by("-pinned", "-updated_at", "-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return {
        "conversations": [sidebar_item(c) for c in page],
        "next": _encode_cursor(page[-1]) if more and page else None,
    }


def update_conversation(user, conversation_id: str, changes: dict) -> dict:
    conversation = get_conversation_for_user(user, conversation_id)
    fields = []
    if "title" in changes:
        title = changes["title"]
        if not isinstance(title, str) or len(title) > TITLE_MAX:
            raise InvalidInput(f"A title is text of at most {TITLE_MAX} characters.")
        conversation.title = " ".join(title.split())
        fields.append("title")
    for flag in ("pinned", "archived"):
        if flag in changes:
            if not isinstance(changes[flag], bool):
                raise InvalidInput(f"{flag} must be true or false.")
            setattr(conversation, flag, changes[flag])
            fields.append(flag)
    unknown = set(changes) - {"title", "pinned", "archived"}
    if unknown:
        raise InvalidInput(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if fields:
        # Renaming or pinning is not activity: keep the chat where it is in the time-ordered list.
        Conversation.objects.filter(pk=conversation.pk).update(
            **{f: getattr(conversation, f) for f in fields}
        )
    return sidebar_item(conversation)


def delete_conversation(user, conversation_id: str) -> None:
    conversation = get_conversation_for_user(user, conversation_id)
    files = [a.file for a in Attachment.objects.filter(message__conversation=conversation)]
    conversation.delete()
    for stored in files:  # after the rows are gone: a failed delete leaves a stray file, not a broken chat
        stored.delete(save=False)


def available_models() -> list[dict]:
    models = (
        ChatModel.objects.available()
        .select_related("provider")
        .order_by("display_name", "provider__priority")
    )
    return [chat_model_dict(m) for m in models]
