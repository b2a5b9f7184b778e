"""Several daphne processes sharing PostgreSQL (or SQLite) and Redis behave like one server: an answer runs
in one process and streams, stops and resumes through sockets held by another; a killed process's answer is
marked interrupted by the survivor. Needs REDIS_URL (the in-memory channel layer can't span processes), so
these run in the PostgreSQL + Redis lane of scripts/test."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.engine import channel_groups, control
from conversations.models import Conversation, Message
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.live import DaphneServer, wait_until
from tests.wsclient import ChatSocket

needs_redis = pytest.mark.skipif(
    not settings.REDIS_URL,
    reason="needs REDIS_URL: the in-memory channel layer can't span processes "
    "(scripts/test runs these in its PostgreSQL + Redis lane)",
)


# Multi-byte characters on purpose: offsets count code points in every process.
ANSWER = "".join(f"Wörd{i} 世界 " if i % 5 == 0 else f"word{i} " for i in range(200)) + "🎉 done."


@pytest.fixture
def workers(django_db_setup, tmp_path):
    """Start daphne processes on the test database and the test Redis: `workers(2, **env)`."""
    started: list[DaphneServer] = []

    def start(count: int = 2, **env) -> list[DaphneServer]:
        for _ in range(count):
            workdir = tmp_path / f"worker{len(started)}"
            workdir.mkdir()
            server = DaphneServer(workdir, {k: str(v) for k, v in env.items()})
            server.start()
            started.append(server)
        return started[-count:]

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def redis_client():
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def layer_prefix() -> str:
    from channels.layers import get_channel_layer

    return get_channel_layer()._kwargs["prefix"]


def subscriptions(redis_client, prefix: str) -> list[bytes]:
    """The pub/sub channels anyone subscribes to under this lane's prefix (pub/sub is server-wide)."""
    return sorted(redis_client.pubsub_channels(f"{prefix}*"))


def conversation_of(alice, sim_model) -> Conversation:
    """A conversation with one finished exchange and a title, so the next turn is the only upstream call."""
    conversation = Conversation.objects.create(owner=alice, model=sim_model, title="Scale-out")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="complete", content="Hello."
    )
    conversation.current_leaf = answer
    conversation.save()
    return conversation


