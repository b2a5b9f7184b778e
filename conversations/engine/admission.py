"""Admitting turns in batches: the turns that arrive while the database thread is busy are started together.

Each send, regenerate or edit needs one call to the turns' database thread (services/turns.TurnBatch: the
session re-checked, the turn saved, its answer's request prepared). Under a burst, hundreds of turns arrive
within milliseconds and queue for that one thread; started one call each, every turn re-read the same kinds
of rows (sessions, users, the model catalogue, conversations, their messages) at about 7 ms of CPU a turn.
Here the first turn goes at once, and whatever queues while a batch runs goes together in the next one, which
reads the shared rows once (bench/README.md, "Load"). A lone turn is a batch of one, with no added wait.

Each turn's outcome reaches its command as its own: a refusal (a ServiceError) refuses that turn alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from conversations import metrics
from conversations.services.turns import StartedTurn, TurnBatch, TurnRequest

logger = logging.getLogger(__name__)

# At most this many turns per database call: a batch's answers start when its call returns, so a huge batch
# would hold its first turns back for the last ones.
MAX_BATCH = 32


@dataclass
class _Waiting:
    request: TurnRequest
    future: asyncio.Future[StartedTurn] = field(repr=False)


class _Admission:
    """The queue of one event loop (one in production; tests run many)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[_Waiting] = []
        self.worker: asyncio.Task | None = None

    async def admit(self, request: TurnRequest) -> StartedTurn:
        waiting = _Waiting(request, self.loop.create_future())
        self.queue.append(waiting)
        if self.worker is None or self.worker.done():
            self.worker = self.loop.create_task(self._work(), name="turn-admission")
        return await waiting.future

    async def _work(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            batch = [w for w in batch if not w.future.done()]  # a socket that closed meanwhile
            try:
                await metrics.database_sync_to_async(_start_batch)(batch, self.loop)
            except Exception as exc:  # the batch's reads or transaction failed: every turn in it did
                logger.exception("a batch of %d turns failed", len(batch))
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)


def _start_batch(batch: list[_Waiting], loop: asyncio.AbstractEventLoop) -> None:
    """On the turns' database thread: start every turn of the batch, then hand each its outcome (after the
    batch's transaction committed, when there is one)."""
    settle = []
    with TurnBatch([w.request for w in batch]) as turns:
        for index, waiting in enumerate(batch):
            try:
                settle.append((waiting.future.set_result, turns.start(index)))
            except Exception as exc:  # that turn alone is refused (a ServiceError) or failed
                settle.append((waiting.future.set_exception, exc))
    for resolve, outcome in settle:
        loop.call_soon_threadsafe(_settle, resolve, outcome)


def _settle(resolve, outcome) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):  # the command was cancelled (its socket closed)
        resolve(outcome)


_admissions: dict[asyncio.AbstractEventLoop, _Admission] = {}


async def admit(session_key: str | None, command: str, data: dict) -> StartedTurn:
    """Start a websocket turn (send, regenerate, edit) in the next batch; raises what refused it."""
    loop = asyncio.get_running_loop()
    admission = _admissions.get(loop)
    if admission is None:
        admission = _admissions[loop] = _Admission(loop)
    return await admission.admit(TurnRequest(session_key, command, data))
