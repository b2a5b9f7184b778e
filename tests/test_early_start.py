"""A turn's request leaves before its batch commits (engine/admission.py, generation.start_held): the provider
thinks while the turn is written, the acknowledgement still comes before the first text, and a batch that
fails to commit abandons the answers it started (nothing sent, nothing saved, the provider hung up on)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import DatabaseError, connection
from django.test import Client

from chatsite.asgi import application
from conversations.models import Conversation, Message
from conversations.services import turns
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db(transaction=True)


def chat_requests(sim):
    return [
        r
        for r in sim.requests
        if r.path.endswith("/chat/completions") and (r.json or {}).get("max_tokens") != 24
    ]


@pytest.fixture
def commit_watch(monkeypatch, upstream):
    """TurnBatch's commit, after waiting (on the turns' thread, up to 5 s) for the turn's request to reach
    the simulator: records whether it did. `fail=True`: the batch rolls back and raises instead."""
    seen: dict = {"before_commit": None, "fail": False}
    original = turns.TurnBatch.__exit__

    def exit_(self, *exc_info):
        deadline = time.monotonic() + 5
        while not chat_requests(upstream) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["before_commit"] = bool(chat_requests(upstream))
        if seen["fail"] and exc_info[0] is None:
            error = RuntimeError("the disk is full")
            original(self, RuntimeError, error, None)  # rolls the batch back
            raise error
        return original(self, *exc_info)

    monkeypatch.setattr(turns.TurnBatch, "__exit__", exit_)
    return seen


async def open_socket(alice) -> WebsocketCommunicator:
    cookie = await sync_to_async(session_cookie_for)(Client(), alice)
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", settings.CHAT_SITE_URL.encode()), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


async def frames_until(communicator, done, timeout=10.0) -> list[dict]:
    frames = []
    deadline = asyncio.get_running_loop().time() + timeout
    while not frames or not done(frames[-1]):
        remaining = deadline - asyncio.get_running_loop().time()
        frames.append(await communicator.receive_json_from(timeout=max(remaining, 0.01)))
    return frames


async def test_the_request_leaves_before_the_commit_and_the_ack_comes_first(
    upstream, sim_model, alice, commit_watch
):
    upstream.enqueue(Reply(text="Hello from the early start.", ttft=0.0))  # ready before the turn commits
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    frames = await frames_until(communicator, lambda f: f["type"] == "end")
    await communicator.disconnect()

    assert commit_watch["before_commit"] is True  # the provider had the request while the turn was written
    kinds = [f["type"] for f in frames]
    assert kinds.index("ack") < kinds.index("delta")  # nothing about the answer before its acknowledgement
    answer_id = frames[kinds.index("ack")]["assistant_message"]["id"]
    text = "".join(f["text"] for f in frames if f["type"] == "delta" and f["message"] == answer_id)
    assert text == "Hello from the early start."
    saved = await Message.objects.aget(public_id=answer_id)
    assert saved.status == Message.Status.COMPLETE and saved.content == text


async def test_a_sends_request_leaves_before_its_rows_are_written(upstream, sim_model, alice, monkeypatch):
    """A send's prompt is known once the turn is checked: with SQLite the request does not wait for the
    inserts (with PostgreSQL it leaves after them, before the commit: services/turns.TurnBatch._write says
    why). The answer runs and is saved under its row, with the question, the branch and the context-trimmed
    flag the answer was prepared with."""
    from conversations.services import turns
    from tests.test_turns import make_history

    sim_model.context_window, sim_model.max_output_tokens = 1_000, 400
    await sim_model.asave()
    conversation = await sync_to_async(make_history)(alice, sim_model, pairs=6)
    seen: dict = {}
    original = turns.insert_rows

    before_inserts = not connection.features.has_select_for_update

    def insert_rows(objs):
        if objs and "first_insert" not in seen:
            deadline = time.monotonic() + (5 if before_inserts else 0.3)
            while not chat_requests(upstream) and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["first_insert"] = bool(chat_requests(upstream))
            seen["model"] = type(objs[0])
        return original(objs)

    monkeypatch.setattr(turns, "insert_rows", insert_rows)
    upstream.enqueue(Reply(text="Prepared before it was written.", ttft=0.0))
    communicator = await open_socket(alice)
    turn = {"type": "send", "conversation": str(conversation.public_id), "text": "the newest question"}
    await communicator.send_json_to({**turn, "ref": "r1"})
    frames = await frames_until(communicator, lambda f: f["type"] == "end")
    await communicator.disconnect()

    # SQLite: the question's INSERT waited for nothing; PostgreSQL: the request was not out yet.
    assert seen == {"first_insert": before_inserts, "model": Message}
    ack = next(f for f in frames if f["type"] == "ack")
    answer = await Message.objects.select_related("parent").aget(public_id=ack["assistant_message"]["id"])
    assert answer.status == Message.Status.COMPLETE and answer.content == "Prepared before it was written."
    assert answer.context_trimmed  # decided before the row existed, inserted with it
    assert (
        answer.parent.content == "the newest question"
        and answer.parent.parent_id == conversation.current_leaf_id
    )
    sent = chat_requests(upstream)[0].json["messages"]
    assert sent[0]["content"] == "Be brief." and sent[-1]["content"] == "the newest question"
    assert any(f["type"] == "end" and f["message"]["id"] == str(answer.public_id) for f in frames)


async def test_a_batch_that_fails_to_commit_abandons_the_answer_it_started(
    upstream, sim_model, alice, commit_watch
):
    commit_watch["fail"] = True
    upstream.enqueue(Reply(text="Nobody should ever see this.", ttft=0.0, token_delay=0.05))
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    frames = await frames_until(communicator, lambda f: f["type"] == "error")
    assert commit_watch["before_commit"] is True
    assert frames[-1]["ref"] == "r1"
    # The provider is hung up on; no answer text reaches anyone, and nothing was saved.
    await sync_to_async(upstream.wait_for_disconnect)(timeout=5)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    assert not await Message.objects.filter(content__contains="Nobody").aexists()
    if connection.features.has_select_for_update:  # PostgreSQL: the batch is one transaction, rolled back
        assert await Message.objects.acount() == 0


async def test_writes_that_fail_after_the_request_left_abandon_the_answer(
    upstream, sim_model, alice, monkeypatch
):
    """The turn's last write (the conversation's UPDATE) comes after its request left: if it fails, the whole
    turn rolls back, on SQLite as on PostgreSQL, and its answer goes nowhere."""
    original = turns.update_rows

    def update_rows(rows, fields, **kwargs):
        if rows and isinstance(rows[0], Conversation):
            deadline = time.monotonic() + 5
            while not chat_requests(upstream) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert chat_requests(upstream), "the request should have left before the last write"
            raise DatabaseError("disk I/O error")
        return original(rows, fields, **kwargs)

    monkeypatch.setattr(turns, "update_rows", update_rows)
    upstream.enqueue(Reply(text="Nobody should ever see this.", ttft=0.0, token_delay=0.05))
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    frames = await frames_until(communicator, lambda f: f["type"] == "error")
    assert frames[-1]["ref"] == "r1" and "delta" not in [f["type"] for f in frames]
    await sync_to_async(upstream.wait_for_disconnect)(timeout=5)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    assert await Message.objects.acount() == 0
    assert await Conversation.objects.acount() == 0


async def test_a_closed_socket_leaves_nothing_in_the_channel_layer(upstream, sim_model, alice):
    """engine/dispatch.py may be between two receives when a socket closes (a frame taken, not yet handled):
    the consumer then discards its channel itself, so no queue or membership outlives the socket, even with
    frames still streaming to it."""
    from channels.layers import get_channel_layer

    from conversations.engine import channel_groups, control, registry

    layer = get_channel_layer()
    upstream.enqueue(Reply(text=" ".join(f"w{i}" for i in range(300)), ttft=0.0, token_delay=0.002))
    before = set(layer.channels)
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Stream to me", "ref": "r1"})
    await frames_until(communicator, lambda f: f["type"] == "delta")
    await communicator.disconnect()
    deadline = asyncio.get_running_loop().time() + 10
    while registry.RUNNING and asyncio.get_running_loop().time() < deadline:  # the answer goes on, then ends
        await asyncio.sleep(0.05)
    assert not registry.RUNNING
    # What is left is this loop's listeners (engine/revocation.py and, with Redis, engine/control.py), which
    # live as the process does.
    listeners = (channel_groups.REVOCATIONS_CHANNEL_PREFIX, control.CONTROL_CHANNEL_PREFIX)
    new = {c for c in set(layer.channels) - before if not any(p in c for p in listeners)}
    assert new == set()
    members = {channel for group in layer.groups.values() for channel in group}
    assert not {c for c in members - before if not any(p in c for p in listeners)}


async def test_a_stop_through_the_channel_layer_the_moment_the_ack_arrives_stops_the_answer(
    upstream, sim_model, alice
):
    """What a socket in another process sends (engine/control.py): a `gen.stop` to the answer's control
    group, at once after the acknowledgement that gave out the answer's id. With Redis the process's pattern
    subscription hears it (the ack waited for that subscription); with the in-memory layer the group has no
    listener, so this lane checks that such a request is dropped, not mistaken for another answer's."""
    from channels.layers import get_channel_layer

    from conversations.engine import channel_groups

    upstream.enqueue(Reply(text=" ".join(f"w{i}" for i in range(400)), ttft=0.0, token_delay=0.01))
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    ack = await communicator.receive_json_from(timeout=5)
    assert ack["type"] == "ack"
    answer_id = ack["assistant_message"]["id"]
    layer = get_channel_layer()
    stop = {"type": "gen.stop", "message": answer_id}
    if settings.REDIS_URL:
        await layer.group_send(channel_groups.generation_group(answer_id), stop)
        frames = await frames_until(communicator, lambda f: f["type"] == "end")
        assert frames[-1]["message"]["status"] == "cancelled"
        assert (await Message.objects.aget(public_id=answer_id)).status == Message.Status.CANCELLED
    else:
        await layer.group_send(channel_groups.generation_group("another"), {**stop, "message": "another"})
        frames = await frames_until(communicator, lambda f: f["type"] == "end")
        assert frames[-1]["message"]["status"] == "complete"
    await communicator.disconnect()


