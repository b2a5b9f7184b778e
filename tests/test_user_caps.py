"""Per-user caps (issue 16, finding 10): one user could open 200 sockets and start unlimited parallel
answers. Now CHAT_MAX_SOCKETS_PER_USER sockets (default 20) and CHAT_MAX_RUNNING_PER_USER answers being
written at once (default 3), each refused with a clear error code. Both count over the whole site: running
answers in the database, sockets in Redis when there are several processes (engine/socket_caps.py)."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack

import pytest
from channels.layers import get_channel_layer
from django.test import Client
from websockets.sync.client import connect

from conversations.engine import socket_caps
from conversations.models import Message
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.live import DaphneServer
from tests.test_scaleout import needs_redis
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_21st_socket_of_one_user_is_refused_with_too_many_sockets(live_server_daphne, alice, charlie):
    cookie = session_cookie_for(Client(), alice)
    with ExitStack() as stack:
        sockets = [stack.enter_context(ChatSocket(live_server_daphne, cookie)) for _ in range(20)]
        with connect(
            f"{live_server_daphne.ws_url}/ws/chat/",
            origin=live_server_daphne.url,
            additional_headers={"Cookie": f"sessionid={cookie}"},
            open_timeout=5,
        ) as extra:
            frame = json.loads(extra.recv(timeout=5))
            assert (frame["type"], frame["code"]) == ("error", "too_many_sockets")
            assert "tabs" in frame["message"]
        assert extra.close_code == 4429

        # Another user is not affected, and the first 20 still work.
        with ChatSocket(live_server_daphne, session_cookie_for(Client(), charlie)) as other:
            other.send(type="ping", id="charlie")
            assert other.wait_type("pong")["id"] == "charlie"
        sockets[0].send(type="ping", id="first")
        assert sockets[0].wait_type("pong")["id"] == "first"

        # Closing one makes room for the next.
        sockets[5].close()
        with ChatSocket(live_server_daphne, cookie) as again:
            again.send(type="ping", id="again")
            assert again.wait_type("pong")["id"] == "again"


def test_a_fourth_answer_at_once_is_refused_with_too_many_running(
    live_server_daphne, alice, upstream, sim_model
):
    for _ in range(3):
        upstream.enqueue(Reply(text="slow " * 200, token_delay=0.05))
    cookie = session_cookie_for(Client(), alice)
    with ExitStack() as stack:
        tabs = [stack.enter_context(ChatSocket(live_server_daphne, cookie)) for _ in range(4)]
        running = []
        for n, tab in enumerate(tabs[:3]):
            tab.send(type="send", text=f"Question {n}", ref=n)
            running.append(tab.wait_type("ack")["assistant_message"]["id"])
        tabs[3].send(type="send", text="One more", ref="fourth")
        error = tabs[3].wait_type("error")
        assert (error["code"], error["ref"]) == ("too_many_running", "fourth")
        assert "3 answers" in error["message"]
        assert not Message.objects.filter(content="One more").exists()  # nothing saved, the socket usable

        tabs[2].send(type="stop", message=running[2])
        assert tabs[2].wait_end(running[2])["status"] == "cancelled"
        upstream.enqueue(Reply(text="Now there is room."))
        tabs[3].send(type="send", text="One more", ref="retry")
        ack = tabs[3].wait_type("ack")
        assert (ack["ref"], ack["user_message"]["content"]) == ("retry", "One more")
        for tab, answer_id in zip(tabs[:2], running[:2], strict=True):
            tab.send(type="stop", message=answer_id)
            tab.wait_end(answer_id)


@pytest.fixture
def two_servers(django_db_setup, tmp_path):
    """Two daphne processes sharing the database and Redis, each allowing 4 sockets per user."""
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        server = DaphneServer(tmp_path / name, {"CHAT_MAX_SOCKETS_PER_USER": "4"})
        server.start()
        servers.append(server)
    yield servers
    for server in servers:
        server.stop()


def refused(server, cookie: str) -> int | None:
    """Open one more socket; the close code if it was refused with too_many_sockets, else None."""
    with connect(
        f"{server.ws_url}/ws/chat/",
        origin=server.url,
        additional_headers={"Cookie": f"sessionid={cookie}"},
        open_timeout=5,
    ) as extra:
        frame = json.loads(extra.recv(timeout=5))
        if frame.get("code") != "too_many_sockets":
            return None
    return extra.close_code


@needs_redis
def test_the_cap_counts_a_users_sockets_on_every_process(two_servers, alice, charlie):
    """Per site, not per process: with several daphne processes a user got the cap on each of them."""
    one, two = two_servers
    cookie = session_cookie_for(Client(), alice)
    with ExitStack() as stack:
        on_one = [stack.enter_context(ChatSocket(one, cookie)) for _ in range(2)]
        on_two = [stack.enter_context(ChatSocket(two, cookie)) for _ in range(2)]
        assert refused(one, cookie) == 4429
        assert refused(two, cookie) == 4429
        with ChatSocket(two, session_cookie_for(Client(), charlie)) as other:  # another user is not affected
            other.send(type="ping", id="charlie")
            assert other.wait_type("pong")["id"] == "charlie"
        on_two[0].close()  # closing one on either process makes room on the other
        with ChatSocket(one, cookie) as again:
            again.send(type="ping", id="again")
            assert again.wait_type("pong")["id"] == "again"
        on_one[0].send(type="ping", id="first")
        assert on_one[0].wait_type("pong")["id"] == "first"


@needs_redis
async def test_sockets_of_a_process_that_died_stop_counting_and_renewed_ones_do_not(monkeypatch, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    monkeypatch.setattr(socket_caps, "TTL", 0.6)
    monkeypatch.setattr(socket_caps, "_COUNTED", {})
    user = 10**9 + 7  # no real user: the set is this test's own
    layer = get_channel_layer()
    await layer.redis().delete(socket_caps._key(user))
    try:
        assert await socket_caps.opened(user, "live.1") and await socket_caps.opened(user, "dead.1")
        assert not await socket_caps.opened(user, "live.2")
        del socket_caps._COUNTED["dead.1"]  # its process died: nobody renews it
        await asyncio.sleep(0.4)
        await socket_caps.renew()
        await asyncio.sleep(0.4)
        assert await socket_caps.opened(user, "live.2"), "the dead socket stopped counting"
        assert not await socket_caps.opened(user, "live.3"), "the renewed one still counts"
        await socket_caps.closed(user, "live.1")
        await socket_caps.closed(user, "live.2")
        assert await layer.redis().zcard(socket_caps._key(user)) == 0
    finally:
        await layer.redis().delete(socket_caps._key(user))
        await layer.flush()
