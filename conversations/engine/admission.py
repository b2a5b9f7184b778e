"""Admitting turns in batches: the turns that arrive while the database thread is busy are started together.

Each send, regenerate or edit needs one call to the turns' database thread (services/turns.TurnBatch: the
session re-checked, the turn saved, its answer's request prepared). Under a burst, hundreds of turns arrive
within milliseconds and queue for that one thread; started one call each, every turn re-read the same kinds
of rows (sessions, users, the model catalogue, conversations, their messages) at about 7 ms of CPU a turn.
Here the first turn goes at once, and whatever queues while a batch runs goes together in the next one, which
reads the shared rows once (bench/README.md, "Load"). A lone turn is a batch of one, with no added wait.

Each turn's outcome reaches its command as its own: a refusal (a ServiceError) refuses that turn alone.

A turn's request does not wait for the batch's commit: as soon as a send is checked and its request prepared
from the rows in memory (with PostgreSQL once its rows are inserted; a regenerate or an edit: once written in
its savepoint), its generation starts from
the database thread's hand-off, held (engine/generation.start_held): the provider starts thinking while the
batch is written, and the answer's frames and saves wait until the batch has committed and the command has
sent its acknowledgement. A batch that fails abandons the answers it started; nothing of them reaches anyone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field

from conversations import metrics
from conversations.engine import generation, registry, send_ahead
from conversations.services.context import Prepared
from conversations.services.turns import StartedTurn, TurnBatch, TurnRequest

logger = logging.getLogger(__name__)

# At most this many turns per database call: a batch's answers are acknowledged when its call returns, so a
# huge batch would hold its first turns back for the last ones. Their requests leave earlier (above), and the
# batches of a burst run one after another, each paying a round of hand-offs between the event loop and the
# database thread: 32 a batch gave two processes on PostgreSQL, N=400, 460-492 ms at p95; 128 gave 363-413
# (bench/README.md, "Session 12"). SQLite, one process: N=200 the same, N=500 638/717 -> 567/582 ms.
MAX_BATCH = 128


@dataclass
class _Waiting:
    request: TurnRequest
    future: asyncio.Future[StartedTurn] = field(repr=False)
    received_at: float = 0.0  # when the turn's frame arrived (the added-TTFT metric)
    generation: generation.Generation | None = None  # its answer, started before the batch committed
    early: bool = False  # `generation` was started before the batch from a guess (engine/send_ahead.py)


@dataclass
class Admitted:
    """A started turn, and its answer's generation when one started (held until `release()`)."""

    started: StartedTurn
    generation: generation.Generation | None


class _Admission:
    """The queue of one event loop (one in production; tests run many)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[_Waiting] = []
        self.worker: asyncio.Task | None = None

    async def admit(
        self, request: TurnRequest, received_at: float, early: generation.Generation | None = None
    ) -> Admitted:
        waiting = _Waiting(request, self.loop.create_future(), received_at, early, early is not None)
        self.queue.append(waiting)
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._work(), name="turn-admission")
        registry.ADMITTING += 1
        try:
            started = await waiting.future
        finally:
            registry.ADMITTING -= 1
        return Admitted(started, waiting.generation)

    async def _work(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            for waiting in batch:
                if waiting.future.done() and waiting.early:  # its socket closed meanwhile: never saved
                    _settle(waiting, RuntimeError("the socket closed before its turn was saved"))
            batch = [w for w in batch if not w.future.done()]  # a socket that closed meanwhile
            try:
                # The answers start in this task's context, not the database thread's: asgiref marks that
                # one as inside its single thread, and their own database calls would be refused there.
                context = contextvars.copy_context()
                await metrics.database_sync_to_async(_start_batch)(batch, self.loop, context)
            except Exception as exc:  # the batch's reads or transaction failed: every turn in it did
                logger.exception("a batch of %d turns failed", len(batch))
                for waiting in batch:
                    if waiting.generation is not None:  # rolled back: its answer must not run
                        waiting.generation.abandon()
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)


def _start_batch(
    batch: list[_Waiting], loop: asyncio.AbstractEventLoop, context: contextvars.Context
) -> None:
    """On the turns' database thread: save every turn of the batch, starting each one's answer (held) as soon
    as it is saved, then hand each its outcome once the batch's transaction has committed."""

    def on_started(ready: list[tuple[int, Prepared]]) -> None:
        # One hop to the loop for all of them: each call_soon_threadsafe writes to the loop's wake-up pipe.
        if ready:
            loop.call_soon_threadsafe(_start_early, [(batch[i], p) for i, p in ready], context=context)

    with TurnBatch([w.request for w in batch]) as turns:
        outcomes = turns.start_all(on_started)
    # After the commit, in one hop; the loop runs it after the _start_early calls (one thread, one queue).
    loop.call_soon_threadsafe(_settle_all, list(zip(batch, outcomes, strict=True)))


def _settle_all(settled: list[tuple[_Waiting, StartedTurn | Exception]]) -> None:
    for waiting, outcome in settled:
        _settle(waiting, outcome)


def _start_early(ready: list[tuple[_Waiting, Prepared]]) -> None:
    for waiting, prepared in ready:
        if waiting.early:  # its request left when the frame arrived: kept if it is what the batch prepared
            waiting.early = False
            if send_ahead.settle(waiting.generation, prepared):
                continue
            waiting.generation.abandon()
        waiting.generation = generation.start_held(
            prepared, waiting.received_at, session_key=waiting.request.session_key
        )


def _settle(waiting: _Waiting, outcome: StartedTurn | Exception) -> None:
    if waiting.early:  # started early, and the batch refused the turn or could not prepare its answer
        waiting.early = False
        metrics.sent_ahead("dropped")
        waiting.generation.abandon()
        waiting.generation = None
    if waiting.future.done():  # the command was cancelled (its socket closed) while the turn was saved
        if waiting.generation is not None and not isinstance(outcome, Exception):
            waiting.generation.register()
            waiting.generation.release()  # the answer goes on for the conversation's other tabs and reloads
        elif waiting.generation is not None:
            waiting.generation.abandon()
        return
    if isinstance(outcome, Exception):
        if waiting.generation is not None:  # started, then its writes failed: rolled back
            waiting.generation.abandon()
        waiting.future.set_exception(outcome)
    else:
        if waiting.generation is not None:  # its answer's row exists now: running, by that row's pk
            waiting.generation.register()
        send_ahead.remember(waiting.request, outcome, waiting.generation)
        waiting.future.set_result(outcome)


_admissions: dict[asyncio.AbstractEventLoop, _Admission] = {}


async def admit(session_key: str | None, command: str, data: dict, received_at: float = 0.0) -> Admitted:
    """Start a websocket turn (send, regenerate, edit) in the next batch; raises what refused it. The caller
    must `release()` the returned generation, if any, once the turn is acknowledged (else it stays held)."""
    loop = asyncio.get_running_loop()
    admission = _admissions.get(loop)
    if admission is None:
        admission = _admissions[loop] = _Admission(loop)
    if command == "send":  # a new conversation's answer may start now (engine/send_ahead.py)
        request, early = send_ahead.start(session_key, data, received_at)
        return await admission.admit(request, received_at, early)
    return await admission.admit(TurnRequest(session_key, command, data), received_at)
