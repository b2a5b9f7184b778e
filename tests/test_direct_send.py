"""engine/direct_send.py: a frame for an idle socket is handled in the call that sends it; a busy socket's
frames wait in its queue and keep their order with what it is handling."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from django.conf import settings
from django.test import Client

from chatsite.asgi import application
from conversations.engine import direct_send
from conversations.engine.dispatch import Idle, dispatch_forever
from conversations.engine.layers import InMemoryChannelLayer
from conversations.engine.notify import FRAME
from conversations.models import Message
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for

# --- daphne's send ------------------------------------------------------------------------------------------


def test_daphne_builds_its_send_the_way_sync_writer_expects():
    # If an upgrade of daphne changes this, sync_writer returns None and every frame takes the queue again.
    assert "partial(self.handle_reply, protocol)" in inspect.getsource(Server.create_application)


def test_the_writer_of_daphnes_send_writes_at_once_and_not_to_a_closed_connection():
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)  # no connection: its handle_reply is recorded
    replies = []
    protocol.handle_reply = replies.append
    server.connections = {}  # as Server.run() starts it
    write = direct_send.sync_writer(functools.partial(server.handle_reply, protocol))
    assert write is not None

    server.connections[protocol] = {}
    write("first")
    assert replies == [{"type": "websocket.send", "text": "first"}]
    server.connections[protocol]["disconnected"] = time.time()
    write("after the close")
    del server.connections[protocol]
    write("after daphne let go of it")
    assert len(replies) == 1


def test_any_other_send_has_no_writer():
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    protocol = WebSocketProtocol.__new__(WebSocketProtocol)

    async def send(message):
        pass

    assert direct_send.sync_writer(send) is None
    assert direct_send.sync_writer(functools.partial(server.handle_reply)) is None  # no protocol
    assert direct_send.sync_writer(functools.partial(send, protocol)) is None  # not daphne's
    assert direct_send.sync_writer(functools.partial(server.handle_reply, object())) is None


# --- the layers and the socket's loop ----------------------------------------------------------------------


def frame(n: int) -> dict:
    return {"type": FRAME, "frame": {"type": "delta", "n": n}}


async def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def check_direct_then_queued(layer, other_process=None) -> None:
    """One socket's loop on `layer`: frames while it waits are handled by the sender's call; a frame that
    arrives while it handles a command waits for it; other messages always queue. `other_process`: a second
    layer (Redis) whose frames reach this one through Redis."""
    group = "conversation.direct-test"
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    idle = Idle()
    seen: list[tuple[str, object]] = []

    def handle_now(message: dict) -> bool:
        if not idle:
            return False
        seen.append(("direct", message["frame"]["n"]))
        return True

    layer.set_direct(channel, handle_now)
    commands: asyncio.Queue = asyncio.Queue()
    go_on = asyncio.Event()

    async def dispatch(message: dict) -> None:
        if message["type"] == "command":
            seen.append(("command", message["n"]))
            await go_on.wait()
        elif message["type"] == FRAME:
            seen.append(("queued", message["frame"]["n"]))
        else:
            seen.append(("queued", message["type"]))

    loop = asyncio.create_task(
        dispatch_forever([commands.get, functools.partial(layer.receive, channel)], dispatch, idle)
    )
    try:
        await wait_for(lambda: bool(idle))
        await layer.group_send(group, frame(1))
        assert seen == [("direct", 1)]  # handled within group_send

        commands.put_nowait({"type": "command", "n": 2})
        await wait_for(lambda: ("command", 2) in seen)
        await layer.group_send(group, frame(3))  # the socket is busy: queued
        await layer.send(channel, frame(4))
        await asyncio.sleep(0.05)
        assert seen == [("direct", 1), ("command", 2)]
        go_on.set()
        await wait_for(lambda: ("queued", 4) in seen)
        await wait_for(lambda: bool(idle))

        await layer.send(channel, frame(5))
        await layer.send(channel, {"type": "user.revoked"})  # not a frame: always through the queue
        await wait_for(lambda: ("queued", "user.revoked") in seen)
        expected = [("direct", 1), ("command", 2), ("queued", 3), ("queued", 4), ("direct", 5)]
        expected.append(("queued", "user.revoked"))
        if other_process is not None:
            await other_process.group_send(group, frame(6))
            await wait_for(lambda: ("direct", 6) in seen)
            expected.append(("direct", 6))
        assert seen == expected
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    await layer.discard_channel(channel)
    assert channel not in layer_of(layer).direct


def layer_of(layer):
    get_layer = getattr(layer, "_get_layer", None)
    return get_layer() if get_layer is not None else layer


async def test_in_memory_layer_hands_an_idle_sockets_frames_to_it_at_once():
    await check_direct_then_queued(InMemoryChannelLayer())


@pytest.mark.backends
@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis pub/sub layer: the PostgreSQL + Redis lane")
async def test_redis_layer_hands_an_idle_sockets_frames_to_it_at_once_from_any_process():
    from conversations.engine.layers import RedisPubSubChannelLayer

    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    here, there = RedisPubSubChannelLayer(**config), RedisPubSubChannelLayer(**config)
    try:
        await check_direct_then_queued(here, other_process=there)
    finally:
        await here.flush()
        await there.flush()


# --- a whole answer, through the consumer ------------------------------------------------------------------


class WithWriter:
    """The site's ASGI application, with a socket writer in the scope as StartEngine would put daphne's there:
    what it writes reaches the test's client like what goes through `send`, and is counted."""

    def __init__(self) -> None:
        self.communicator: WebsocketCommunicator | None = None
        self.written: list[str] = []

    async def __call__(self, scope, receive, send):
        def write(text: str) -> None:
            self.written.append(text)
            self.communicator.output_queue.put_nowait({"type": "websocket.send", "text": text})

        return await application({**scope, direct_send.SCOPE_KEY: write}, receive, send)


@pytest.mark.django_db(transaction=True)
async def test_an_answers_frames_are_written_by_its_generation_in_order(upstream, sim_model, alice):
    text = "Written straight to the socket, " * 6 + "in order."
    upstream.enqueue(Reply(text=text, token_delay=0.01))
    app = WithWriter()
    cookie = await sync_to_async(session_cookie_for)(Client(), alice)
    communicator = app.communicator = WebsocketCommunicator(
        app,
        "/ws/chat/",
        headers=[(b"origin", settings.CHAT_SITE_URL.encode()), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    frames = []
    while not frames or frames[-1]["type"] != "end":
        frames.append(await communicator.receive_json_from(timeout=10))
    await communicator.disconnect()

    kinds = [f["type"] for f in frames]
    assert kinds[0] == "hello" and kinds.index("ack") < kinds.index("delta")
    answer_id = frames[kinds.index("ack")]["assistant_message"]["id"]
    deltas = [f for f in frames if f["type"] == "delta" and f["message"] == answer_id]
    assert [d["offset"] for d in deltas] == [
        sum(len(d["text"]) for d in deltas[:i]) for i in range(len(deltas))
    ]
    assert "".join(d["text"] for d in deltas) == text
    # Every delta and the end went out from the generation's own call: the socket was idle for all of them.
    written = {f"{f['type']}:{f.get('offset', '')}" for f in map(json.loads, app.written)}
    assert {f"delta:{d['offset']}" for d in deltas} <= written and "end:" in written
    saved = await Message.objects.aget(public_id=answer_id)
    assert saved.status == Message.Status.COMPLETE and saved.content == text
