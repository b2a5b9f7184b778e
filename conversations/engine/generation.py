"""Running an answer: stream it from the provider, fan it out to every open tab, save it, survive faults.

A generation is an asyncio task owned by the process, not by the socket that asked for it, so closing the
tab does not stop the answer. While it runs:

- text is coalesced into `delta` frames, each carrying the message id and the character offset it starts
  at, sent to the conversation's group. The first text goes out at once (time to first token); after that
  at most one frame every CHAT_FRAME_INTERVAL (sooner past CHAT_FRAME_MAX_CHARS), on a clock all answers
  share, in slots (`next_frame_at`: one wake-up of the process serves every answer of a slot). Between frames the
  provider's socket is not read at all (paced reads: the generation is the client's pacer, `idle`), so a
  frame's tokens are read in one go instead of waking the process once per token. The interval is stretched
  under load so that the whole process sends at most PROCESS_FRAMES_PER_SECOND frames: a frame costs the
  same CPU whatever its size, so many concurrent answers get fewer, larger frames instead of a backlog. It is
  stretched when the process is quiet too (CHAT_QUIET_FRAME_INTERVAL): see frame_interval;
- the partial text and a heartbeat are saved every CHAT_CHECKPOINT_INTERVAL with every other running answer's
  (engine/checkpoints.py, started by a frame when one is due), never per token, without holding up the
  frames; the final save runs on the answer-saves thread (engine/db_threads.py), never behind a burst of new
  turns;
- `stop` and `sync` requests from any socket in any process reach it through engine/control.py (one
  listener per process, not one per answer). A `sync` is answered with the text the asker lacks, sent in
  order with the live frames, which is what makes resume exact.

Offsets count Unicode code points (Python `len`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from conversations import metrics
from conversations.engine import checkpoints, control, frames, notify, registry, titles
from conversations.engine.db_threads import on_saves_thread
from conversations.llm import errors as llm_errors
from conversations.llm.client import ClientConfig, open_stream
from conversations.llm.events import Finish, RefusalDelta, Started, StreamResult, TextDelta, Usage
from conversations.models import Message
from conversations.services import answers
from conversations.services.answers import Outcome
from conversations.services.context import Prepared

logger = logging.getLogger(__name__)

# Frames a second for all the answers of one process together (see the module docstring), about half a core
# of frame handling (bench/load.py): with the in-memory layer a frame costs about 0.25 ms of CPU; through
# Redis pub/sub (engine/layers.py) about 0.15 ms more for publishing and receiving it. Below budget
# times CHAT_FRAME_INTERVAL concurrent answers, every answer gets frames at that interval.
PROCESS_FRAMES_PER_SECOND = {"in-memory": 2000, "redis": 1500}
# Below that budget, a softer one: frames are stretched to keep the process under SOFT_FRAMES_PER_SECOND as long
# as that keeps them at most SOFT_STRETCH apart. From about 40 running answers on, 40 ms frames were already
# 2,000 a second, a frame with its paced read about 0.1 ms of the event loop: a fifth of a core spent on
# frames at 60 turns a second, where the loop was most at risk of falling behind (bench/README.md, "Session
# 16": 60 turns/s pairs, added TTFT p95 135 -> 67 ms and 96 -> 78 ms, 1.4-1.9 ms less CPU per answer).
# The text reaches the client up to an interval later (completion lag p95 at 60 turns/s 147 -> 148 ms and
# 92 -> 150 ms); the browser still reveals it at a steady pace.
SOFT_FRAMES_PER_SECOND = 1000
SOFT_STRETCH = 0.15

TEXT_EVENTS = (TextDelta, RefusalDelta)  # the events whose text is the answer's

# Seconds between two frames of a running answer while at least ADMISSION_BACKLOG turns wait to be started
# (registry.ADMITTING): a burst. A turn or two being started, the everyday case, slows nothing.
ADMISSION_FRAME_INTERVAL = 0.25
ADMISSION_BACKLOG = 8


# CHAT_FRAME_INTERVAL and CHAT_QUIET_FRAME_INTERVAL, read once: frame_interval runs for every frame of every
# answer, and a read through Django's settings proxy was a few percent of the event loop at 200 answers (reset
# when tests change them).
_intervals: tuple[float, float] | None = None


@receiver(setting_changed)
def _forget_frame_interval(setting: str, **kwargs) -> None:
    global _intervals
    if setting in {"CHAT_FRAME_INTERVAL", "CHAT_QUIET_FRAME_INTERVAL"}:
        _intervals = None


def frame_interval(layer) -> float:
    """Seconds between two frames of one answer: CHAT_FRAME_INTERVAL; longer when many answers run (the soft
    budget up to SOFT_STRETCH, then PROCESS_FRAMES_PER_SECOND), and
    ADMISSION_FRAME_INTERVAL while a burst of turns waits to start; longer when very few run (below). An
    answer's first frame is never held.

    A quiet process: with N answers running, frames are at least CHAT_QUIET_FRAME_INTERVAL / N apart (200 ms
    for a lone answer, 100 ms for two, CHAT_FRAME_INTERVAL from five on). A frame of a process that sleeps
    between frames costs about a millisecond of CPU (its wake-up from idle, cold caches: measured, 1 ms at N=1
    against 0.1 ms a frame at N=200), so a lone 200-token answer cost 45-65 ms at 40 ms frames and about 20 at
    200 ms (bench/README.md, "Session 12"). The user sees no lumps: the browser reveals each frame's text at a
    steady pace over the interval (static/js/chat/thread.js); the text lands up to one interval later."""
    global _intervals
    if _intervals is None:
        _intervals = (settings.CHAT_FRAME_INTERVAL, settings.CHAT_QUIET_FRAME_INTERVAL)
    base, quiet = _intervals
    running = len(registry.RUNNING)
    budget = PROCESS_FRAMES_PER_SECOND["in-memory" if isinstance(layer, InMemoryChannelLayer) else "redis"]
    soft = min(running / SOFT_FRAMES_PER_SECOND, SOFT_STRETCH)
    interval = max(base, soft, running / budget, quiet / max(1, running))
    if registry.ADMITTING >= ADMISSION_BACKLOG:
        interval = max(interval, ADMISSION_FRAME_INTERVAL)
    # A whole number of the clock's ticks: else the answers that computed it a moment apart, with a few more or
    # fewer running, would keep to different ticks (next_frame_at).
    return math.ceil(interval / FRAME_SLOT - 1e-9) * FRAME_SLOT


# The process's frame clock has a tick every FRAME_SLOT seconds; each answer keeps to one tick of every
# interval (its slot: `slot` in next_frame_at), so the answers' frames are spread over the interval in groups
# instead of all falling on one tick. One tick per answer (each with its own phase) meant a wake-up of the
# process for every frame, paid at nearly the price of a frame at N=1; one tick for all of them (session 10)
# gathered a whole interval's frames into one pass of the event loop, 25-60 ms at 100 turns/s, and every new
# turn and first token that arrived meanwhile waited for it (bench/README.md, "Session 11").
FRAME_SLOT = 0.01


def next_frame_at(last_flush: float, interval: float, slot: int = 0) -> float:
    """When an answer's next frame is due (loop time): the first tick of its slot at least half an interval
    after its last frame, so frames stay `interval` apart. An interval has `interval / FRAME_SLOT` slots (at
    least one); `slot` is any integer (the answer's number), taken modulo their count. Every answer in the same
    slot is due on the same ticks, and one wake-up of the event loop serves all of them. The first frame (no
    frame yet) is due at once."""
    if last_flush == -math.inf:
        return last_flush
    slots = max(1, round(interval / FRAME_SLOT))
    offset = (slot % slots) * interval / slots
    return math.ceil((last_flush + interval / 2 - offset) / interval) * interval + offset


_slots = itertools.count()


def start(
    prepared: Prepared, received_at: float | None = None, session_key: str | None = None
) -> asyncio.Task:
    """Start answering the placeholder `prepared.message` in the background. Call from the event loop.
    `received_at`: when the turn's frame arrived (time.monotonic()), for the added-TTFT metric.
    `session_key`: the session that asked, so the answer stops when that session ends (engine/revocation.py)."""
    return start_held(prepared, received_at, held=False, session_key=session_key).task


def start_held(
    prepared: Prepared,
    received_at: float | None = None,
    *,
    held: bool = True,
    session_key: str | None = None,
) -> Generation:
    """Like `start`, for a turn whose transaction has not committed yet (engine/admission.py): the request
    leaves now, while frames and saves wait for `release()` (the turn committed and acknowledged); `abandon()`
    if it never commits. The provider thinks for 200 ms or more, which hides the wait."""
    generation = Generation(prepared)
    generation.received_at = received_at or time.monotonic()
    generation.session_key = session_key
    if held:
        generation.gate = generation.loop.create_future()
    loop = generation.loop
    if not registry.draining():  # else run() ends it at once: SIGTERM arrived, start nothing new
        # The request's task starts now, not from run()'s first step: that was one more pass of a busy event
        # loop (5-10 ms at 80 turns/s) before the request could leave (bench/README.md, "Session 14").
        generation.reader = loop.create_task(generation._read(), name=f"answer-{prepared.message_id}")
    task = loop.create_task(generation.run(), name=f"generation-{prepared.message_id}")
    generation.task = task
    # Stop and sync requests reach it from now on (before its acknowledgement gives anyone its id), until its
    # task ends however it ends (abandoned before it ran included).
    control.add(generation)
    task.add_done_callback(lambda _t: control.discard(generation))
    if prepared.message_pk is not None:  # else its turn's batch has not inserted it yet: register() then
        generation.register()
    metrics.stream_started()
    task.add_done_callback(metrics.stream_ended)
    return generation


class Generation:
    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.message_id = prepared.message_id
        self.conversation_id = prepared.conversation_id
        self.task: asyncio.Task | None = None
        self.layer = get_channel_layer()
        self.sent_text = ""  # broadcast so far
        self.pending: list[str] = []  # received, not yet broadcast
        self.pending_chars = 0
        self.lock = asyncio.Lock()  # one frame at a time: keeps sync replies in order with live frames
        self.loop = asyncio.get_running_loop()
        self.last_flush = -float("inf")  # loop time the last frame was cut: the first text goes out at once
        self.due = -float("inf")  # loop time the next frame is due: next_frame_at, once per frame
        self.flush_timer: asyncio.TimerHandle | None = None  # the next coalesced frame, when one is due
        self.flush_tasks: set[asyncio.Task] = set()
        self.paced = False  # the client calls `idle` between reads: frames are cut there, not by timers
        self.reader: asyncio.Task | None = None
        self.session_key: str | None = None  # the session that asked (engine/revocation.py)
        self.received_at = 0.0  # when the turn's frame arrived; requested_at: when its request started
        self.requested_at = 0.0
        self.result: StreamResult | None = None  # the provider's side of the answer, once a stream opened
        self.stop_requested = False
        self.shutdown_requested = False
        self.finished = False
        self.frame_max_chars = settings.CHAT_FRAME_MAX_CHARS  # read per token: not through the settings proxy
        self.slot = next(_slots)  # its ticks on the frame clock (next_frame_at)
        self.title_wanted = prepared.needs_title  # a first answer: titled once it has about a sentence
        # Set while the turn's transaction may still roll back (start_held): no frame and no save before it
        # is done; cancelled by abandon().
        self.gate: asyncio.Future[None] | None = None

    # --- the turn's commit ------------------------------------------------------------------------------

    @property
    def message_pk(self) -> int | None:
        """The answer's row; None until its turn's batch has inserted it (a send's request leaves first)."""
        return self.prepared.message_pk

    def register(self) -> None:
        """Running in this process, by its row's pk (registry.RUNNING: checkpoints, Stop, the sweep, drain),
        until its task ends. Once its row exists; not if it ended already."""
        pk, task = self.message_pk, self.task
        if pk is None or task is None or task.done() or registry.RUNNING.get(pk) is self:
            return
        registry.RUNNING[pk] = self
        task.add_done_callback(lambda _t: registry.RUNNING.pop(pk, None))

    def adopt(self, prepared: Prepared) -> None:
        """An early answer (engine/send_ahead.py) becomes its turn's: `prepared` is what the turn's batch
        prepared, the same request, with the turn's own rows (saved or about to be)."""
        self.prepared = prepared
        self.title_wanted = prepared.needs_title
        if prepared.message_pk is not None:
            self.register()

    def release(self) -> None:
        """The turn is committed and acknowledged: frames and saves may go."""
        if self.gate is not None and not self.gate.done():
            self.gate.set_result(None)

    def abandon(self) -> None:
        """The turn was rolled back: stop at once, write nothing, send nothing. Once: a second cancel would
        interrupt the first one's clean-up, which closes the provider's connection."""
        if self.gate is None or self.gate.done():
            return
        self.gate.cancel()
        if self.task is not None:
            self.task.cancel()
        if self.reader is not None:  # it may not have been awaited yet: run() had not started
            self.reader.cancel()

    @property
    def admitted(self) -> bool:
        return self.gate is None or (self.gate.done() and not self.gate.cancelled())

    async def _admitted(self) -> None:
        """Wait for release() (raises CancelledError after abandon())."""
        if self.gate is not None and not self.gate.done():
            await asyncio.shield(self.gate)
        if self.gate is not None and self.gate.cancelled():
            raise asyncio.CancelledError("the turn was rolled back")

    # --- text and frames --------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return self.sent_text + "".join(self.pending)

    def _add_text(self, text: str) -> bool:
        """Queue streamed text. True: flush now (the first text, or a full frame); else the next frame
        boundary will: `idle` when reads are paced, a timer otherwise."""
        self.pending.append(text)
        self.pending_chars += len(text)
        if self.pending_chars >= self.frame_max_chars:
            return True
        if self.paced:
            # The frame is cut by idle(), once the whole read is handed over: cut here, at the read's first
            # token, the rest of what that read brought would wait a whole interval for the next frame.
            return False
        if self.flush_timer is None:
            wait = self.due - self.loop.time()
            if wait <= 0:
                return True
            self.flush_timer = self.loop.call_later(wait, self._flush_later)
        return False

    async def idle(self) -> float:
        """The completion client's pacer (conversations/llm/pacing.py): it has handed over every token it read
        and would wait for the network. Send the frame if one is due, and hold the socket's reads until the
        next is: tokens arriving meanwhile wait in the kernel and wake nothing, then one read takes them all."""
        self.paced = True
        if self.pending and self.loop.time() >= self.due:
            await self._flush()
        due = self.due
        if self.pending and self.flush_timer is None:
            # Text kept back for the next frame. Normally the read at `due` brings more and its idle() cuts
            # the frame (and cancels this timer); but if the provider falls silent there (a stall, a slow
            # tool call), nothing calls idle() again until bytes come: the timer sends what we have. It is set
            # a tick after `due`: on the same tick it fired before the read (timers of one instant run in no
            # set order), and every frame then went out from a timer and a task of its own, with the text of
            # the read before, an interval late.
            self.flush_timer = self.loop.call_at(due + FRAME_SLOT, self._flush_later)
        return due

    def _flush_later(self) -> None:
        self.flush_timer = None
        if self.pending and not self.finished:
            task = self.loop.create_task(self._flush())
            self.flush_tasks.add(task)
            task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task) -> None:
        self.flush_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the answer goes on; its tabs resync
            logger.error("a frame of answer %s failed", self.message_pk, exc_info=task.exception())

    async def _flush(self) -> None:
        await self._admitted()
        async with self.lock:
            if not self.pending:
                return
            if self.flush_timer is not None:
                self.flush_timer.cancel()
                self.flush_timer = None
            metrics.frame_sent(len(self.pending))  # text deltas in this frame: the tokens
            chunk = "".join(self.pending)
            offset = len(self.sent_text)
            self.pending.clear()
            self.pending_chars = 0
            self.sent_text += chunk
            self.last_flush = self.loop.time()
            # While a burst of turns waits to start, every answer keeps to one slot: their frames then cost
            # one wake-up an interval, and the loop's time goes to starting the burst (bench/README.md,
            # "Session 11": 25 slots of a 250 ms interval cost 10% more CPU and request time in a burst).
            bursting = registry.ADMITTING >= ADMISSION_BACKLOG
            self.due = next_frame_at(
                self.last_flush, frame_interval(self.layer), 0 if bursting else self.slot
            )
            await notify.to_conversation(
                self.conversation_id, frames.delta(self.conversation_id, self.message_id, offset, chunk)
            )
            if not offset:  # the answer's first frame: its time to first token
                metrics.first_frame(self.received_at, self.requested_at, self.last_flush)
            checkpoints.frame_sent(self.loop, self.last_flush)  # the process's checkpoint, if one is due
            if self.title_wanted and titles.answer_is_enough(self.sent_text):  # once per frame, not per token
                self.title_wanted = False
                titles.start(self.prepared, self.result, self.sent_text)

    async def answer_sync(self, reply_to: str, offset: int) -> None:
        """Send socket `reply_to` the text from `offset` on (engine/control.py), in order with live frames."""
        async with self.lock:
            offset = max(0, min(offset, len(self.sent_text)))
            frame = frames.delta(self.conversation_id, self.message_id, offset, self.sent_text[offset:])
            try:
                await notify.to_socket(reply_to, frame)
            except ChannelFull:  # that socket is far behind; it asks again at its next gap
                logger.warning(
                    "sync reply for answer %s dropped: the asking socket's channel is full", self.message_pk
                )

    async def _retrying(self, attempt: int, attempts: int, provider: str) -> None:
        """Before the first token, the provider failed and is asked again: every tab says so."""
        await self._admitted()  # like every frame of the answer: after the turn's acknowledgement
        await notify.to_conversation(
            self.conversation_id,
            frames.retrying(self.conversation_id, self.message_id, attempt, attempts, provider),
        )

    async def _end(self, message: dict) -> None:
        await notify.to_conversation(self.conversation_id, frames.end(self.conversation_id, message))

    # --- background helpers ----------------------------------------------------------------------------

    @property
    def streaming(self) -> bool:
        """Reading from the provider: engine/checkpoints.py saves its text with the others' every interval."""
        return self.reader is not None and not self.finished and self.admitted

    def request_stop(self) -> None:
        """Stop reading: the answer ends `cancelled`, its text kept. From engine/control.py (a Stop from any
        socket in any process) or a revocation (engine/revocation.py). Once: a second cancel
        would interrupt the first one's clean-up, which closes the provider's connection."""
        if self.stop_requested:
            return
        self.stop_requested = True
        if self.reader is not None:
            self.reader.cancel()

    def interrupt(self) -> None:
        """The process is shutting down: stop reading and save the answer as interrupted, text kept."""
        self.shutdown_requested = True
        if self.reader is not None:
            self.reader.cancel()

    # --- the run ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.reader is None:  # SIGTERM came first (start_held): nothing new in a process that exits
            await self._admitted()
            await notify.joins_done(self.conversation_id)  # see below
            failed = await on_saves_thread(answers.fail)(self.message_pk, answers.RESTARTING_ERROR)
            await self._end(failed)
            return
        started = time.monotonic()
        try:
            if self.stop_requested or self.shutdown_requested:  # arrived before the reader existed
                self.reader.cancel()
            try:
                outcome = await self.reader
            except asyncio.CancelledError:
                if self.stop_requested:
                    outcome = Outcome(Message.Status.CANCELLED, finish_reason="stopped")
                elif self.shutdown_requested:  # SIGTERM's grace period is over: save what we have
                    outcome = Outcome(Message.Status.INTERRUPTED, "interrupted", answers.INTERRUPTED_ERROR)
                else:
                    raise  # cancelled from outside: leave it to the sweep (interrupted)
            except Exception as exc:  # a bug or an unforeseen failure below us: end the answer now, text kept
                logger.exception("generation %s failed", self.message_pk)
                outcome = Outcome(Message.Status.ERROR, error=answers.FAILED_ERROR, detail=repr(exc))
        finally:
            self.finished = True
            if self.flush_timer is not None:
                self.flush_timer.cancel()
            await asyncio.gather(*self.flush_tasks, return_exceptions=True)
        await self._admitted()
        await self._flush()
        duration = time.monotonic() - started
        # The final save ends the conversation's busy state, after which another process may send to it (a
        # turn from a tab there): by then every socket here that joined it with this turn must hear that.
        await notify.joins_done(self.conversation_id)
        final = await on_saves_thread(answers.finish)(
            self.text, outcome, self.result, self.prepared, duration
        )
        await self._end(final)
        if self.title_wanted and outcome.status == Message.Status.COMPLETE:  # too short to title earlier
            await titles.write_title(self.prepared, self.result)

    async def _read(self) -> Outcome:
        prepared = self.prepared
        self.requested_at = time.monotonic()
        try:
            config = ClientConfig.from_settings()
            async with open_stream(
                prepared.request, prepared.routes, config=config, pacer=self, on_retry=self._retrying
            ) as stream:
                self.result = stream.result
                async for event in stream:
                    if type(event) in TEXT_EVENTS:
                        if self._add_text(event.text):
                            await self._flush()
                    elif isinstance(event, Started):
                        await self._admitted()
                        await notify.to_conversation(
                            self.conversation_id,
                            frames.status(self.conversation_id, self.message_id, Message.Status.STREAMING,
                                          event.provider_name, event.model_id),
                        )  # fmt: skip
                    elif isinstance(event, Finish | Usage):
                        pass  # both end up in stream.result
                result = stream.result
        except llm_errors.LLMError as exc:
            logger.warning("generation %s failed: %s", self.message_pk, exc)
            reason = "truncated" if isinstance(exc, llm_errors.UpstreamTruncated) else ""
            return Outcome(
                Message.Status.ERROR, finish_reason=reason, error=exc.user_message, detail=str(exc)
            )
        if result.truncated:
            return Outcome(
                Message.Status.ERROR,
                finish_reason="truncated",
                error="The connection to the provider ended before the answer was complete.",
            )
        return Outcome(Message.Status.COMPLETE, finish_reason=result.finish_reason or "stop")