async def test_a_stop_from_the_answers_own_process_goes_straight_to_it(
    upstream, sim_model, alice, monkeypatch
):
    """commands.stop: an answer running in the asking socket's process is stopped directly, not through the
    channel layer (engine/control.py)."""
    from conversations.engine import notify

    through_layer = []

    async def recording(message_id, message):
        through_layer.append(message_id)

    monkeypatch.setattr(notify, "to_generation", recording)
    upstream.enqueue(Reply(text=" ".join(f"w{i}" for i in range(400)), ttft=0.0, token_delay=0.01))
    communicator = await open_socket(alice)
    await communicator.send_json_to({"type": "send", "text": "Hi", "ref": "r1"})
    answer_id = (await frames_until(communicator, lambda f: f["type"] == "ack"))[-1]["assistant_message"][
        "id"
    ]
    await frames_until(communicator, lambda f: f["type"] == "delta")
    await communicator.send_json_to({"type": "stop", "message": answer_id, "ref": "s1"})
    frames = await frames_until(communicator, lambda f: f["type"] == "end")
    await communicator.disconnect()
    assert [f["ref"] for f in frames if f["type"] == "ack"] == ["s1"]
    assert frames[-1]["message"]["status"] == "cancelled"
    assert through_layer == []
    await sync_to_async(upstream.wait_for_disconnect)(timeout=5)
