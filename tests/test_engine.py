"""The realtime engine end to end: a live daphne, real websockets, the simulator upstream."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from conversations.models import Conversation, Message
from conversations.testing.upstream import Fault, Reply, split_tokens
from tests.conftest import session_cookie_for
from tests.live import wait_until
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)

# Multi-byte characters on purpose: offsets must agree between server and client.
ANSWER = "".join(f"Wörd{i} 世界 " if i % 7 == 0 else f"word{i} " for i in range(80)) + "🎉 done."


def chat_requests(sim):
    """Completion requests for answers (title requests ask for at most 24 tokens)."""
    return [
        r
        for r in sim.requests
        if r.path.endswith("/chat/completions") and (r.json or {}).get("max_tokens") != 24
    ]


@pytest.fixture
def alice_socket(live_server_daphne, client, alice):
    cookie = session_cookie_for(client, alice)
    sockets = []

    def open_socket():
        sock = ChatSocket(live_server_daphne, cookie)
        sockets.append(sock)
        return sock

    yield open_socket
    for sock in sockets:
        sock.close()


def send_turn(sock: ChatSocket, text: str = "Tell me something.", **extra) -> dict:
    sock.send(type="send", text=text, ref="t1", **extra)
    ack = sock.wait_type("ack")
    assert ack["ref"] == "t1"
    return ack


def test_it_streams_an_answer_and_saves_it_with_usage_and_cost(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.002, cached_tokens=3))
    sock = alice_socket()
    ack = send_turn(sock, conversation=None)
    answer_id = ack["assistant_message"]["id"]
    final = sock.wait_end(answer_id)
    assert sock.texts[answer_id] == ANSWER
    deltas = [f for f in sock.frames if f["type"] == "delta"]
    assert 1 < len(deltas) < 80, "deltas are coalesced into frames, not one per token"

    message = Message.objects.get(public_id=answer_id)
    assert (message.status, message.content, message.finish_reason) == ("complete", ANSWER, "stop")
    assert message.completion_tokens == len(split_tokens(ANSWER))  # the simulator counts its deltas
    assert message.cached_tokens == 3 and message.prompt_tokens > 0
    assert message.cost == sim_model.cost(message.prompt_tokens, message.completion_tokens, 3)
    assert message.cost > Decimal(0)
    assert message.provider_name == "Simulator" and message.model_name == "gpt-4o"
    assert message.ttft_ms is not None and message.duration_ms >= message.ttft_ms
    assert message.reserved_cost is None and message.heartbeat_at is None
    assert final["status"] == "complete" and final["usage"]["cached_tokens"] == 3
    # The user's words reached the provider.
    assert chat_requests(upstream)[0].json["messages"][-1] == {
        "role": "user",
        "content": "Tell me something.",
    }


def test_it_finishes_the_answer_after_the_client_disconnects(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.01))
    sock = alice_socket()
    ack = send_turn(sock)
    answer_id = ack["assistant_message"]["id"]
    sock.wait_for(lambda f: f["type"] == "delta" and len(sock.texts[answer_id].split()) >= 5)
    sock.close()  # the tab closes after about five tokens

    message = wait_until(lambda: Message.objects.filter(public_id=answer_id, status="complete").first(), 20)
    assert message.content == ANSWER
    assert message.completion_tokens and message.cost is not None
    assert not upstream.disconnects, "the upstream request was not cut when the tab closed"


def test_it_titles_a_new_conversation_and_pushes_the_title(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text="Paris is the capital."), Reply(text='"Capital of France".'))
    sock = alice_socket()
    ack = send_turn(sock, text="What is the capital of France?")
    frame = sock.wait_type("title")
    assert frame == {"type": "title", "conversation": ack["conversation"]["id"], "title": "Capital of France"}
    assert Conversation.objects.get(public_id=ack["conversation"]["id"]).title == "Capital of France"


def test_it_resumes_exactly_after_a_reconnect(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.015))
    first = alice_socket()
    ack = send_turn(first)
    conversation_id, answer_id = ack["conversation"]["id"], ack["assistant_message"]["id"]
    first.wait_for(lambda f: f["type"] == "delta" and len(first.texts[answer_id]) > 40)
    first.close()
    time.sleep(0.3)  # text keeps arriving while nobody listens

    second = alice_socket()
    second.send(type="open", conversation=conversation_id)
    snapshot = second.wait_type("conversation")
    assert [m["role"] for m in snapshot["messages"]] == ["user", "assistant"]
    assert snapshot["messages"][1]["status"] in ("pending", "streaming")
    second.wait_end(answer_id)
    assert second.texts[answer_id] == ANSWER  # ChatSocket fails on any doubled or missing character


def test_a_second_tab_sees_the_stream_and_can_stop_it(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.05))
    first, second = alice_socket(), alice_socket()
    ack = send_turn(first)
    conversation_id, answer_id = ack["conversation"]["id"], ack["assistant_message"]["id"]
    second.send(type="open", conversation=conversation_id)
    second.wait_type("conversation")
    second.wait_for(lambda f: f["type"] == "delta" and len(second.texts[answer_id]) > 10)

    second.send(type="stop", message=answer_id)
    stop_sent = time.monotonic()
    disconnect = upstream.wait_for_disconnect(timeout=5)
    assert disconnect.at - stop_sent < 0.2, "the upstream request outlived Stop by more than 200 ms"

    for sock in (first, second):
        final = sock.wait_end(answer_id)
        assert final["status"] == "cancelled"
        assert sock.texts[answer_id] == final["content"]
    message = Message.objects.get(public_id=answer_id)
    assert message.status == "cancelled" and message.finish_reason == "stopped"
    assert message.content and ANSWER.startswith(message.content) and message.content != ANSWER


def test_other_tabs_learn_of_a_turn_and_the_sender_gets_only_its_acknowledgement(
    upstream, sim_model, alice_socket
):
    sender, other = alice_socket(), alice_socket()
    first = send_turn(sender)
    conversation_id = first["conversation"]["id"]
    sender.wait_end(first["assistant_message"]["id"])
    other.send(type="open", conversation=conversation_id)
    other.wait_type("conversation")

    sender.send(type="send", text="And then?", conversation=conversation_id, ref="t2")
    ack = sender.wait_for(lambda f: f["type"] == "ack" and f["ref"] == "t2")
    answer_id = ack["assistant_message"]["id"]
    turn = other.wait_type("turn")
    assert turn["assistant_message"]["id"] == answer_id
    assert turn["user_message"] == ack["user_message"]
    for sock in (sender, other):
        final = sock.wait_end(answer_id)
        assert final["status"] == "complete" and final["content"]
        assert sock.texts[answer_id] == final["content"]
    # The echo meant for other tabs is not sent back to the socket that sent the turn.
    assert [f for f in sender.frames if f["type"] == "turn"] == []


def test_it_regenerates_and_edits_into_sibling_branches(upstream, sim_model, alice_socket):
    upstream.enqueue(
        Reply(text="First answer."),
        Reply(text="A title"),
        Reply(text="Second answer."),
        Reply(text="Answer to edit."),
    )
    sock = alice_socket()
    ack = send_turn(sock, text="Question one")
    conversation_id, first_answer = ack["conversation"]["id"], ack["assistant_message"]["id"]
    sock.wait_end(first_answer)
    sock.wait_type("title")  # the title call takes the second reply

    sock.send(type="regenerate", message=first_answer, ref="r")
    regen = sock.wait_type("ack")
    second_answer = regen["assistant_message"]["id"]
    assert regen["assistant_message"]["siblings"] == [first_answer, second_answer]
    assert sock.wait_end(second_answer)["content"] == "Second answer."

    user_id = ack["user_message"]["id"]
    sock.send(type="edit", message=user_id, text="Question one, edited", ref="e")
    edit = sock.wait_type("ack")
    assert edit["user_message"]["siblings"] == [user_id, edit["user_message"]["id"]]
    sock.wait_end(edit["assistant_message"]["id"])

    sock.send(type="select", message=first_answer)
    snapshot = sock.wait_type("conversation")
    assert [m["content"] for m in snapshot["messages"]] == ["Question one", "First answer."]
    assert snapshot["messages"][1]["siblings"] == [first_answer, second_answer]
    assert Message.objects.filter(conversation__public_id=conversation_id).count() == 5


def test_an_error_before_the_first_token_keeps_the_turn_and_marks_the_answer(
    upstream, sim_model, alice_socket
):
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY))
    sock = alice_socket()
    ack = send_turn(sock, text="Keep my words")
    final = sock.wait_end(ack["assistant_message"]["id"])
    assert final["status"] == "error" and "API key" in final["error"]
    assert Message.objects.get(public_id=ack["user_message"]["id"]).content == "Keep my words"

    # Ready for retry: regenerating works once the provider does.
    sock.send(type="regenerate", message=ack["assistant_message"]["id"])
    retry = sock.wait_type("ack")
    assert sock.wait_end(retry["assistant_message"]["id"])["status"] == "complete"


def test_a_cut_stream_keeps_the_partial_text_marked(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, fault=Fault.DROP, fault_after=6, token_delay=0.002))
    sock = alice_socket()
    ack = send_turn(sock)
    final = sock.wait_end(ack["assistant_message"]["id"])
    assert final["status"] == "error" and final["finish_reason"] == "truncated"
    assert final["content"] and ANSWER.startswith(final["content"])
    assert len(chat_requests(upstream)) == 1, "nothing is retried after the first token"


def test_a_turn_is_refused_while_an_answer_is_running(upstream, sim_model, alice_socket):
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.05))
    sock = alice_socket()
    ack = send_turn(sock)
    sock.send(type="send", conversation=ack["conversation"]["id"], text="again", ref="x")
    error = sock.wait_type("error")
    assert (error["code"], error["ref"]) == ("busy", "x")
    sock.send(type="stop", message=ack["assistant_message"]["id"])
    sock.wait_end(ack["assistant_message"]["id"])


def test_process_start_up_runs_once_however_many_sockets_and_answers(
    upstream, sim_model, alice_socket, live_server_daphne
):
    """The SIGTERM handler and the sweeper start with the process (engine.start), not per socket or answer."""
    for _ in range(3):
        upstream.enqueue(Reply(text="Short answer."), Reply(text="A title"))
    sockets = [alice_socket() for _ in range(3)]
    for sock in sockets:
        ack = send_turn(sock, conversation=None)
        sock.wait_end(ack["assistant_message"]["id"])
    log = live_server_daphne.log()
    assert log.count("engine started") == 1, log[-3000:]
    assert "engine started (graceful SIGTERM: yes)" in log  # a real daphne: the drain is installed


async def test_engine_start_is_once_per_event_loop():
    from conversations import engine

    assert engine.start() is True
    assert engine.start() is False


def test_a_retry_before_the_first_token_is_announced_to_the_tabs(upstream, sim_model, alice_socket):
    sock = alice_socket()
    upstream.enqueue(Reply(fault=Fault.RATE_LIMIT, retry_after=0.3), Reply(text="Here now."))
    sock.send(type="send", text="Anyone there?", ref="t1")
    ack = sock.wait_type("ack")
    retrying = sock.wait_type("retrying")
    assert retrying == {
        "type": "retrying",
        "conversation": ack["conversation"]["id"],
        "message": ack["assistant_message"]["id"],
        "attempt": 2,
        "attempts": 3,
        "provider": "Simulator",
    }
    assert sock.wait_end(ack["assistant_message"]["id"])["content"] == "Here now."
