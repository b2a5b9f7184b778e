"""Reading a conversation's message tree: edits and regenerations are siblings, `current_leaf` marks the
branch on screen. Sync ORM code."""

from __future__ import annotations

from conversations.models import Conversation, Message


def load_messages(conversation: Conversation) -> list[Message]:
    """Every message of the conversation, oldest first. One query."""
    return list(conversation.messages.order_by("created_at", "id"))


def active_path(messages: list[Message], leaf_id: int | None) -> list[Message]:
    """Root to `leaf_id` along parent links, in memory."""
    by_pk = {m.pk: m for m in messages}
    path: list[Message] = []
    current = by_pk.get(leaf_id) if leaf_id is not None else None
    while current is not None:
        path.append(current)
        current = by_pk.get(current.parent_id) if current.parent_id else None
    path.reverse()
    return path


def branch_for_answer(
    assistant: Message, conversation: Conversation | None = None
) -> tuple[Conversation, list[Message]]:
    """The conversation and the messages the answer `assistant` replies to (root to its parent). Pass the
    conversation when it is already loaded (a turn just saved it): two queries instead of three."""
    if conversation is None:
        conversation = Conversation.objects.get(pk=assistant.conversation_id)
    messages = list(conversation.messages.prefetch_related("attachments").order_by("created_at", "id"))
    return conversation, active_path(messages, assistant.parent_id)