def open_conversation(sock: ChatSocket, conversation_id: str) -> dict:
    sock.send(type="open", conversation=conversation_id, ref="open")
    return sock.wait_for(lambda f: f["type"] == "conversation" and f["ref"] == "open")


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_an_answer_running_on_one_worker_streams_to_a_socket_on_another(
    workers, client, alice, upstream, sim_model, redis_client
):
    a, b = workers(2)
    conversation = conversation_of(alice, sim_model)
    conversation_id = str(conversation.public_id)
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.003))
    cookie = session_cookie_for(client, alice)
    with ChatSocket(a, cookie) as on_a, ChatSocket(b, cookie) as on_b:
        open_conversation(on_b, conversation_id)
        on_a.send(type="send", conversation=conversation_id, text="Count for me.")
        answer_id = on_a.wait_type("ack")["assistant_message"]["id"]
        turn = on_b.wait_type("turn")  # B learns of the new messages through Redis...
        assert turn["assistant_message"]["id"] == answer_id
        final = on_b.wait_end(answer_id)  # ...and gets every character exactly once, in order
        assert on_b.texts[answer_id] == ANSWER == final["content"]
        assert on_a.wait_end(answer_id)["content"] == ANSWER
        deltas_on_b = [f for f in on_b.frames if f["type"] == "delta"]
        assert deltas_on_b[0]["offset"] == 0 and len(deltas_on_b) > 1
    assert Message.objects.get(public_id=answer_id).content == ANSWER

    # Closed sockets and finished answers leave no subscription behind in Redis: not the groups, not the
    # sockets' channels, and an answer never subscribed to anything of its own. (Each process's listeners stay
    # subscribed while the process lives: revocations, engine/revocation.py; Stop and sync requests,
    # engine/control.py, a channel plus one pattern; and the channel where its layer is told that other
    # processes know it joined a group: engine/layers.py.)
    prefix = layer_prefix()
    listener = (  # each process's revocation listener: its group and its channel; its layer's own channel
        f"__group__{channel_groups.revocations_group()}".encode(),
        f".{channel_groups.REVOCATIONS_CHANNEL_PREFIX}".encode(),
        f".{control.CONTROL_CHANNEL_PREFIX}".encode(),
        b".process.",
    )
    wait_until(
        lambda: [c for c in subscriptions(redis_client, prefix) if not any(m in c for m in listener)] == [], 5
    )


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_stop_sent_to_another_worker_ends_the_answer_within_200_ms(
    workers, client, alice, upstream, sim_model
):
    a, b = workers(2)
    conversation_id = str(conversation_of(alice, sim_model).public_id)
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.05))
    cookie = session_cookie_for(client, alice)
    with ChatSocket(a, cookie) as on_a, ChatSocket(b, cookie) as on_b:
        open_conversation(on_b, conversation_id)
        on_a.send(type="send", conversation=conversation_id, text="Go on and on.")
        answer_id = on_a.wait_type("ack")["assistant_message"]["id"]
        on_b.wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)

        asked = time.monotonic()
        on_b.send(type="stop", message=answer_id, ref="stop")
        disconnect = upstream.wait_for_disconnect(timeout=2)
        assert disconnect.at - asked < 0.2, f"upstream still open {disconnect.at - asked:.3f}s after stop"

        for sock in (on_a, on_b):
            final = sock.wait_end(answer_id)
            assert final["status"] == "cancelled" and final["finish_reason"] == "stopped"
            assert ANSWER.startswith(final["content"]) and sock.texts[answer_id] == final["content"]
    assert disconnect.tokens_sent < len(ANSWER.split())
    assert Message.objects.get(public_id=answer_id).status == "cancelled"


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_reloads_that_land_on_other_workers_mid_answer_resume_exactly(
    workers, client, alice, upstream, sim_model
):
    a, b = workers(2)
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.01), Reply(text="A title"))
    cookie = session_cookie_for(client, alice)
    sock = ChatSocket(a, cookie)
    sock.send(type="send", text="Write something long.")
    ack = sock.wait_type("ack")
    conversation_id, answer_id = ack["conversation"]["id"], ack["assistant_message"]["id"]
    sock.wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)
    # Reload four times mid-answer, alternating workers: B, A, B, A. Each new socket gets the saved text in
    # the snapshot and the rest from the generating process (on A) through Redis.
    resumed_at = []
    for server in (b, a, b, a):
        sock.close()
        time.sleep(0.15)
        sock = ChatSocket(server, cookie)
        snapshot = open_conversation(sock, conversation_id)
        resumed_at.append(snapshot["messages"][-1]["length"])
        assert snapshot["messages"][-1]["status"] in ("pending", "streaming")
        sock.wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)
    final = sock.wait_end(answer_id, timeout=20)  # ChatSocket fails on a doubled or missing character
    sock.close()
    assert sock.texts[answer_id] == final["content"] == ANSWER
    assert Message.objects.get(public_id=answer_id).content == ANSWER
    assert resumed_at == sorted(resumed_at)


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_answers_that_arrive_all_at_once_reach_a_socket_on_another_worker_whole(
    workers, client, alice, upstream, sim_model
):
    # Regression: each answer's end used to cancel a channel-layer receive, and channels-redis then drops
    # any message that receive had already popped for another socket of the process (here: the first frame).
    a, b = workers(2, CHAT_TURNS_PER_MINUTE=0)  # 20 turns in a few seconds
    cookie = session_cookie_for(client, alice)
    with ChatSocket(a, cookie) as on_a, ChatSocket(b, cookie) as on_b:
        for i in range(20):
            conversation_id = str(conversation_of(alice, sim_model).public_id)
            open_conversation(on_b, conversation_id)
            text = f"Answer number {i}, all tokens at once."
            upstream.enqueue(Reply(text=text))
            on_a.send(type="send", conversation=conversation_id, text="Quick.")
            answer_id = on_a.wait_type("ack")["assistant_message"]["id"]
            assert on_a.wait_end(answer_id)["content"] == text  # ChatSocket checks every delta on the way
            assert on_b.wait_end(answer_id)["content"] == text


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_its_answer_interrupted_at_the_last_checkpoint_for_the_other_to_report(
    workers, client, alice, upstream, sim_model
):
    a, b = workers(2, CHAT_CHECKPOINT_INTERVAL=0.2, CHAT_STALE_AFTER=1.5, CHAT_SWEEP_INTERVAL=0.5)
    conversation_id = str(conversation_of(alice, sim_model).public_id)
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.02))
    cookie = session_cookie_for(client, alice)
    with ChatSocket(a, cookie) as on_a:
        on_a.send(type="send", conversation=conversation_id, text="Write a lot.")
        answer_id = on_a.wait_type("ack")["assistant_message"]["id"]
        wait_until(lambda: Message.objects.get(public_id=answer_id).content)  # a checkpoint
        a.kill()
    checkpoint = Message.objects.get(public_id=answer_id).content
    # The person reloads onto B: the snapshot shows the saved text, still streaming; nobody answers the
    # sync; B's sweeper finds the stale heartbeat and reports the answer interrupted, text kept.
    with ChatSocket(b, cookie) as on_b:
        snapshot = open_conversation(on_b, conversation_id)
        assert snapshot["messages"][-1]["content"] == checkpoint
        final = on_b.wait_end(answer_id, timeout=10)
    assert final["status"] == "interrupted" and final["content"] == checkpoint
    message = Message.objects.get(public_id=answer_id)
    assert message.status == "interrupted" and ANSWER.startswith(message.content) and message.content
    assert not Message.objects.filter(status__in=Message.ACTIVE_STATUSES).exists()


