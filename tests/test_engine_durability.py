"""Answers survive a crashed process, and streaming costs a handful of database writes, not one per token."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from conversations import engine
from conversations.engine import generation, registry, sweeper
from conversations.engine.db_threads import on_saves_thread
from conversations.models import Message
from conversations.services.context import prepare
from conversations.services.turns import do_send_turn
from conversations.testing.upstream import Fault, Reply
from tests.conftest import session_cookie_for
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)


async def start_answer(turn, owner):
    """Start the answer of a turn saved with do_send_turn, as the websocket command does (in a process whose
    engine started: checkpoints run)."""
    engine.start()
    return generation.start(await sync_to_async(prepare)(turn.assistant, turn.conversation, owner))


def frames_sent(monkeypatch, kind: str) -> list[dict]:
    """The frames of `kind` ("delta", "end"...) sent to conversations from now on, in order (filled as they go)."""
    from conversations.engine import notify

    sent: list[dict] = []
    to_conversation = notify.to_conversation

    async def record(conversation_id, frame):
        if frame["type"] == kind:
            sent.append(frame)
        await to_conversation(conversation_id, frame)

    monkeypatch.setattr(notify, "to_conversation", record)
    return sent


LONG_ANSWER = " ".join(f"token{i}" for i in range(400))


def test_an_answer_cut_by_a_killed_process_is_marked_interrupted_with_its_text(
    crashable_daphne, client, alice, upstream, sim_model
):
    upstream.enqueue(Reply(text=LONG_ANSWER, token_delay=0.02))
    cookie = session_cookie_for(client, alice)
    with ChatSocket(crashable_daphne, cookie) as sock:
        sock.send(type="send", text="Write a lot.")
        answer_id = sock.wait_type("ack")["assistant_message"]["id"]
        deadline = time.monotonic() + 10
        while not Message.objects.get(public_id=answer_id).content:  # wait for a checkpoint
            assert time.monotonic() < deadline, "no checkpoint was saved"
            time.sleep(0.05)
        crashable_daphne.kill()
    saved = Message.objects.get(public_id=answer_id)
    assert saved.status == "streaming"

    crashable_daphne.start()
    with ChatSocket(crashable_daphne, cookie):  # the first socket starts the process's sweeper
        deadline = time.monotonic() + 10
        while Message.objects.get(public_id=answer_id).status == "streaming":
            assert time.monotonic() < deadline, "the dead generation was never marked interrupted"
            time.sleep(0.1)
    message = Message.objects.get(public_id=answer_id)
    assert message.status == "interrupted" and "regenerate" in message.error
    assert message.content and LONG_ANSWER.startswith(message.content)
    assert message.reserved_cost is None


def test_opening_a_conversation_marks_a_dead_answer_interrupted(live_server_daphne, client, alice, sim_model):
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Conversation

    conversation = Conversation.objects.create(owner=alice, model=sim_model)
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="streaming", content="Half an ans",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    conversation.current_leaf = answer
    conversation.save()
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="open", conversation=str(conversation.public_id))
        snapshot = sock.wait_type("conversation")
    assert snapshot["messages"][1]["status"] == "interrupted"
    assert snapshot["messages"][1]["content"] == "Half an ans"


async def test_a_live_answer_with_a_late_heartbeat_is_not_swept_by_its_own_process(
    upstream, alice, sim_model
):
    """Overload can delay an answer's checkpoints past CHAT_STALE_AFTER (bench/load.py at N = 500 did): the
    process running it knows it is alive, and must not send its tabs an early `end` as `interrupted`."""
    import asyncio
    from datetime import timedelta

    from django.utils import timezone

    answer = " ".join(f"t{i}" for i in range(20))
    upstream.enqueue(Reply(text=answer, ttft=0.5), Reply(text="A title"))
    turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Slow, please")
    task = await start_answer(turn, alice)
    await asyncio.sleep(0.1)
    assert turn.assistant.pk in registry.RUNNING
    long_ago = timezone.now() - timedelta(hours=1)
    await Message.objects.filter(pk=turn.assistant.pk).aupdate(heartbeat_at=long_ago)
    assert await sweeper.sweep_and_notify() == 0
    await task
    message = await Message.objects.aget(pk=turn.assistant.pk)
    assert message.status == "complete" and message.content == answer

    # The same stale row with no generation behind it (its process died) is swept.
    await Message.objects.filter(pk=turn.assistant.pk).aupdate(status="streaming", heartbeat_at=long_ago)
    assert await sweeper.sweep_and_notify() == 1
    assert (await Message.objects.aget(pk=turn.assistant.pk)).status == "interrupted"


async def test_frames_start_the_checkpoints_and_a_silent_answer_keeps_its_heartbeat(
    settings, upstream, alice, sim_model
):
    """engine/checkpoints.py: while the provider is silent (no frames), a timer refreshes the answer's heartbeat
    every two checkpoint intervals at most, so no process sweeps it; once text flows, the frames start the
    checkpoints and the partial text is saved before the answer ends."""
    settings.CHAT_CHECKPOINT_INTERVAL = 0.1
    upstream.enqueue(Reply(text=LONG_ANSWER, ttft=1.2, token_delay=0.01), Reply(text="A title"))
    turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Think before you answer")
    task = await start_answer(turn, alice)

    beats = set()
    silent_until = time.monotonic() + 1.0
    while time.monotonic() < silent_until:
        message = await Message.objects.aget(pk=turn.assistant.pk)
        assert not message.content
        beats.add(message.heartbeat_at)
        await asyncio.sleep(0.03)
    assert len(beats) >= 4, f"the heartbeat moved {len(beats) - 1} times in 1 s of silence"

    partial = ""
    while not task.done():
        message = await Message.objects.aget(pk=turn.assistant.pk)
        if message.status == Message.Status.STREAMING and len(message.content) > len(partial):
            partial = message.content
        await asyncio.sleep(0.05)
    await task
    assert partial and partial != LONG_ANSWER and LONG_ANSWER.startswith(partial)
    assert (await Message.objects.aget(pk=turn.assistant.pk)).content == LONG_ANSWER


async def test_a_500_token_answer_costs_a_handful_of_database_writes(upstream, alice, sim_model):
    writes: list[str] = []

    def count_writes(execute, sql, params, many, context):
        if sql.lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            writes.append(sql)
        return execute(sql, params, many, context)

    # Every ORM call of the engine runs on one of its two database threads: count on both connections.
    await sync_to_async(lambda: connection.execute_wrappers.append(count_writes))()
    await on_saves_thread(lambda: connection.execute_wrappers.append(count_writes))()
    try:
        answer = " ".join(f"t{i}" for i in range(500))
        upstream.enqueue(Reply(text=answer, token_delay=0.001), Reply(text="A title"))
        turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Count my writes")
        await (await start_answer(turn, alice))
    finally:
        await sync_to_async(lambda: connection.execute_wrappers.remove(count_writes))()
        await on_saves_thread(lambda: connection.execute_wrappers.remove(count_writes))()

    message = await Message.objects.aget(pk=turn.assistant.pk)
    assert message.status == "complete" and message.content == answer
    assert message.completion_tokens == 500
    # The turn (conversation, question, answer placeholder, current branch), a checkpoint or two, the final
    # save and the title: bounded whatever the length of the answer.
    assert len(writes) <= 9, writes


async def test_text_read_before_the_provider_falls_silent_still_goes_out(
    upstream, alice, sim_model, monkeypatch
):
    """Paced reads (conversations/llm/pacing.py): the reader keeps text back until the next frame is due. If the
    provider then stalls, no further read calls the pacer: the text must still go out at the frame boundary,
    not when the stall ends. Slow frame sends make tokens arrive while a frame is being sent, which is when a
    read brings text before its frame is due."""
    from conversations.engine import notify

    tokens = ["The ", "answer ", "starts ", "here ", "and ", "goes ", "on."]
    upstream.enqueue(
        Reply(tokens=tokens, token_delay=0.012, fault=Fault.STALL, fault_after=4, stall_seconds=3),
        Reply(text="A title"),
    )
    turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Take your time")
    sent = {"text": ""}
    to_conversation = notify.to_conversation

    async def slow_frames(conversation_id, frame):
        await asyncio.sleep(0.015)
        if frame["type"] == "delta":
            sent["text"] = sent["text"][: frame["offset"]] + frame["text"]
        await to_conversation(conversation_id, frame)

    monkeypatch.setattr(notify, "to_conversation", slow_frames)
    task = await start_answer(turn, alice)
    # The stall lasts 3 s: what came before it is due one frame interval (40 ms) after it arrived.
    deadline = time.monotonic() + 1.5
    while sent["text"] != "The answer starts here " and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sent["text"] == "The answer starts here "
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_steady_stream_s_frames_carry_the_text_their_read_brought(
    upstream, alice, sim_model, monkeypatch, settings
):
    """Paced reads: at a frame's due time the reader takes what arrived meanwhile, and that read's text goes
    out in that frame. The timer kept for a provider that falls silent must not beat the read to it: it did
    (timers of one instant run in no set order) and sent the previous read's text instead, one interval late,
    from a task of its own. Here a provider that never pauses leaves that timer nothing to send."""

    settings.CHAT_FRAME_INTERVAL = 0.1
    settings.CHAT_QUIET_FRAME_INTERVAL = 0
    words = [f"w{i} " for i in range(60)]
    upstream.enqueue(Reply(tokens=words, token_delay=0.01), Reply(text="A title"))
    turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Keep going")
    by_timer = []
    flush_later = generation.Generation._flush_later

    def timed_out(self):
        if self.pending and not self.finished:
            by_timer.append("".join(self.pending))
        flush_later(self)

    monkeypatch.setattr(generation.Generation, "_flush_later", timed_out)
    deltas = frames_sent(monkeypatch, "delta")
    await (await start_answer(turn, alice))
    assert "".join(frame["text"] for frame in deltas) == "".join(words)
    assert len(deltas) >= 4  # about one a tenth of a second over 0.6 s
    assert len(by_timer) <= 1, by_timer  # a loop late enough for the timer to fire first, once at most


async def test_running_answers_send_fewer_frames_while_turns_wait_to_start(settings):
    """engine/generation.frame_interval: while a burst of turns waits for admission, running answers' frames
    come at most every ADMISSION_FRAME_INTERVAL, so the event loop starts the waiting answers first; a turn
    or two being started slows nothing; after the burst, CHAT_FRAME_INTERVAL again."""
    from channels.layers import get_channel_layer

    settings.CHAT_FRAME_INTERVAL = 0.04
    settings.CHAT_QUIET_FRAME_INTERVAL = 0  # the quiet process's longer frames: the test below
    layer = get_channel_layer()
    assert generation.frame_interval(layer) == 0.04
    registry.ADMITTING += 2
    try:
        assert generation.frame_interval(layer) == 0.04
        registry.ADMITTING += generation.ADMISSION_BACKLOG
        assert generation.frame_interval(layer) == generation.ADMISSION_FRAME_INTERVAL == 0.25
    finally:
        registry.ADMITTING -= 2 + generation.ADMISSION_BACKLOG
    assert generation.frame_interval(layer) == 0.04
    settings.CHAT_FRAME_INTERVAL = 0.1  # read once, and again when the setting changes
    assert generation.frame_interval(layer) == 0.1


def test_answers_frames_fall_on_their_slots_of_one_process_clock_interval_apart():
    """engine/generation.next_frame_at: the first frame goes at once; after it, whenever an answer started,
    its frames fall on its slot's ticks of the process's clock (the interval's FRAME_SLOT steps; one wake-up
    serves every answer of a slot), each at least half an interval after the one before and then exactly an
    interval apart. Answers in different slots are spread over the interval instead of all due at once."""
    step = generation.FRAME_SLOT
    for interval in (0.04, 0.11, 0.25):
        slots = round(interval / step)
        assert generation.next_frame_at(-math.inf, interval, 3) == -math.inf
        for slot in (0, 1, 7, 1001):
            offset = (slot % slots) * interval / slots
            for first_frame in (10.013, 10.031, 7.5, 123456.7891):
                ticks, flushed = [], first_frame
                for _ in range(6):
                    due = generation.next_frame_at(flushed, interval, slot)
                    ticks.append(due)
                    flushed = due + 0.0007  # the frame goes out just after it was due
                assert all(
                    abs((t - offset) / interval - round((t - offset) / interval)) < 1e-6 for t in ticks
                )
                assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks)  # on the clock's ticks
                assert ticks[0] - first_frame >= interval / 2
                assert all(abs((b - a) - interval) < 1e-6 for a, b in itertools.pairwise(ticks))
        # One frame time per slot within an interval: the answers' frames are spread, not gathered.
        due_times = {
            round(generation.next_frame_at(5.0, interval, slot) % interval, 6) for slot in range(slots)
        }
        assert len(due_times) == slots


def test_frame_intervals_are_whole_ticks_of_the_frame_clock(settings):
    """engine/generation.frame_interval: stretched under load, it stays a whole number of FRAME_SLOT ticks, so
    answers that computed it a moment apart (a few more or fewer running) keep to the same ticks."""
    from channels.layers import InMemoryChannelLayer

    from conversations.engine import registry

    settings.CHAT_FRAME_INTERVAL = 0.04
    settings.CHAT_QUIET_FRAME_INTERVAL = 0.2
    layer = InMemoryChannelLayer()
    budget = generation.PROCESS_FRAMES_PER_SECOND["in-memory"]
    saved = dict(registry.RUNNING)
    try:
        for running in (0, 1, 2, 3, 6, 79, 81, 219, 220, 221, 500):
            registry.RUNNING.clear()
            registry.RUNNING.update({-(i + 1): object() for i in range(running)})
            interval = generation.frame_interval(layer)
            ticks = interval / generation.FRAME_SLOT
            assert abs(ticks - round(ticks)) < 1e-9
            soft = min(running / generation.SOFT_FRAMES_PER_SECOND, generation.SOFT_STRETCH)
            expected = max(0.04, soft, running / budget, 0.2 / max(1, running))
            assert expected - 1e-9 <= interval < expected + generation.FRAME_SLOT
    finally:
        registry.RUNNING.clear()
        registry.RUNNING.update(saved)


def test_many_answers_send_frames_within_a_soft_budget_then_the_hard_one(settings):
    """engine/generation.frame_interval: past about 40 running answers, frames are stretched so the process
    sends about SOFT_FRAMES_PER_SECOND, but never more than SOFT_STRETCH apart for it; past that, the hard
    budget (PROCESS_FRAMES_PER_SECOND) stretches them further."""
    from channels.layers import InMemoryChannelLayer

    from conversations.engine import registry

    settings.CHAT_FRAME_INTERVAL = 0.04
    settings.CHAT_QUIET_FRAME_INTERVAL = 0.2
    layer = InMemoryChannelLayer()
    saved = dict(registry.RUNNING)
    try:
        intervals = {}
        for running in (20, 40, 120, 150, 200, 300, 400):
            registry.RUNNING.clear()
            registry.RUNNING.update({-(i + 1): object() for i in range(running)})
            intervals[running] = round(generation.frame_interval(layer), 6)
    finally:
        registry.RUNNING.clear()
        registry.RUNNING.update(saved)
    # 1,000 frames a second from 40 answers to 150; then 150 ms apart; 2,000 a second from 300 on.
    assert intervals == {20: 0.04, 40: 0.04, 120: 0.12, 150: 0.15, 200: 0.15, 300: 0.15, 400: 0.2}


def test_a_quiet_process_sends_a_lone_answer_fewer_larger_frames(settings):
    """engine/generation.frame_interval: with N answers running, frames are at least
    CHAT_QUIET_FRAME_INTERVAL / N apart (a frame of an otherwise idle process costs about ten times one of a
    busy process); from CHAT_QUIET_FRAME_INTERVAL / CHAT_FRAME_INTERVAL answers on, CHAT_FRAME_INTERVAL
    again; 0 turns it off."""
    from channels.layers import InMemoryChannelLayer

    from conversations.engine import registry

    settings.CHAT_FRAME_INTERVAL = 0.04
    settings.CHAT_QUIET_FRAME_INTERVAL = 0.2
    layer = InMemoryChannelLayer()
    saved = dict(registry.RUNNING)

    def interval_with(running: int) -> float:
        registry.RUNNING.clear()
        registry.RUNNING.update({-(i + 1): object() for i in range(running)})
        return generation.frame_interval(layer)

    try:
        assert [round(interval_with(n), 6) for n in (0, 1, 2, 4, 5, 6, 40)] == [
            0.2, 0.2, 0.1, 0.05, 0.04, 0.04, 0.04,
        ]  # fmt: skip
        settings.CHAT_QUIET_FRAME_INTERVAL = 0  # read again when the setting changes
        assert [round(interval_with(n), 6) for n in (0, 1, 2)] == [0.04, 0.04, 0.04]
    finally:
        registry.RUNNING.clear()
        registry.RUNNING.update(saved)


def test_a_serving_process_tunes_the_cycle_collector_once(monkeypatch, settings):
    """engine._tune_gc: on the engine's start, what start-up loaded is frozen and the young generation's
    threshold raised (CHAT_GC_GEN0_THRESHOLD); once per process however many loops start; 0 leaves Python's
    defaults alone."""
    import gc

    monkeypatch.setattr(engine, "_gc_tuned", False)
    before = gc.get_threshold()
    settings.CHAT_GC_GEN0_THRESHOLD = 0
    engine._tune_gc()
    assert gc.get_threshold() == before and not engine._gc_tuned
    settings.CHAT_GC_GEN0_THRESHOLD = 12_345
    try:
        engine._tune_gc()
        assert gc.get_threshold()[0] == 12_345 and gc.get_freeze_count() > 0
        settings.CHAT_GC_GEN0_THRESHOLD = 54_321
        engine._tune_gc()  # once per process
        assert gc.get_threshold()[0] == 12_345
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


async def test_an_unforeseen_failure_mid_answer_ends_it_at_once_with_its_text(
    upstream, alice, sim_model, monkeypatch
):
    """A bug or an unexpected exception below the generation (not a provider error, which the client turns
    into an LLMError) must not leave the answer pending until the sweeper calls it interrupted a minute later:
    it ends at once as an error, with the text streamed so far saved, and the tabs get its `end`."""
    from conversations.services import answers

    words = [f"w{i} " for i in range(60)]
    upstream.enqueue(Reply(tokens=words, token_delay=0.01), Reply(text="A title"))
    turn = await sync_to_async(do_send_turn)(alice, conversation_id=None, text="Go on")
    add_text = generation.Generation._add_text
    calls = {"n": 0}

    def failing_add_text(self, text):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("a bug in the frame path")
        return add_text(self, text)

    ends = frames_sent(monkeypatch, "end")
    monkeypatch.setattr(generation.Generation, "_add_text", failing_add_text)
    started = time.monotonic()
    await asyncio.wait_for(await start_answer(turn, alice), timeout=5)
    assert time.monotonic() - started < 3
    message = await Message.objects.aget(pk=turn.assistant.pk)
    assert message.status == "error" and message.error == answers.FAILED_ERROR
    assert "a bug in the frame path" in message.error_detail
    assert message.content and "".join(words).startswith(message.content)
    assert [end["message"]["status"] for end in ends] == ["error"]
