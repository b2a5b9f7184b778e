"""SIGTERM (systemd stop, a deploy) lets running answers finish within the grace period, saves the rest as
interrupted with every character received so far, refuses new turns meanwhile, and then the process exits."""

from __future__ import annotations

import contextlib
import time

import pytest

from conversations.models import Conversation, Message
from conversations.services.answers import INTERRUPTED_ERROR, RESTARTING_ERROR
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.live import DaphneServer
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)

SHORT_ANSWER = " ".join(f"short{i}" for i in range(30))  # ~0.9 s at 30 ms a token
LONG_ANSWER = " ".join(f"long{i}" for i in range(1000))  # ~20 s at 20 ms a token


@pytest.fixture
def daphne_factory(django_db_setup, tmp_path):
    servers = []

    def start(**env) -> DaphneServer:
        server = DaphneServer(tmp_path / f"server{len(servers)}", {k: str(v) for k, v in env.items()})
        server.workdir.mkdir()
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def start_answer(sock: ChatSocket, text: str = "Go on.") -> str:
    sock.send(type="send", text=text)
    answer_id = sock.wait_type("ack")["assistant_message"]["id"]
    sock.wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)
    return answer_id


def test_sigterm_lets_a_short_answer_finish_and_saves_it_complete(
    daphne_factory, client, alice, upstream, sim_model
):
    server = daphne_factory(CHAT_SHUTDOWN_GRACE=10)
    upstream.enqueue(Reply(text=SHORT_ANSWER, token_delay=0.03), Reply(text="A title"))
    with ChatSocket(server, session_cookie_for(client, alice)) as sock:
        answer_id = start_answer(sock)
        server.terminate()
        final = sock.wait_end(answer_id, timeout=10)
    assert final["status"] == "complete" and final["content"] == SHORT_ANSWER
    assert server.wait(timeout=10) == 0
    message = Message.objects.get(public_id=answer_id)
    assert (message.status, message.content, message.heartbeat_at) == ("complete", SHORT_ANSWER, None)


def test_sigterm_delivers_the_end_of_an_answer_that_ends_in_the_grace_period_to_every_socket(
    daphne_factory, client, alice, upstream, sim_model
):
    # Regression: once the last answer had ended, the process exited at once, while its `end` frame was still
    # on its way to the process's own sockets through the channel layer (Redis: there and back).
    server = daphne_factory(CHAT_SHUTDOWN_GRACE=10)
    conversation = Conversation.objects.create(owner=alice, model=sim_model, title="Titled")  # no title call
    conversation_id = str(conversation.public_id)
    answer = " ".join(f"brief{i}" for i in range(10))
    upstream.enqueue(Reply(text=answer, token_delay=0.02))
    cookie = session_cookie_for(client, alice)
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(ChatSocket(server, cookie)) for _ in range(6)]
        for sock in socks[1:]:
            sock.send(type="open", conversation=conversation_id, ref="open")
            sock.wait_for(lambda f: f["type"] == "conversation" and f["ref"] == "open")
        socks[0].send(type="send", conversation=conversation_id, text="Briefly.")
        answer_id = socks[0].wait_type("ack")["assistant_message"]["id"]
        socks[0].wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)
        server.terminate()
        for sock in socks:
            final = sock.wait_end(answer_id, timeout=10)
            assert final["status"] == "complete" and sock.texts[answer_id] == answer == final["content"]
    assert server.wait(timeout=10) == 0


def test_sigterm_saves_a_long_answer_as_interrupted_with_all_its_text_when_the_grace_period_ends(
    daphne_factory, client, alice, upstream, sim_model
):
    # No checkpoint during the test: what is saved comes from the final save, not from a checkpoint.
    server = daphne_factory(CHAT_SHUTDOWN_GRACE=0.5, CHAT_CHECKPOINT_INTERVAL=60)
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.02))
    with ChatSocket(server, session_cookie_for(client, alice)) as sock:
        answer_id = start_answer(sock)
        time.sleep(0.3)
        server.terminate()
        signalled = time.monotonic()
        final = sock.wait_end(answer_id, timeout=10)
        seen = sock.texts[answer_id]
    assert server.wait(timeout=10) == 0
    exited_after = time.monotonic() - signalled
    assert exited_after < 4, f"the process took {exited_after:.1f}s to exit with a 0.5s grace period"
    assert upstream.wait_for_disconnect(timeout=1).tokens_sent < len(LONG_ANSWER.split())

    message = Message.objects.get(public_id=answer_id)
    assert message.status == "interrupted" and message.finish_reason == "interrupted"
    assert message.error == INTERRUPTED_ERROR and message.heartbeat_at is None
    assert message.reserved_cost is None
    assert LONG_ANSWER.startswith(message.content) and len(message.content) >= len(seen) > 0
    assert final["status"] == "interrupted" and final["content"] == message.content


def test_during_the_grace_period_new_turns_are_refused_and_a_second_sigterm_ends_it(
    daphne_factory, client, alice, upstream, sim_model
):
    server = daphne_factory(CHAT_SHUTDOWN_GRACE=30)
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.02))
    cookie = session_cookie_for(client, alice)
    with ChatSocket(server, cookie) as running, ChatSocket(server, cookie) as newcomer:
        answer_id = start_answer(running)
        server.terminate()
        time.sleep(0.2)  # let the signal land

        newcomer.send(type="send", text="Are you there?")
        refused_id = newcomer.wait_type("ack")["assistant_message"]["id"]
        refused = newcomer.wait_end(refused_id)
        assert refused["status"] == "error" and refused["error"] == RESTARTING_ERROR
        assert running.ended == {}, "the running answer still has its grace period"

        server.terminate()  # systemd's second signal, or an impatient operator
        final = running.wait_end(answer_id, timeout=10)
    assert server.wait(timeout=10) == 0
    assert final["status"] == "interrupted" and final["content"]
    assert len(upstream.chat_requests) == 1, "the refused turn never reached the provider"
    assert Message.objects.get(public_id=refused_id).status == "error"
    assert not Message.objects.filter(status__in=Message.ACTIVE_STATUSES).exists()


def test_sigterm_with_no_answer_running_exits_at_once(daphne_factory, client, alice, upstream, sim_model):
    server = daphne_factory(CHAT_SHUTDOWN_GRACE=30)
    upstream.enqueue(Reply(text="Done."), Reply(text="A title"))
    with ChatSocket(server, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Quick one.")
        answer_id = sock.wait_type("ack")["assistant_message"]["id"]
        sock.wait_end(answer_id)
        upstream.wait_for_requests(2)  # the title too: nothing is left running
        time.sleep(0.2)
        started = time.monotonic()
        server.terminate()
        assert server.wait(timeout=5) == 0
    assert time.monotonic() - started < 3