@pytest.mark.backends  # no second process needed: runs in both lanes
async def test_a_socket_that_misses_a_frame_asks_the_generator_for_the_rest_once(monkeypatch):
    from conversations.engine import consumer as consumers
    from conversations.engine import control

    asked = []

    async def ask_for_rest(message_id, reply_to, offset):
        asked.append((message_id, offset))

    monkeypatch.setattr(control, "ask_for_rest", ask_for_rest)
    consumer = consumers.ChatConsumer()
    consumer.channel_name = "specific.test!socket"
    consumer.known, consumer.sync_asked = {"m1": 5}, {}
    sent = []

    async def reply(frame):
        sent.append(frame)

    consumer.reply = reply

    def delta(offset, text):
        return {
            "type": "chat.frame",
            "frame": {"type": "delta", "message": "m1", "offset": offset, "text": text},
        }

    await consumer.chat_frame(delta(9, "four"))  # characters 5-8 never arrived
    await consumer.chat_frame(delta(13, "more"))  # still missing: no second request right away
    assert asked == [("m1", 5)] and sent == []
    await consumer.chat_frame(
        delta(5, "lostfour")
    )  # the generator's reply: from 5, overlapping the live text
    await consumer.chat_frame(delta(9, "four"))  # a late live frame already covered: dropped
    assert [(f["offset"], f["text"]) for f in sent] == [(5, "lostfour")]
    assert consumer.known == {"m1": 13}


# --- the Redis pub/sub channel layer (conversations/engine/layers.py). Each layer object stands for one process: it has
# its own connections to Redis.


def pubsub_layer(**config):
    from conversations.engine.layers import RedisPubSubChannelLayer

    return RedisPubSubChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], **config})


@pytest.fixture
async def processes():
    """`processes(n)`: n pub/sub layers, flushed (connections closed) at the end."""
    layers = []

    def make(count: int = 2, **config):
        made = [pubsub_layer(**config) for _ in range(count)]
        layers.extend(made)
        return made

    yield make
    for layer in layers:
        await layer.flush()


@pytest.fixture
def published(monkeypatch) -> list[str]:
    """The Redis channels every pub/sub layer publishes to, in order, from now on."""
    from conversations.engine import layers

    channels: list[str] = []
    publish = layers._PubSubShard.publish

    async def recording(self, channel, message, group=None):
        channels.append(channel)
        return await publish(self, channel, message, group)

    monkeypatch.setattr(layers._PubSubShard, "publish", recording)
    return channels


@needs_redis
@pytest.mark.backends
async def test_pubsub_a_group_add_is_in_effect_when_it_returns_and_one_senders_order_holds(processes):
    import asyncio

    receiver, sender = processes(2)
    for i in range(10):
        channel = await receiver.new_channel()
        await receiver.group_add(f"order{i}", channel)
        # At once, to the group and to the socket's own channel (a sync reply): received in the order sent.
        await asyncio.gather(
            *(
                sender.group_send(f"order{i}", {"type": "m", "n": n})
                if n % 3
                else sender.send(channel, {"type": "m", "n": n})
                for n in range(60)
            )
        )
        got = [(await asyncio.wait_for(receiver.receive(channel), 5))["n"] for _ in range(60)]
        assert got == list(range(60))
        await receiver.discard_channel(channel)


