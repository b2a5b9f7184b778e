"""Per-user caps (issue 16, finding 10): one user could open 200 sockets and start unlimited parallel
answers. Now CHAT_MAX_SOCKETS_PER_USER sockets (default 20) and CHAT_MAX_RUNNING_PER_USER answers being
written at once (default 3), each refused with a clear error code."""

from __future__ import annotations

import json
from contextlib import ExitStack

import pytest
from django.test import Client
from websockets.sync.client import connect

from conversations.models import Message
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
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
