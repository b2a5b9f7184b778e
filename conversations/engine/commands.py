"""Running the websocket commands: one function per command, each check → write → start → notify.

The consumer (engine/consumer.py) parses a frame and calls `run`. Each command authorises through the
service layer (ownership, the session re-checked), writes through it (services/turns.py and friends), starts
the answer's generation when there is one, and notifies through engine/notify.py and the socket's own reply.
Refusals are ServiceErrors raised by the services; the consumer turns them into error frames.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from conversations import metrics
from conversations.engine import admission, control, frames, notify, send_ahead, sweeper
from conversations.engine.protocol import Command
from conversations.services import access, transcript, turns

if TYPE_CHECKING:
    from conversations.engine.consumer import ChatConsumer


TURNS = frozenset({"send", "regenerate", "edit"})  # each re-checks the session inside its one database call


async def run(socket: ChatConsumer, command: Command) -> None:
    if command.type in TURNS:
        await start_turn(socket, command)
        return
    await recheck_session(socket)
    await COMMANDS[command.type](socket, command)


async def start_turn(socket: ChatConsumer, command: Command) -> None:
    """send, regenerate, edit: the turn in one database call with the turns that came with it
    (engine/admission.py, services/turns.TurnBatch), then the answer."""
    try:
        admitted = await admission.admit(socket.session_key, command.type, command.data, command.received_at)
    except Exception as exc:
        metrics.turn_refused(exc)
        raise
    metrics.turn_admitted()
    started, answer = admitted.started, admitted.generation
    try:
        socket.user = started.user
        ack = started.ack
        conversation_id = ack["conversation"]["id"]
        # Join before the answer's frames are let go, so its first frame reaches this socket. With an answer
        # running here, that is all the ack waits for: the conversation is busy until the answer's final save
        # (services/turns.py refuses any other turn in it), so nothing but this process sends to it meanwhile,
        # and the socket's Redis subscription for other processes' frames completes in the background (under a
        # burst, waiting for it was most of the time to first token); the final save waits for it
        # (Generation.run, notify.joins_done). And acknowledge only once Stop requests from any process reach
        # this one (engine/control.py: once per process), since the client may send one from any tab as soon
        # as it knows the answer's id.
        joined = socket.join(conversation_id, local_first=answer is not None)
        await (joined if answer is None else asyncio.gather(joined, control.ready()))
        socket.expect(ack["assistant_message"]["id"])
        await socket.reply(frames.ack(command.ref, command.type, **ack))
        # Other tabs with this conversation open learn about the new messages (the sender ignores known ids).
        # A conversation this turn created has no other tab yet: one that opens it reads the messages.
        if not ack["created"]:
            await notify.to_conversation(conversation_id, frames.turn(ack))
        if started.failed_answer is not None:
            await notify.to_conversation(conversation_id, frames.end(conversation_id, started.failed_answer))
    finally:
        if answer is not None:  # its request left during the batch; its frames go after the acknowledgement
            answer.release()


async def recheck_session(socket: ChatConsumer) -> None:
    """The socket's session still authenticates an active user, or Unauthenticated (engine/revocation.py)."""
    socket.user = await database_sync_to_async(access.user_from_session)(socket.session_key)


async def open_conversation(socket: ChatConsumer, command: Command) -> None:
    await _open(socket, command.data["conversation"], command.ref)


async def select_branch(socket: ChatConsumer, command: Command) -> None:
    conversation = await database_sync_to_async(turns.do_select_branch)(socket.user, command.data["message"])
    send_ahead.forget_conversation(str(conversation.public_id))  # its next send follows another branch
    await _open(socket, str(conversation.public_id), command.ref)


async def stop(socket: ChatConsumer, command: Command) -> None:
    message_id = command.data["message"]
    await database_sync_to_async(access.get_message_for_user)(socket.user, message_id)
    await control.stop(message_id)  # straight to it when it runs in this process (the usual case)
    await socket.reply(frames.ack(command.ref, "stop", message=message_id))


async def sync(socket: ChatConsumer, command: Command) -> None:
    message_id = command.data["message"]
    await database_sync_to_async(access.get_message_for_user)(socket.user, message_id)
    await socket.catch_up(message_id, command.data["offset"])


async def _open(socket: ChatConsumer, conversation_id: str, ref) -> None:
    # Ownership first (raises NotFound), then join, then read: any frame sent after our read is received.
    conversation = await database_sync_to_async(access.get_conversation_for_user)(
        socket.user, conversation_id
    )
    await sweeper.sweep_and_notify(conversation.pk)
    await socket.join(conversation_id)
    snapshot = await database_sync_to_async(transcript.snapshot)(socket.user, conversation_id)
    socket.forget_answers()
    await socket.reply(frames.conversation(ref, snapshot))
    for message in snapshot["messages"]:
        if message["status"] in ("pending", "streaming"):
            # The saved text lags the live one by up to a checkpoint: ask the generator for the rest.
            await socket.catch_up(message["id"], message["length"])


COMMANDS = {
    "open": open_conversation,
    "select": select_branch,
    "stop": stop,
    "sync": sync,
}