@needs_redis
@pytest.mark.backends
async def test_pubsub_discard_channel_leaves_no_subscription(processes, redis_client):
    (layer,) = processes(1)
    prefix = layer._kwargs["prefix"]
    before = subscriptions(redis_client, prefix)
    kept = await layer.new_channel()
    await layer.group_add("shared", kept)
    channel = await layer.new_channel()
    await layer.group_add("shared", channel)
    await layer.group_add("alone", channel)
    await layer.discard_channel(channel)
    await layer.discard_channel(channel)  # twice: nothing happens
    # `shared` still has a member in this process: still subscribed; `alone` and the channel are not. (The
    # layer's own channel, where other processes acknowledge its joining a group, stays.)
    own = layer._get_layer()._process_channel.encode()
    expected = sorted([*before, f"{prefix}__group__shared".encode(), kept.encode(), own])
    wait_until(lambda: subscriptions(redis_client, prefix) == expected, 5)
    assert channel not in layer._get_layer().channels


@needs_redis
@pytest.mark.backends
async def test_pubsub_delivered_waits_for_the_sockets_of_this_process_to_take_their_frames(processes):
    (layer,) = processes(1)
    channel = await layer.new_channel()
    await layer.group_add("delivered", channel)
    await layer.group_send("delivered", {"type": "end"})
    assert not await layer.delivered(0.3)  # back in this process, but its socket has not taken it
    assert (await layer.receive(channel))["type"] == "end"
    assert await layer.delivered(2)


@needs_redis
@pytest.mark.backends
async def test_pubsub_an_idle_receive_outlives_the_read_timeout(processes):
    # redis-py gives up on a read after socket_timeout; the subscriber connection must not (an idle socket's
    # receive failing would close its websocket).
    import asyncio

    receiver, sender = processes(2, hosts=[{"address": settings.REDIS_URL, "socket_timeout": 0.5}])
    channel = await receiver.new_channel()
    receiving = asyncio.ensure_future(receiver.receive(channel))
    await asyncio.sleep(2)
    assert not receiving.done()
    await sender.send(channel, {"type": "late"})
    assert (await asyncio.wait_for(receiving, 5))["type"] == "late"


@needs_redis
@pytest.mark.backends
async def test_pubsub_sites_on_other_redis_databases_do_not_share_groups(processes):
    # Pub/sub channels are server-wide; the layer names them after the database, as the core layer's keys are.
    import asyncio
    from urllib.parse import urlsplit

    url = urlsplit(settings.REDIS_URL)
    other_db = (int(url.path.strip("/") or 0) + 1) % 16
    (here,) = processes(1)
    (elsewhere,) = processes(1, hosts=[{"address": url._replace(path=f"/{other_db}").geturl()}])
    (same_site,) = processes(1)
    channel = await here.new_channel()
    await here.group_add("user.1", channel)
    await elsewhere.group_send("user.1", {"type": "other site"})
    await same_site.group_send("user.1", {"type": "this site"})
    assert (await asyncio.wait_for(here.receive(channel), 5))["type"] == "this site"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(here.receive(channel), 0.3)


@needs_redis
@pytest.mark.backends
async def test_pubsub_messages_for_this_process_alone_never_go_through_redis(processes, published):
    """engine/layers.py: a group whose members are all in this process, and a channel of this process, get
    their messages straight onto their queues: no PUBLISH, no round trip, nothing for Redis to hand back."""
    import asyncio

    (layer,) = processes(1)
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("conversation.local", first)
    await layer.group_add("conversation.local", second)
    published.clear()  # joining said hello: nobody else answered
    for n in range(5):
        await layer.group_send("conversation.local", {"type": "m", "n": n})
    await layer.send(first, {"type": "m", "n": 5})
    got_first = [(await asyncio.wait_for(layer.receive(first), 2))["n"] for _ in range(6)]
    got_second = [(await asyncio.wait_for(layer.receive(second), 2))["n"] for _ in range(5)]
    assert got_first == [0, 1, 2, 3, 4, 5] and got_second == [0, 1, 2, 3, 4]
    assert published == []
    # Once the group's last member here leaves, nothing of it stays (a group per answer would pile up).
    await layer.discard_channel(first)
    await layer.discard_channel(second)
    state = layer._get_layer()
    assert not state.shared and not state.hellos and not state.local_since


