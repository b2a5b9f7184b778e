"""Reading a conversation's message tree: edits and regenerations are siblings, `current_leaf` marks the
branch on screen. Sync ORM code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conversations.models import Attachment, Conversation, Message
from conversations.services import plain_reads


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


@dataclass(frozen=True)
class History:
    """A conversation's messages (oldest first) and each user message's images, read once."""

    messages: list[Message]
    images: dict[int, list[Attachment]]

    def branch_to(self, leaf_id: int | None) -> list[Message]:
        return active_path(self.messages, leaf_id)

    def extended(self, messages: list[Message], images: dict[int, list[Attachment]]) -> History:
        """With messages just saved (and their images), which the read did not see."""
        return History(self.messages + messages, {**self.images, **images})


def histories(conversation_pks: Iterable[int]) -> dict[int, History]:
    """The History of each conversation, in two queries whatever their number."""
    pks = list(conversation_pks)
    out = {pk: History([], {}) for pk in pks}
    if not pks:
        return out
    # Every turn reads this: plain_reads keeps the statements' text instead of building it each time.
    for message in plain_reads.messages_of(pks):
        out[message.conversation_id].messages.append(message)
    for attachment, conversation_pk in plain_reads.images_of(pks):  # as message.attachments.all() orders them
        out[conversation_pk].images.setdefault(attachment.message_id, []).append(attachment)
    return out


def history_of(conversation: Conversation) -> History:
    return histories([conversation.pk])[conversation.pk]
