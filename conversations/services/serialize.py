"""The JSON shapes conversations and messages take in websocket frames and HTTP responses.

Only public ids leave the server. Model output is sent as raw text: the browser renders it through its
sanitiser, never as HTML from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.urls import reverse

from conversations.models import Attachment, Conversation, Message


def sidebar_item(conversation: Conversation) -> dict:
    """A conversation as the sidebar lists it."""
    return {
        "id": str(conversation.public_id),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "updated_at": conversation.updated_at.isoformat(),
    }


def conversation_dict(conversation: Conversation) -> dict:
    """A conversation as the chat page opens it: its sidebar item and its settings."""
    return {
        **sidebar_item(conversation),
        "model": conversation.canonical_model or None,  # a model id of the menu (GET /api/models)
        "system_prompt": conversation.system_prompt,
        "params": conversation.params or {},
        "created_at": conversation.created_at.isoformat(),
    }


def attachment_dict(attachment: Attachment) -> dict:
    """An image as the browser sees it: its ownership-checked URL, never its path on disk."""
    return {
        "id": str(attachment.public_id),
        "url": reverse("upload", args=[attachment.public_id]),
        "width": attachment.width,
        "height": attachment.height,
        "mime": attachment.mime,
    }


def _attachments_of(message: Message) -> list[Attachment]:
    """A user message's images: from the prefetch cache when there is one, else one query. Answers have none."""
    if message.role != Message.Role.USER or message.pk is None:
        return []
    return list(message.attachments.all())


def message_dict(
    message: Message,
    public_ids: dict[int, str] | None = None,
    siblings: list[str] | None = None,
    attachments: Iterable[Attachment] | None = None,
    with_detail: bool = False,
) -> dict:
    """`public_ids` maps pks to public ids for the parent (pass it when serialising a whole tree).
    `attachments`: the message's images when the caller has them; else prefetch_related("attachments"), or
    it costs one query per user message. `with_detail`: add `error_detail`, the technical side of a failed
    answer, for staff only (ordinary users read `error`, which names no addresses or error numbers)."""
    if message.parent_id is None:
        parent = None
    elif public_ids is not None and message.parent_id in public_ids:
        parent = public_ids[message.parent_id]
    else:
        parent = str(message.parent.public_id)  # one query if the parent isn't loaded
    usage = None
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "cached_tokens": message.cached_tokens,
        }
    data = {
        "id": str(message.public_id),
        "parent": parent,
        "role": message.role,
        "content": message.content,
        "length": len(message.content),
        "status": message.status,
        "error": message.error,
        "finish_reason": message.finish_reason,
        "model": message.model_name,
        "provider": message.provider_name,
        "usage": usage,
        "cost": str(message.cost) if message.cost is not None else None,
        "own_key": message.own_key,  # answered on the user's own key: their spend, not the site's
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "tokens_per_second": message.tokens_per_second,
        "context_trimmed": message.context_trimmed,
        "created_at": message.created_at.isoformat(),
        "siblings": siblings if siblings is not None else [str(message.public_id)],
        "attachments": [
            attachment_dict(a) for a in (_attachments_of(message) if attachments is None else attachments)
        ],
    }
    if with_detail and message.error_detail:
        data["error_detail"] = message.error_detail
    return data


def tree_dicts(
    path: Iterable[Message], all_messages: Iterable[Message], with_detail: bool = False
) -> list[dict]:
    """The messages on the active path, each with the ids of its siblings (itself included) in order.
    `with_detail`: as message_dict (staff)."""
    all_messages = list(all_messages)
    public_ids = {m.pk: str(m.public_id) for m in all_messages}
    children: dict[int | None, list[str]] = {}
    for m in all_messages:  # already ordered by creation
        children.setdefault(m.parent_id, []).append(public_ids[m.pk])
    return [message_dict(m, public_ids, children.get(m.parent_id), with_detail=with_detail) for m in path]