@needs_redis
@pytest.mark.backends
async def test_pubsub_a_process_joining_a_group_gets_all_sent_after_its_group_add_returns(processes):
    """Process A has a group to itself and delivers without publishing; B joins while A is sending. Every
    message A sends after B's group_add returns reaches B, in order (A learnt of B before it returned); once B
    leaves, A finds nobody else listening and keeps its messages local again."""
    import asyncio

    a, b = processes(2)
    on_a = await a.new_channel()
    await a.group_add("conversation.shared", on_a)
    sent = {"n": 0}
    stop = asyncio.Event()

    async def keep_sending():
        while not stop.is_set():
            await a.group_send("conversation.shared", {"type": "m", "n": sent["n"]})
            sent["n"] += 1
            await asyncio.sleep(0.001)

    sender = asyncio.ensure_future(keep_sending())
    await asyncio.sleep(0.05)
    on_b = await b.new_channel()
    await b.group_add("conversation.shared", on_b)
    joined_at = sent["n"]  # sent before group_add returned: may or may not reach B
    await asyncio.sleep(0.2)
    stop.set()
    await sender
    last = sent["n"] - 1
    got = []
    while not got or got[-1] != last:
        got.append((await asyncio.wait_for(b.receive(on_b), 5))["n"])
    after = [n for n in got if n >= joined_at]
    assert after == list(range(joined_at, last + 1)), "B missed or reordered messages sent after it joined"
    assert got == sorted(got)

    group_channel = a._get_layer()._get_group_channel_name("conversation.shared")
    assert group_channel in a._get_layer().shared
    await b.discard_channel(on_b)
    for _ in range(50):  # a PUBLISH that reaches only A marks the group A's alone again
        await a.group_send("conversation.shared", {"type": "m", "n": -1})
        if group_channel not in a._get_layer().shared:
            break
        await asyncio.sleep(0.02)
    assert group_channel not in a._get_layer().shared


@needs_redis
@pytest.mark.backends
async def test_pubsub_a_lost_hello_is_made_up_for_within_the_recheck_interval(processes, monkeypatch):
    """Should a joining process's hello be lost (a Redis connection dropped at that moment), the process that
    had the group to itself still publishes one message every LOCAL_RECHECK: its count of receivers shows the
    newcomer, and from then on every message is published."""
    import asyncio

    from conversations.engine import layers

    monkeypatch.setattr(layers._PubSubLoopLayer, "LOCAL_RECHECK", 0.2)
    a, b = processes(2)
    on_a = await a.new_channel()
    await a.group_add("conversation.unannounced", on_a)

    async def lost(self, group_channel):
        return None

    monkeypatch.setattr(layers._PubSubLoopLayer, "_announce", lost)
    on_b = await b.new_channel()
    await b.group_add("conversation.unannounced", on_b)
    for n in range(60):  # 0.6 s of messages, 10 ms apart
        await a.group_send("conversation.unannounced", {"type": "m", "n": n})
        await asyncio.sleep(0.01)
    got = []
    while not got or got[-1] != 59:
        got.append((await asyncio.wait_for(b.receive(on_b), 5))["n"])
    assert got[0] <= 30, "the group stayed unshared past the recheck interval"
    assert got == list(range(got[0], 60)), "once shared, every message reaches the other process"


@needs_redis
@pytest.mark.backends
async def test_pubsub_one_pattern_listener_hears_every_process_for_groups_without_members(
    processes, published, redis_client
):
    """engine/control.py's listener: one PSUBSCRIBE per process covers every answer's control group. A
    group_send to such a group is published once, and every listening process gets it, the sender included;
    other groups don't match, and no per-group subscription is made."""
    import asyncio

    one, two = processes(2)
    heard = {}
    for name, layer in (("one", one), ("two", two)):
        heard[name] = await layer.new_channel(prefix="control.")
        await layer.listen_to_groups("gen.*", heard[name])
    await two.group_send("gen.m1", {"type": "gen.stop", "message": "m1"})
    await one.group_send("genx", {"type": "gen.stop", "message": "not a control group"})
    await one.group_send("gen.m2", {"type": "gen.sync", "message": "m2", "reply_to": "x", "offset": 3})
    for name in ("one", "two"):
        layer = one if name == "one" else two
        got = [await asyncio.wait_for(layer.receive(heard[name]), 2) for _ in range(2)]
        assert [m["message"] for m in got] == ["m1", "m2"]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(layer.receive(heard[name]), 0.3)
    assert published.count(one._get_group_channel_name("gen.m1")) == 1
    assert not [c for c in redis_client.pubsub_channels() if b"gen." in c]


