"""A new conversation's request leaves as its frame arrives (engine/send_ahead.py), guessed from what the
session's previous new conversation was prepared with; the turn's batch still checks and prepares the turn,
and the early answer is kept only when the batch asked for exactly the same thing. A wrong guess or a
refused turn costs a cancelled request, never a wrong answer."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from conversations import metrics
from conversations.models import Message, UserQuota
from conversations.services import custom_instructions, turns
from conversations.testing.upstream import Reply
from tests.test_early_start import chat_requests, frames_until, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_titles(monkeypatch):
    """The new conversations' title requests would take the replies these tests script, in no set order."""
    from conversations.engine import titles

    async def write_title(*args, **kwargs):
        return None

    monkeypatch.setattr(titles, "start", lambda *args, **kwargs: None)
    monkeypatch.setattr(titles, "write_title", write_title)


def sent_ahead(outcome: str) -> float:
    return metrics.SENT_AHEAD.labels(outcome)._value.get()


@pytest.fixture
def batch_watch(monkeypatch, upstream):
    """Each turn batch, before it reads anything, waits (on the turns' thread, up to 2 s) for as many chat
    requests at the simulator as it has seen batches, and records whether they were there."""
    seen: list[bool] = []
    original = turns.TurnBatch.__enter__

    def enter(self):
        wanted = len(seen) + 1
        deadline = time.monotonic() + 2
        while len(chat_requests(upstream)) < wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(len(chat_requests(upstream)) >= wanted)
        return original(self)

    monkeypatch.setattr(turns.TurnBatch, "__enter__", enter)
    return seen


async def new_chat(communicator, text: str, ref: str) -> list[dict]:
    await communicator.send_json_to({"type": "send", "text": text, "ref": ref})
    return await frames_until(communicator, lambda f: f["type"] in {"end", "error"})


async def test_the_next_new_conversation_is_requested_before_its_turn_is_read(
    upstream, sim_model, alice, batch_watch
):
    kept = sent_ahead("kept")
    upstream.enqueue(Reply(text="First answer.", ttft=0.0))
    upstream.enqueue(Reply(text="Second answer.", ttft=0.0))
    communicator = await open_socket(alice)
    first = await new_chat(communicator, "Hello", "r1")
    second = await new_chat(communicator, "And again", "r2")
    await communicator.disconnect()

    # The first turn's request waited for its batch (nothing to guess from); the second left before it.
    assert batch_watch == [False, True]
    assert sent_ahead("kept") == kept + 1
    for frames, text in ((first, "First answer."), (second, "Second answer.")):
        types = [f["type"] for f in frames]
        assert types.index("ack") < types.index("delta")  # acknowledged before any text, as always
        ack = next(f for f in frames if f["type"] == "ack")
        assert ack["created"]
        answer = await Message.objects.select_related("conversation").aget(
            public_id=ack["assistant_message"]["id"]
        )
        assert answer.status == Message.Status.COMPLETE and answer.content == text
        assert str(answer.conversation.public_id) == ack["conversation"]["id"]
        assert "".join(f["text"] for f in frames if f["type"] == "delta") == text
    requests = chat_requests(upstream)
    assert [r.json["messages"][-1]["content"] for r in requests] == ["Hello", "And again"]
    assert requests[0].json["model"] == requests[1].json["model"] == "gpt-4o"
    assert not upstream.disconnects


