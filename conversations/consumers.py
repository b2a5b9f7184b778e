"""The chat websocket. Thin: it authenticates, parses frames and hands the work to the service layer.

Every command re-checks the session (a user deactivated or logged out elsewhere is refused at once) and
ownership (through the access helpers). Errors become error frames; the socket stays usable.
"""

from __future__ import annotations

import logging
import time

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.serializers.json import DjangoJSONEncoder

from conversations import metrics  # metrics
from conversations.metrics import database_sync_to_async  # metrics: channels' own, timing the queue wait
from conversations.protocol import Command, ProtocolError, parse_frame
from conversations.services import chat, groups, sweep
from conversations.services.errors import ServiceError, Unauthenticated
from conversations.services.generation import start_generation

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1

# One encoder for every frame (json.dumps(cls=...) would build one per frame, and frames are the hot path).
ENCODE = DjangoJSONEncoder().encode

# Application close codes (4000-4999 are ours): the browser can tell "log in again" from a network drop.
CLOSE_UNAUTHENTICATED = 4401
# Seconds before a socket that still sees a gap in an answer asks its generator again for the missing text.
SYNC_RETRY = 1.0


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        metrics.socket_opened()  # metrics
        self.open_conversation: str | None = None
        # Characters of each streaming message this client holds: frames are trimmed or dropped against it,
        # so the client applies every character exactly once whatever order resume and live frames arrive in.
        self.known: dict[str, int] = {}
        self.sync_asked: dict[str, float] = {}  # message id -> when this socket last asked for the rest
        await self.accept()
        await self.channel_layer.group_add(groups.user_group(user.pk), self.channel_name)
        sweep.ensure_sweeper()
        await self.send_frame({"type": "hello", "protocol": PROTOCOL_VERSION})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user", None) is None:
            return
        metrics.socket_closed()  # metrics
        await self.channel_layer.group_discard(groups.user_group(self.user.pk), self.channel_name)
        await self._leave()

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=ENCODE(frame))

    async def send_error(self, code: str, message: str, ref=None) -> None:
        await self.send_frame({"type": "error", "code": code, "message": message, "ref": ref})

    # --- receiving --------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            command = parse_frame(text_data, bytes_data)
        except ProtocolError as exc:
            await self.send_error(exc.code, exc.message, exc.ref)
            return
        if command.type == "ping":
            await self.send_frame({"type": "pong", "id": command.data["id"]})
            return
        try:
            if command.type not in chat.TURN_COMMANDS:  # a turn re-checks the session in its own call
                self.user = await database_sync_to_async(chat.user_from_session)(
                    self.scope["session"].session_key
                )
            await getattr(self, f"do_{command.type}")(command)
        except Unauthenticated as exc:
            await self.send_error(exc.code, exc.message, command.ref)
            await self.close(code=CLOSE_UNAUTHENTICATED)
        except ServiceError as exc:
            await self.send_error(exc.code, exc.message, command.ref)
        except Exception:
            logger.exception("websocket command %s failed", command.type)
            await self.send_error(
                "server_error", "Something went wrong on the server. Try again.", command.ref
            )

    # --- commands ---------------------------------------------------------------------------------------

    async def do_open(self, command: Command) -> None:
        await self._open(command.data["conversation"], command.ref)

    async def do_select(self, command: Command) -> None:
        conversation_id = await database_sync_to_async(chat.select_branch)(self.user, command.data["message"])
        await self._open(conversation_id, command.ref)

    async def do_send(self, command: Command) -> None:
        await self._start_turn(command)

    async def do_regenerate(self, command: Command) -> None:
        await self._start_turn(command)

    async def do_edit(self, command: Command) -> None:
        await self._start_turn(command)

    async def do_stop(self, command: Command) -> None:
        await chat.request_stop(self.user, command.data["message"])
        await self.send_frame(
            {"type": "ack", "ref": command.ref, "command": "stop", "message": command.data["message"]}
        )

    async def do_sync(self, command: Command) -> None:
        message_id = command.data["message"]
        await database_sync_to_async(chat.check_message_access)(self.user, message_id)
        self.known[message_id] = command.data["offset"]
        await self._ask_sync(message_id, command.data["offset"])

    # --- helpers ----------------------------------------------------------------------------------------

    async def _join(self, conversation_id: str) -> None:
        if self.open_conversation == conversation_id:
            return
        await self._leave()
        self.open_conversation = conversation_id
        await self.channel_layer.group_add(groups.conversation_group(conversation_id), self.channel_name)

    async def _leave(self) -> None:
        if self.open_conversation:
            await self.channel_layer.group_discard(
                groups.conversation_group(self.open_conversation), self.channel_name
            )
        self.open_conversation = None
        self.known.clear()

    async def _open(self, conversation_id: str, ref) -> None:
        # Ownership first (raises NotFound), then join, then read: any frame sent after our read is received.
        await database_sync_to_async(chat.check_conversation_access)(self.user, conversation_id)
        await sweep.sweep_and_notify(
            await database_sync_to_async(chat.conversation_pk)(self.user, conversation_id)
        )
        await self._join(conversation_id)
        snapshot = await database_sync_to_async(chat.snapshot)(self.user, conversation_id)
        self.known = {}
        await self.send_frame({"type": "conversation", "ref": ref, **snapshot})
        for message in snapshot["messages"]:
            if message["status"] in ("pending", "streaming"):
                # The saved text lags the live one by up to a checkpoint: ask the generator for the rest.
                self.known[message["id"]] = message["length"]
                await self._ask_sync(message["id"], message["length"])

    async def _start_turn(self, command: Command) -> None:
        # One trip to the database thread: session check, the turn, the acknowledgement and the prompt
        # (see chat.start_turn). Then join before the answer starts, so its first frame reaches this socket.
        try:
            started = await database_sync_to_async(chat.start_turn)(
                self.scope["session"].session_key, command.type, command.data
            )
        except Exception as exc:
            metrics.turn_refused(exc)  # metrics
            raise
        metrics.turn_admitted()  # metrics
        self.user = started.user
        ack = started.ack
        await self._join(ack["conversation"]["id"])
        self.known[ack["assistant_message"]["id"]] = 0
        start_generation(started.turn.assistant, started.prepared, command.received_at)  # metrics: arrival
        await self.send_frame({"type": "ack", "ref": command.ref, "command": command.type, **ack})
        # Other tabs with this conversation open learn about the new messages (the sender ignores known ids).
        await self.channel_layer.group_send(
            groups.conversation_group(ack["conversation"]["id"]), groups.frame({"type": "turn", **ack})
        )

    # --- frames from the channel layer -----------------------------------------------------------------

    async def dispatch(self, message: dict) -> None:
        # Channels (4.2+) hops to Django's one database thread before every handler to run
        # close_old_connections. Here that hop is wasted: frames never touch the database, and commands reach
        # it only through database_sync_to_async, which does the same itself. Worse, every delta of every
        # answer would queue on that thread behind the turns and checkpoints being saved (seconds under load).
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _ask_sync(self, message_id: str, offset: int) -> None:
        self.sync_asked[message_id] = time.monotonic()
        await chat.request_sync(message_id, self.channel_name, offset)

    async def chat_frame(self, event: dict) -> None:
        frame = event["frame"]
        kind = frame.get("type")
        if kind == "delta":
            message_id, offset, text = frame["message"], frame["offset"], frame["text"]
            have = self.known.get(message_id)
            if have is None:  # an answer started elsewhere after we opened the conversation
                have = self.known[message_id] = 0
            if offset > have:
                # A gap: the socket opened mid-answer, or the channel layer lost a frame (channels-redis can,
                # when a receive is cancelled). The generator's reply to a sync covers it, in order with the
                # live frames; ask unless this socket asked a moment ago.
                if time.monotonic() - self.sync_asked.get(message_id, -SYNC_RETRY) >= SYNC_RETRY:
                    await self._ask_sync(message_id, have)
                return
            if offset < have:
                text = text[have - offset :]
                if not text:
                    return
                frame = {**frame, "offset": have, "text": text}
            self.known[message_id] = have + len(text)
        elif kind == "end":
            self.known.pop(frame["message"]["id"], None)
            self.sync_asked.pop(frame["message"]["id"], None)
        await self.send_frame(frame)
