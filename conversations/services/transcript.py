"""Reading a conversation as the chat page shows it: its active branch, newest turns first, older pages on
demand. Sync ORM code, shared by the websocket (`open`, `select`) and the JSON API."""

from __future__ import annotations

from django.conf import settings
from django.db.models import prefetch_related_objects

from conversations.services import access, tree
from conversations.services.errors import NotFound
from conversations.services.serialize import conversation_dict, tree_dicts


def snapshot(user, conversation_id: str) -> dict:
    """The conversation and the messages on its active branch, with sibling ids for branch navigation."""
    conversation = access.get_conversation_for_user(user, conversation_id)
    messages = tree.load_messages(conversation)
    path = tree.active_path(messages, conversation.current_leaf_id)
    # A very long branch opens with its newest turns; older_messages pages back as the user scrolls up.
    has_more = len(path) > settings.CHAT_HISTORY_PAGE_MESSAGES
    path = path[-settings.CHAT_HISTORY_PAGE_MESSAGES :]
    prefetch_related_objects(path, "attachments")  # every image on the branch in one query
    return {
        "conversation": conversation_dict(conversation),
        "messages": tree_dicts(path, messages, with_detail=user.is_staff),
        "has_more": has_more,
    }


def older_messages(user, conversation_id: str, before: str, limit: int) -> dict:
    """The `limit` messages of the active branch just before message `before` (oldest first), and whether
    there are more. Constant queries: the conversation, its message tree, the page's images."""
    conversation = access.get_conversation_for_user(user, conversation_id)
    messages = tree.load_messages(conversation)
    path = tree.active_path(messages, conversation.current_leaf_id)
    before_id = access.parse_uuid(before)
    index = next((i for i, m in enumerate(path) if m.public_id == before_id), None)
    if index is None:
        raise NotFound("That message is not on this conversation's current branch.")
    page = path[max(0, index - limit) : index]
    prefetch_related_objects(page, "attachments")
    return {"messages": tree_dicts(page, messages, with_detail=user.is_staff), "has_more": index - limit > 0}
