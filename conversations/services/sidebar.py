"""A user's conversation list: the sidebar page by page, and rename / pin / archive / delete.

Pages use keyset pagination on (pinned, updated_at, id), so page 500 costs what page 1 costs and a chat that
moves to the top between two pages is neither skipped nor repeated in a way that breaks the list.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from conversations.models import Conversation, SharedConversation
from conversations.services.access import get_conversation_for_user, parse_uuid
from conversations.services.errors import InvalidInput, NotFound
from conversations.services.serialize import sidebar_item

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


def list_conversations(
    user, *, cursor: str | None = None, query: str = "", archived: bool = False, limit: int = PAGE_SIZE
) -> dict:
    """One page of the sidebar. One query, whatever the number of conversations."""
    rows = Conversation.objects.filter(owner=user, archived=archived, deleted_at__isnull=True).only(
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
        conversation.title_provisional = False  # the person's own title: the title model never replaces it
        fields += ["title", "title_provisional"]
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
    """Soft delete: hidden at once everywhere (the access helpers skip it); restore_conversation undoes it
    until CHAT_DELETED_RETENTION_DAYS have passed, then `manage.py purge_deleted` removes it for good."""
    conversation = get_conversation_for_user(user, conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    SharedConversation.objects.filter(conversation=conversation, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def restore_conversation(user, conversation_id: str) -> dict:
    """Undo a delete. Only the owner, only within the retention period."""
    cutoff = timezone.now() - dt.timedelta(days=settings.CHAT_DELETED_RETENTION_DAYS)
    conversation = Conversation.objects.filter(
        public_id=parse_uuid(conversation_id), owner=user, deleted_at__gte=cutoff
    ).first()
    if conversation is None:
        raise NotFound("No such deleted conversation.")
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=None)
    return sidebar_item(conversation)


def purge_deleted(now: dt.datetime | None = None) -> int:
    """Remove conversations deleted longer ago than the retention period, one transaction each. Returns how
    many went. Their usage is folded into DeletedUsage (pre_delete, services/usage.py) and their image files
    go once no row uses them (post_delete, services/uploads.py)."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.CHAT_DELETED_RETENTION_DAYS)
    purged = 0
    # Rows an import is still writing are hidden the same way; they are the import's to publish or remove.
    gone = Conversation.objects.filter(deleted_at__lt=cutoff, import_job__isnull=True)
    for pk in list(gone.values_list("pk", flat=True)):
        with transaction.atomic():
            conversation = gone.filter(pk=pk).first()
            if conversation is not None:  # restored meanwhile: keep it
                conversation.delete()
                purged += 1
    return purged
