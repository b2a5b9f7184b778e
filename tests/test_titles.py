"""Titles: provisional from the first prompt at once, the model's as soon as the first answer has a sentence,
the provisional one kept when the answer fails, never Markdown. A live daphne and the simulator upstream."""

from __future__ import annotations

import pytest

from conversations.models import Conversation
from conversations.services.titles import answer_is_enough, clean_title, provisional_title
from conversations.testing.upstream import Fault, Reply
from tests.conftest import session_cookie_for
from tests.wsclient import ChatSocket

# Long, slow and with a first sentence early: the title must not wait for the end.
LONG_ANSWER = "Paris has been the capital of France since the tenth century. " + " ".join(
    f"word{i}" for i in range(150)
)


@pytest.fixture
def sock(live_server_daphne, client, alice):
    socket = ChatSocket(live_server_daphne, session_cookie_for(client, alice))
    yield socket
    socket.close()


def title_requests(sim):
    return [r for r in sim.chat_requests if (r.json or {}).get("max_tokens") == 24]


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("## How do I **parse** `json` in my_var?", "How do I parse json in my_var?"),
        ("> Fix this [link](https://example.com) please", "Fix this link please"),
        ("- first item\n- second item", "first item second item"),
        ("What is \\(x^2\\) over $$y$$?", "What is x^2 over y?"),
        (
            "Please explain in great detail how the French revolution changed European politics forever",
            "Please explain in great detail how the French revolution…",
        ),
    ],
)
def test_a_provisional_title_is_the_prompt_as_plain_text_cut_at_a_word(prompt, title):
    assert provisional_title(prompt) == title
    assert len(provisional_title(prompt)) <= 61


def test_a_model_title_loses_its_markdown():
    assert clean_title("## **Parsing** `JSON` _fast_") == "Parsing JSON fast"


def test_an_answer_is_enough_for_a_title_once_it_has_a_sentence():
    assert not answer_is_enough("Sure.")  # too short to say what the chat is about
    assert not answer_is_enough("Paris has been the capital of France since the tenth century")
    assert answer_is_enough("Paris has been the capital of France since the tenth century. It")
    assert answer_is_enough("word " * 70)  # no sentence end, but plenty of text (a list, code...)


@pytest.mark.django_db(transaction=True)
def test_a_new_chat_is_titled_from_its_prompt_at_once(upstream, sim_model, sock):
    upstream.enqueue(Reply(text="Hi.", ttft=0.5), Reply(text="Greeting"))
    sock.send(type="send", text="**Hello** there, `friend`", ref="t1")
    ack = sock.wait_type("ack")
    assert ack["created"] and ack["conversation"]["title"] == "Hello there, friend"
    row = Conversation.objects.get(public_id=ack["conversation"]["id"])
    assert (row.title, row.title_provisional) == ("Hello there, friend", True)


@pytest.mark.django_db(transaction=True)
def test_the_model_title_arrives_while_a_long_first_answer_still_streams(upstream, sim_model, sock):
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.03), Reply(text="**French capital history**"))
    sock.send(type="send", text="Tell me about Paris", ref="t1")
    ack = sock.wait_type("ack")
    answer_id = ack["assistant_message"]["id"]
    title = sock.wait_type("title")
    assert title["title"] == "French capital history"
    assert not any(f["type"] == "end" for f in sock.frames), "the title waited for the end of the answer"
    # The title model read the answer's first sentence, not an empty or finished answer.
    asked = title_requests(upstream)[0].json["messages"][-1]["content"]
    assert "Assistant: Paris has been the capital of France since the tenth century." in asked
    assert "word149" not in asked
    sock.wait_end(answer_id)
    row = Conversation.objects.get(public_id=ack["conversation"]["id"])
    assert (row.title, bool(row.title_provisional)) == ("French capital history", False)
    assert len(title_requests(upstream)) == 1, "the title was asked once"


@pytest.mark.django_db(transaction=True)
def test_a_failed_first_answer_keeps_the_provisional_title(upstream, sim_model, sock):
    upstream.enqueue(Reply(fault=Fault.INVALID_KEY))
    sock.send(type="send", text="Plan a # trip to **Lisbon**", ref="t1")
    ack = sock.wait_type("ack")
    final = sock.wait_end(ack["assistant_message"]["id"])
    assert final["status"] == "error"
    row = Conversation.objects.get(public_id=ack["conversation"]["id"])
    assert row.title == "Plan a # trip to Lisbon" and row.title_provisional
    assert not title_requests(upstream) and not any(f["type"] == "title" for f in sock.frames)


@pytest.mark.django_db(transaction=True)
def test_a_retry_after_a_failed_first_answer_gets_the_model_title(upstream, sim_model, sock):
    upstream.enqueue(
        Reply(fault=Fault.INVALID_KEY), Reply(text="Lisbon is lovely."), Reply(text="Lisbon trip")
    )
    sock.send(type="send", text="Plan a trip to Lisbon", ref="t1")
    ack = sock.wait_type("ack")
    answer_id = ack["assistant_message"]["id"]
    sock.wait_end(answer_id)
    sock.send(type="regenerate", message=answer_id, ref="t2")
    sock.wait_for(lambda f: f["type"] == "ack" and f["ref"] == "t2")
    assert sock.wait_type("title")["title"] == "Lisbon trip"


@pytest.mark.django_db(transaction=True)
def test_a_rename_during_the_first_answer_is_never_overwritten(upstream, sim_model, sock, client, alice):
    upstream.enqueue(Reply(text="Lisbon is lovely in May.", ttft=0.6), Reply(text="Lisbon trip"))
    sock.send(type="send", text="Plan a trip to Lisbon", ref="t1")
    ack = sock.wait_type("ack")
    client.force_login(alice)
    response = client.patch(
        f"/api/conversations/{ack['conversation']['id']}",
        data={"title": "My trip"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    sock.wait_end(ack["assistant_message"]["id"])
    row = Conversation.objects.get(public_id=ack["conversation"]["id"])
    assert (row.title, bool(row.title_provisional)) == ("My trip", False)
    assert not any(f["type"] == "title" for f in sock.frames)
