"""What the websocket consumer (and later HTTP views) call: one entry point per command.

Sync functions run in the ORM thread (wrap them with database_sync_to_async); async ones talk to the channel
layer. Each one authorises through the access helpers before touching anything.
"""

from __future__ import annotations

from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import prefetch_related_objects

from conversations.models import Message
from conversations.services import access, groups, turns
from conversations.services.errors import NotFound
from conversations.services.serialize import conversation_dict, message_dict, tree_dicts

user_from_session = access.user_from_session
send_turn = turns.do_send_turn
regenerate = turns.do_regenerate
edit = turns.do_edit


def check_conversation_access(user, conversation_id: str) -> None:
    access.get_conversation_for_user(user, conversation_id)


def check_message_access(user, message_id: str) -> None:
    access.get_message_for_user(user, message_id)


def conversation_pk(user, conversation_id: str) -> int:
    return access.get_conversation_for_user(user, conversation_id).pk


def select_branch(user, message_id: str) -> str:
    return str(turns.do_select_branch(user, message_id).public_id)


def snapshot(user, conversation_id: str) -> dict:
    """The conversation and the messages on its active branch, with sibling ids for branch navigation."""
    conversation = access.get_conversation_for_user(user, conversation_id)
    messages = turns.load_messages(conversation)
    path = turns.active_path(messages, conversation.current_leaf_id)
    # A very long branch opens with its newest turns; older_messages pages back as the user scrolls up.
    has_more = len(path) > settings.CHAT_HISTORY_PAGE_MESSAGES
    path = path[-settings.CHAT_HISTORY_PAGE_MESSAGES :]
    prefetch_related_objects(path, "attachments")  # every image on the branch in one query
    return {
        "conversation": conversation_dict(conversation),
        "messages": tree_dicts(path, messages),
        "has_more": has_more,
    }


def older_messages(user, conversation_id: str, before: str, limit: int) -> dict:
    """The `limit` messages of the active branch just before message `before` (oldest first), and whether
    there are more. Constant queries: the conversation, its message tree, the page's images."""
    conversation = access.get_conversation_for_user(user, conversation_id)
    messages = turns.load_messages(conversation)
    path = turns.active_path(messages, conversation.current_leaf_id)
    before_id = access.parse_uuid(before)
    index = next((i for i, m in enumerate(path) if m.public_id == before_id), None)
    if index is None:
        raise NotFound("That message is not on this conversation's current branch.")
    page = path[max(0, index - limit) : index]
    prefetch_related_objects(page, "attachments")
    return {"messages": tree_dicts(page, messages), "has_more": index - limit > 0}


def _siblings(message: Message) -> list[str]:
    return [
        str(pid)
        for pid in Message.objects.filter(
            conversation_id=message.conversation_id, parent_id=message.parent_id
        )
        .order_by("created_at", "id")
        .values_list("public_id", flat=True)
    ]


def turn_ack(turn: turns.TurnStarted) -> dict:
    """The new messages of a turn, for the acknowledgement frame."""
    ack = {
        "conversation": conversation_dict(turn.conversation),
        "created": turn.created_conversation,
        "assistant_message": message_dict(turn.assistant, siblings=_siblings(turn.assistant)),
        "user_message": None,
    }
    if turn.user_message is not None:
        ack["user_message"] = message_dict(
            turn.user_message, siblings=_siblings(turn.user_message), attachments=turn.attachments
        )
    return ack


async def request_stop(user, message_id: str) -> None:
    """Ask whichever process runs this answer to stop it. Ownership is checked first."""
    from channels.db import database_sync_to_async

    await database_sync_to_async(check_message_access)(user, message_id)
    await get_channel_layer().group_send(groups.generation_group(message_id), {"type": "gen.stop"})


async def request_sync(message_id: str, reply_to: str, offset: int) -> None:
    """Ask the generator of `message_id` to send `reply_to` the text from `offset` on."""
    await get_channel_layer().group_send(
        groups.generation_group(message_id), {"type": "gen.sync", "reply_to": reply_to, "offset": offset}
    )