async def test_a_changed_instruction_cancels_the_early_request_and_sends_the_right_one(
    upstream, sim_model, alice, batch_watch
):
    """The guess used the instructions of the previous turn; the batch read the new ones: the early request
    is hung up on, the batch's goes out, and only its answer reaches the socket and the database."""
    redone = sent_ahead("redone")
    upstream.enqueue(Reply(text="First answer.", ttft=0.0))
    upstream.enqueue(Reply(text="Nobody should ever see this.", ttft=0.3, token_delay=0.05))
    upstream.enqueue(Reply(text="Answered with the new instructions.", ttft=0.0))
    communicator = await open_socket(alice)
    await new_chat(communicator, "Hello", "r1")
    # Saved outside the process's knowledge, as another process would.
    await sync_to_async(custom_instructions.save)(alice, "I am a botanist.", "", True)
    frames = await new_chat(communicator, "What do I do?", "r2")
    await communicator.disconnect()

    assert batch_watch == [False, True]  # the guess left early...
    assert sent_ahead("redone") == redone + 1  # ...and was not what the batch prepared
    await upstream.await_disconnect(timeout=5)
    requests = chat_requests(upstream)
    assert len(requests) == 3
    assert "botanist" not in str(requests[1].json["messages"])
    assert "botanist" in requests[2].json["messages"][0]["content"]
    texts = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert texts == "Answered with the new instructions."
    ack = next(f for f in frames if f["type"] == "ack")
    answer = await Message.objects.aget(public_id=ack["assistant_message"]["id"])
    assert answer.content == "Answered with the new instructions."
    assert not await Message.objects.filter(content__contains="Nobody").aexists()


async def test_a_refused_turn_cancels_its_early_request_and_saves_nothing(upstream, sim_model, alice):
    """The rate limit (read by the batch, not guessed) refuses the second new conversation: its early
    request is hung up on and nothing of it is saved or sent."""
    dropped = sent_ahead("dropped")
    await UserQuota.objects.acreate(user=alice, turns_per_minute=1)
    upstream.enqueue(Reply(text="First answer.", ttft=0.0))
    upstream.enqueue(Reply(text="Nobody should ever see this.", ttft=0.0, token_delay=0.05))
    communicator = await open_socket(alice)
    await new_chat(communicator, "Hello", "r1")
    frames = await new_chat(communicator, "Once more", "r2")
    assert frames[-1]["type"] == "error" and frames[-1]["ref"] == "r2"
    assert "delta" not in [f["type"] for f in frames]
    assert sent_ahead("dropped") == dropped + 1
    if len(chat_requests(upstream)) == 2:  # it had left before the batch refused it: hung up on
        await upstream.await_disconnect(timeout=5)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    assert await Message.objects.acount() == 2  # the first turn's question and answer
    assert not await Message.objects.filter(
        content__in=["Once more", "Nobody should ever see this."]
    ).aexists()


async def test_another_session_does_not_start_from_alices_template(
    upstream, sim_model, alice, charlie, batch_watch
):
    upstream.enqueue(Reply(text="Alice's answer.", ttft=0.0))
    upstream.enqueue(Reply(text="Charlie's answer.", ttft=0.0))
    alices = await open_socket(alice)
    await new_chat(alices, "Hello", "r1")
    await alices.disconnect()
    charlies = await open_socket(charlie)
    frames = await new_chat(charlies, "Hello", "r1")
    await charlies.disconnect()
    assert batch_watch == [False, False]  # charlie's request waited for his own turn's checks
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "Charlie's answer."


async def follow_up(communicator, conversation: str, text: str, ref: str) -> list[dict]:
    await communicator.send_json_to({"type": "send", "conversation": conversation, "text": text, "ref": ref})
    return await frames_until(communicator, lambda f: f["type"] in {"end", "error"})


