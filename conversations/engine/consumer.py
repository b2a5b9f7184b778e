"""The chat websocket. It authenticates the connection, parses each frame and hands it to engine/commands.py,
and forwards the frames the channel layer brings, trimmed to what this client lacks.

Every command re-checks the session (a user deactivated or logged out elsewhere is refused at once) and
ownership (through the service layer); a socket whose user's access ends (deactivated, deleted, password
changed, logged out) is closed with 4401 without waiting for a command (engine/revocation.py). Errors become error frames; the socket stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

import orjson
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import OperationalError

from conversations import metrics
from conversations.engine import channel_groups, commands, control, direct_send, frames, socket_caps
from conversations.engine.dispatch import Idle, dispatch_forever
from conversations.engine.notify import FRAME
from conversations.engine.protocol import ProtocolError, parse_frame
from conversations.services import db_busy
from conversations.services.errors import ServiceError, Unauthenticated

logger = logging.getLogger(__name__)

# Frames are the hot path: every frame of every answer is encoded once per socket. orjson does it several
# times faster than the standard library (json's encoder was about 3% of the event loop at 200 answers,
# bench/README.md "Load", session 8). Dates, decimals and lazy strings go through Django's encoder as they
# always did, so they read the same; whatever orjson refuses (a lone surrogate in a model's text, an integer
# past 64 bits) is encoded by Django's encoder, which escapes it.
_DJANGO = DjangoJSONEncoder()
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def encode_frame(frame: dict) -> str:
    try:
        return orjson.dumps(frame, default=_DJANGO.default, option=_ORJSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return _DJANGO.encode(frame)


# Application close codes (4000-4999 are ours): the browser can tell "log in again" from a network drop.
CLOSE_UNAUTHENTICATED = 4401
SERVER_ERROR = "Something went wrong on the server. Try again."
CLOSE_TOO_MANY = 4429  # the user has CHAT_MAX_SOCKETS_PER_USER sockets open on the site: retry later
TOO_MANY_SOCKETS = "Too many chat tabs are open for your account. Close some; this one reconnects by itself."
_GAP = object()  # ChatConsumer._outgoing: the client lacks text before this frame's

# Seconds before a socket that still sees a gap in an answer asks its generator again for the missing text.
SYNC_RETRY = 1.0


def _log_failed_join(joining: asyncio.Future) -> None:
    if not joining.cancelled() and joining.exception() is not None:
        logger.error("joining a conversation's group failed", exc_info=joining.exception())


class ChatConsumer(AsyncWebsocketConsumer):
    async def __call__(self, scope, receive, send) -> None:
        """As channels' AsyncConsumer.__call__, with a cheaper message loop (engine/dispatch.py)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        # Frames written by their sender while this socket is idle (engine/direct_send.py), once connected.
        self.write_now: direct_send.Writer | None = scope.get(direct_send.SCOPE_KEY)
        self.idle = Idle()
        try:
            with contextlib.suppress(StopConsumer):  # the socket closed
                await dispatch_forever([receive, self.channel_receive], self.dispatch, self.idle)
        finally:
            # channels' layers let go of a channel (Redis: unsubscribe) when a receive on it is cancelled; the
            # loop's reader may be between two receives when the socket closes, so say it outright.
            with contextlib.suppress(Exception):
                await self.channel_layer.discard_channel(self.channel_name)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # CHAT_MAX_SOCKETS_PER_USER over the whole site (engine/socket_caps.py): say why, then close.
        if not await socket_caps.opened(user.pk, self.channel_name):
            await self.accept()
            await self.reply(frames.error("too_many_sockets", TOO_MANY_SOCKETS))
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.user = user
        metrics.socket_opened()
        self.session_key: str | None = self.scope["session"].session_key
        self.open_conversation: str | None = None
        # Characters of each streaming message this client holds: frames are trimmed or dropped against it,
        # so the client applies every character exactly once whatever order resume and live frames arrive in.
        self.known: dict[str, int] = {}
        self.sync_asked: dict[str, float] = {}  # message id -> when this socket last asked for the rest
        await self.accept()
        await self.channel_layer.group_add(channel_groups.user_group(user.pk), self.channel_name)
        await self.reply(frames.hello())
        set_direct = getattr(self.channel_layer, "set_direct", None)
        if self.write_now is not None and set_direct is not None:
            set_direct(self.channel_name, self.deliver_now)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "user", None) is None:
            return
        await socket_caps.closed(self.user.pk, self.channel_name)
        metrics.socket_closed()
        await self.channel_layer.group_discard(channel_groups.user_group(self.user.pk), self.channel_name)
        await self._leave()

    async def reply(self, frame: frames.Frame) -> None:
        """A frame to this socket's own client."""
        await self.send(text_data=encode_frame(frame))

    # --- receiving --------------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            command = parse_frame(text_data, bytes_data)
        except ProtocolError as exc:
            await self.reply(frames.error(exc.code, exc.message, exc.ref))
            return
        if command.type == "ping":
            await self.reply(frames.pong(command.data["id"]))
            return
        try:
            await commands.run(self, command)
        except Unauthenticated as exc:
            await self.reply(frames.error(exc.code, exc.message, command.ref))
            await self.close(code=CLOSE_UNAUTHENTICATED)
        except ServiceError as exc:
            await self.reply(frames.error(exc.code, exc.message, command.ref))
        except OperationalError as exc:
            if not db_busy.is_database_locked(exc):
                logger.exception("websocket command %s failed", command.type)
                await self.reply(frames.error("server_error", SERVER_ERROR, command.ref))
                return
            logger.warning("websocket command %s: the database was locked", command.type)
            await self.reply(frames.error(db_busy.DatabaseBusy.code, db_busy.BUSY_MESSAGE, command.ref))
        except Exception:
            logger.exception("websocket command %s failed", command.type)
            await self.reply(frames.error("server_error", SERVER_ERROR, command.ref))

    # --- what commands do to this socket ----------------------------------------------------------------

    async def join(self, conversation_id: str, *, local_first: bool = False) -> None:
        """Receive this conversation's frames (the caller checked ownership), leaving any other.
        `local_first`: frames from this process reach the socket when this returns, and with Redis the
        subscription for other processes' frames completes in the background (engine/layers.py
        `group_add_soon`; `notify.joins_done` waits for it). For a turn whose answer runs here: nothing else
        can send to its conversation until that answer ends (commands.start_turn)."""
        if self.open_conversation == conversation_id:
            return
        await self._leave()
        self.open_conversation = conversation_id
        group = channel_groups.conversation_group(conversation_id)
        add_soon = getattr(self.channel_layer, "group_add_soon", None) if local_first else None
        if add_soon is None:
            await self.channel_layer.group_add(group, self.channel_name)
            return
        joining = add_soon(group, self.channel_name)
        joining.add_done_callback(_log_failed_join)

    async def _leave(self) -> None:
        if self.open_conversation:
            await self.channel_layer.group_discard(
                channel_groups.conversation_group(self.open_conversation), self.channel_name
            )
        self.open_conversation = None
        self.known.clear()

    def expect(self, message_id: str) -> None:
        """A new answer this client starts from nothing."""
        self.known[message_id] = 0

    def forget_answers(self) -> None:
        """A fresh snapshot went out: what the client held before no longer counts."""
        self.known = {}

    async def catch_up(self, message_id: str, offset: int) -> None:
        """The client holds `offset` characters of a streaming answer: ask its generator for the rest."""
        self.known[message_id] = offset
        await self._ask_for_rest(message_id, offset)

    async def _ask_for_rest(self, message_id: str, offset: int) -> None:
        self.sync_asked[message_id] = time.monotonic()
        await control.ask_for_rest(message_id, self.channel_name, offset)

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

    async def user_revoked(self, event: dict) -> None:
        """The user's access may have ended (engine/revocation.py): if this socket's session did, say so and
        close with 4401 at once, not at the next command."""
        try:
            await commands.recheck_session(self)
        except Unauthenticated as exc:
            await self.reply(frames.error(exc.code, exc.message))
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def chat_frame(self, event: dict) -> None:
        frame = event["frame"]
        out = self._outgoing(frame)
        if out is _GAP:
            # The socket opened mid-answer, or the channel layer lost a frame (channels-redis can, when a
            # receive is cancelled). The generator's reply to a sync covers it, in order with the live
            # frames; ask unless this socket asked a moment ago.
            message_id, have = frame["message"], self.known[frame["message"]]
            if time.monotonic() - self.sync_asked.get(message_id, -SYNC_RETRY) >= SYNC_RETRY:
                await self._ask_for_rest(message_id, have)
        elif out is not None:
            await self.reply(out)

    def deliver_now(self, message: dict) -> bool:
        """The channel layer offers a frame before queueing it (engine/direct_send.py): handle it now if this
        socket's loop has nothing before it, as chat_frame would; False leaves it to be queued (busy, a gap to
        ask about)."""
        if not self.idle or message.get("type") != FRAME:
            return False
        out = self._outgoing(message["frame"])
        if out is _GAP:
            return False
        if out is not None:
            try:
                self.write_now(encode_frame(out))
            except Exception:  # the answer's sender must not fail for one socket; the client resyncs
                logger.exception("a frame to socket %s failed", self.channel_name)
        return True

    def _outgoing(self, frame: frames.Frame) -> frames.Frame | object | None:
        """What of `frame` goes to this client: the frame, a trimmed copy, None (nothing), or _GAP (text is
        missing before it: nothing is sent; asked again, the same answer). Updates what the client holds."""
        kind = frame.get("type")
        if kind == "delta":
            message_id, offset, text = frame["message"], frame["offset"], frame["text"]
            have = self.known.get(message_id)
            if have is None:  # an answer started elsewhere after we opened the conversation
                have = self.known[message_id] = 0
            if offset > have:
                return _GAP
            if offset < have:
                text = text[have - offset :]
                if not text:
                    return None
                frame = {**frame, "offset": have, "text": text}
            self.known[message_id] = have + len(text)
        elif kind == "turn" and frame["assistant_message"]["id"] in self.known:
            # This socket sent the turn (its acknowledgement carried the same messages) or already has them
            # from a snapshot: the echo for the conversation's other tabs would be dropped by the client
            # anyway. In a burst it was one websocket send per turn on the busy event loop.
            return None
        elif kind == "end":
            self.known.pop(frame["message"]["id"], None)
            self.sync_asked.pop(frame["message"]["id"], None)
            if "error_detail" in frame["message"] and not self.user.is_staff:  # technical detail: staff only
                frame = {
                    **frame,
                    "message": {k: v for k, v in frame["message"].items() if k != "error_detail"},
                }
        return frame