@needs_redis
@pytest.mark.backends
async def test_pubsub_a_join_in_the_background_hears_this_process_at_once_and_others_once_done(
    processes, monkeypatch
):
    """group_add_soon (a conversation a turn has just created): this process's messages reach the socket as
    soon as it returns. Another process that joins while the subscription is still on its way is not missed:
    once both joins are done, messages each process sends reach the other."""
    import asyncio

    from conversations.engine import layers

    subscribe = layers._PubSubShard.subscribe
    release = asyncio.Event()

    async def slow(self, channel, *, pattern=False):
        if "conv.new" in channel and self.channel_layer is here._get_layer():
            await release.wait()
        return await subscribe(self, channel, pattern=pattern)

    monkeypatch.setattr(layers._PubSubShard, "subscribe", slow)
    here, there = processes(2)
    mine, theirs = await here.new_channel(), await there.new_channel()
    joining = here.group_add_soon("conv.new", mine)
    await here.group_send("conv.new", {"type": "m", "n": 1})
    assert (await asyncio.wait_for(here.receive(mine), 2))["n"] == 1
    await there.group_add("conv.new", theirs)  # its hello finds nobody: `here` is not subscribed yet
    assert not joining.done()
    release.set()
    await asyncio.wait_for(joining, 5)  # subscribed, then said hello: `there` now knows of `here`
    await here.group_send("conv.new", {"type": "m", "n": 2})
    await there.group_send("conv.new", {"type": "m", "n": 3})
    # Each member also gets its own process's message (delivered locally): look for the other's.
    assert 2 in await asyncio.wait_for(numbers(there, theirs, 2), 2)
    assert 3 in await asyncio.wait_for(numbers(here, mine, 2), 2)


async def numbers(layer, channel, count: int) -> set[int]:
    return {(await layer.receive(channel))["n"] for _ in range(count)}


@needs_redis
@pytest.mark.backends
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("conversation", ["new", "existing"])
async def test_a_turn_is_acknowledged_without_waiting_for_redis_and_its_answer_ends_once_subscribed(
    upstream, sim_model, alice, monkeypatch, conversation
):
    """commands.start_turn: the socket joins its turn's conversation at once for this process's frames; the
    Redis subscription for other processes' completes meanwhile, and the ack and the answer's frames do not
    wait for it (in a burst that wait was most of the time to first token). The conversation is busy while
    the answer runs, so only this process sends to it; the final save, which ends that, waits for the
    subscription, so a turn another process sends next is heard."""
    import asyncio

    from conversations.engine import layers
    from tests.test_early_start import frames_until, open_socket

    subscribe = layers._PubSubShard.subscribe
    subscribed = asyncio.Event()

    async def slow(self, channel, *, pattern=False):
        if "__group__conv." in channel:
            await asyncio.sleep(1.5)
            await subscribe(self, channel, pattern=pattern)
            subscribed.set()
            return None
        return await subscribe(self, channel, pattern=pattern)

    turn = {"type": "send", "text": "Hi", "ref": "r1"}
    if conversation == "existing":
        existing = await sync_to_async(conversation_of)(alice, sim_model)
        turn["conversation"] = str(existing.public_id)
    monkeypatch.setattr(layers._PubSubShard, "subscribe", slow)
    upstream.enqueue(Reply(text="A quick answer.", ttft=0.0))
    communicator = await open_socket(alice)
    started = asyncio.get_running_loop().time()
    await communicator.send_json_to(turn)
    first = await frames_until(communicator, lambda f: f["type"] == "delta")
    assert first[0]["type"] == "ack"
    assert asyncio.get_running_loop().time() - started < 1.0 and not subscribed.is_set()
    end = (await frames_until(communicator, lambda f: f["type"] == "end"))[-1]
    assert subscribed.is_set() and end["message"]["status"] == "complete"
    assert end["message"]["content"] == "A quick answer."
    await communicator.disconnect()