async def test_a_follow_up_is_requested_before_its_turn_is_read_with_the_whole_branch(
    upstream, sim_model, alice, batch_watch
):
    kept = sent_ahead("kept")
    for text in ("One.", "Two.", "Three."):
        upstream.enqueue(Reply(text=text, ttft=0.0))
    communicator = await open_socket(alice)
    first = await new_chat(communicator, "Count with me", "r1")
    conversation = next(f for f in first if f["type"] == "ack")["conversation"]["id"]
    await follow_up(communicator, conversation, "Go on", "r2")
    last = await follow_up(communicator, conversation, "And again", "r3")
    await communicator.disconnect()

    assert batch_watch == [False, True, True]  # both follow-ups left before their turns were read
    assert sent_ahead("kept") == kept + 2
    sent = [[(m["role"], m["content"]) for m in r.json["messages"]] for r in chat_requests(upstream)]
    assert sent[2] == [
        ("user", "Count with me"),
        ("assistant", "One."),
        ("user", "Go on"),
        ("assistant", "Two."),
        ("user", "And again"),
    ]
    ack = next(f for f in last if f["type"] == "ack")
    answer = await Message.objects.select_related("parent__parent").aget(
        public_id=ack["assistant_message"]["id"]
    )
    assert answer.content == "Three." and answer.parent.content == "And again"
    assert answer.parent.parent.content == "Two."  # saved on the branch the request was built from


async def test_a_conversation_changed_elsewhere_gets_the_request_its_rows_say(
    upstream, sim_model, alice, batch_watch
):
    """A system prompt set where this process did not see it (another process, the admin): the guessed
    follow-up is hung up on and the batch's request, with the new system prompt, answers."""
    from conversations.models import Conversation

    redone = sent_ahead("redone")
    upstream.enqueue(Reply(text="One.", ttft=0.0))
    upstream.enqueue(Reply(text="Nobody should ever see this.", ttft=0.3, token_delay=0.05))
    upstream.enqueue(Reply(text="Arr.", ttft=0.0))
    communicator = await open_socket(alice)
    first = await new_chat(communicator, "Hello", "r1")
    conversation = next(f for f in first if f["type"] == "ack")["conversation"]["id"]
    await Conversation.objects.filter(public_id=conversation).aupdate(system_prompt="Talk like a pirate.")
    frames = await follow_up(communicator, conversation, "Again", "r2")
    await communicator.disconnect()

    assert batch_watch == [False, True]
    assert sent_ahead("redone") == redone + 1
    await upstream.await_disconnect(timeout=5)
    requests = chat_requests(upstream)
    assert requests[2].json["messages"][0] == {"role": "system", "content": "Talk like a pirate."}
    assert "".join(f["text"] for f in frames if f["type"] == "delta") == "Arr."
    assert not await Message.objects.filter(content__contains="Nobody").aexists()


async def test_regenerating_and_selecting_a_branch_keep_the_guess_on_the_shown_branch(
    upstream, sim_model, alice, batch_watch
):
    """A regenerated answer is what the next send follows (its request leaves early with it); selecting the
    other branch forgets it, and the send after that carries the selected branch."""
    for text in ("One.", "Uno.", "Go on, then.", "Again, then."):
        upstream.enqueue(Reply(text=text, ttft=0.0))
    communicator = await open_socket(alice)
    first = await new_chat(communicator, "Hello", "r1")
    ack = next(f for f in first if f["type"] == "ack")
    conversation, one = ack["conversation"]["id"], ack["assistant_message"]["id"]
    await communicator.send_json_to({"type": "regenerate", "message": one, "ref": "r2"})
    await frames_until(communicator, lambda f: f["type"] in {"end", "error"})
    await follow_up(communicator, conversation, "Go on", "r3")
    await communicator.send_json_to({"type": "select", "message": one, "ref": "r4"})
    await frames_until(communicator, lambda f: f.get("ref") == "r4" or f["type"] == "error")
    await follow_up(communicator, conversation, "Again", "r5")
    await communicator.disconnect()

    # Batches: the new chat, the regenerate (never guessed), the follow-up (guessed), after the select (not).
    assert batch_watch == [False, False, True, False]
    sent = [[(m["role"], m["content"]) for m in r.json["messages"]] for r in chat_requests(upstream)]
    assert sent[2] == [("user", "Hello"), ("assistant", "Uno."), ("user", "Go on")]
    assert sent[3] == [("user", "Hello"), ("assistant", "One."), ("user", "Again")]
