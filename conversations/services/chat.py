"""What the websocket consumer (and later HTTP views) call: one entry point per command.

Sync functions run in the ORM thread (wrap them with database_sync_to_async); async ones talk to the channel
layer. Each one authorises through the access helpers before touching anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import prefetch_related_objects

from conversations.models import Message
from conversations.services import access, groups, turns
from conversations.services.errors import NotFound
from conversations.services.generation import prepare
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
    if turn.user_message is not None:
        # Sent or edited: the answer is the only child of a message created in this turn.
        assistant_siblings = [str(turn.assistant.public_id)]
    else:
        assistant_siblings = _siblings(turn.assistant)
    ack = {
        "conversation": conversation_dict(turn.conversation),
        "created": turn.created_conversation,
        "assistant_message": message_dict(turn.assistant, siblings=assistant_siblings),
        "user_message": None,
    }
    if turn.user_message is not None:
        user_siblings = (
            [str(turn.user_message.public_id)] if turn.created_conversation else _siblings(turn.user_message)
        )
        ack["user_message"] = message_dict(
            turn.user_message, siblings=user_siblings, attachments=turn.attachments
        )
    return ack


@dataclass
class StartedTurn:
    user: object
    turn: turns.TurnStarted
    ack: dict
    prepared: object  # generation.Prepared, or the exception preparing it raised (the answer then fails)


TURN_COMMANDS = {
    "send": lambda user, d: turns.do_send_turn(
        user,
        conversation_id=d["conversation"],
        text=d["text"],
        model_pk=d["model"],
        params=d["params"],
        system_prompt=d["system_prompt"],
        attachment_ids=d["attachments"] or [],
    ),
    "regenerate": lambda user, d: turns.do_regenerate(user, d["message"], d["model"]),
    "edit": lambda user, d: turns.do_edit(user, d["message"], d["text"], d["model"]),
}


def start_turn(session_key: str | None, command: str, data: dict) -> StartedTurn:
    """A send, regenerate or edit command in one database call: re-check the session, save the turn, build
    the acknowledgement and prepare the answer's request. One call because each hop to the database
    thread costs time before the first token (and queues behind other sockets' work under load)."""
    user = access.user_from_session(session_key)
    turn = TURN_COMMANDS[command](user, data)
    ack = turn_ack(turn)
    try:
        prepared = prepare(turn.assistant, turn.conversation, owner=user)
    except Exception as exc:  # the turn is saved; the generation reports this as the answer's error
        prepared = exc
    return StartedTurn(user, turn, ack, prepared)


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
