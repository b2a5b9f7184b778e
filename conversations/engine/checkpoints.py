"""Checkpoints for every running answer of the process in one statement per CHAT_CHECKPOINT_INTERVAL.

A checkpoint saves an answer's partial text and refreshes its heartbeat, so a reload shows nearly all of it
and the sweeper knows it is alive. One statement for all answers, rather than one per answer per second,
keeps the database threads free for turns and final saves when hundreds of answers stream at once.

Checkpoints ride on frames, and cost the event loop no wake-up of their own. A frame that goes out when one is
due starts it (`frame_sent`): the loop is awake anyway, and the statement is handed to the answer-saves thread
without waiting for its result, which would be one more wake-up when it came back. A timer stands in for the
frames only when none came for an interval more (a provider that fell silent: its answer's heartbeat must go
on; with nothing running it ticks every two intervals), and each checkpoint pushes that timer back, so while
text flows it never fires. In a quiet process a
timer's and a result's wake-ups were most of a checkpoint's cost: 3.5-4 ms of CPU per 2-second answer at N=1
(bench/README.md, "Session 12"). A checkpoint may start up to one frame interval after it was due.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from concurrent.futures import Future

from django.conf import settings
from django.db import close_old_connections

from conversations import metrics
from conversations.engine import registry
from conversations.engine.db_threads import SAVES
from conversations.services import answers

logger = logging.getLogger(__name__)


class _Clock:
    """One event loop's checkpoints (one loop in production; tests run many)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due = 0.0  # loop time of the next checkpoint
        self.saving: Future | None = None  # the last checkpoint, on the answer-saves thread
        self.fallback: asyncio.TimerHandle | None = None
        self.interval = settings.CHAT_CHECKPOINT_INTERVAL

    def take(self) -> int:
        """Save the text of every answer this loop is streaming now, unless the last checkpoint is still being
        written (the next frame tries again). Returns how many it handed over."""
        self.interval = settings.CHAT_CHECKPOINT_INTERVAL
        now = self.loop.time()
        self._arm(now + 2 * self.interval)
        if self.saving is not None and not self.saving.done():
            self.due = now + self.interval
            return 0
        texts = {pk: generation.text for pk, generation in registry.RUNNING.items() if generation.streaming}
        # Nothing running: the next answer's checkpoints count from its first frame (`frame_sent`), not from
        # now, else its first frame would save a one-token text at once.
        self.due = now + self.interval if texts else math.inf
        if texts:
            self.saving = SAVES.submit(_save, texts, time.monotonic())
        return len(texts)

    def _arm(self, when: float) -> None:
        if self.fallback is not None:
            self.fallback.cancel()  # a cancelled timer never wakes the loop
        self.fallback = self.loop.call_at(when, self.take)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clock] = weakref.WeakKeyDictionary()


def _save(texts: dict[int, str], submitted: float) -> None:
    """On the answer-saves thread: what channels' database_sync_to_async does around a call (connections
    checked before and after), without telling the event loop when it is done."""
    metrics.db_wait(time.monotonic() - submitted)
    close_old_connections()
    try:
        answers.save_checkpoints(texts)
    except Exception:
        logger.exception("checkpoint of running answers failed")
    finally:
        close_old_connections()


def frame_sent(loop: asyncio.AbstractEventLoop, now: float) -> None:
    """A frame of a running answer just went out (Generation._flush, `now` = loop.time()): the checkpoint,
    if one is due. Cheap when none is: once per frame."""
    clock = _clocks.get(loop)
    if clock is None:
        return
    if clock.due == math.inf:  # the first frame since nothing ran: an interval from now
        clock.due = now + clock.interval
    elif now >= clock.due:
        clock.take()


async def checkpoint_running() -> int:
    """Save the text of every answer this process is streaming, now, and wait until it is written. Returns
    how many."""
    clock = _clocks[asyncio.get_running_loop()]
    if clock.saving is not None:
        await asyncio.wrap_future(clock.saving)
    count = clock.take()
    if clock.saving is not None:
        await asyncio.wrap_future(clock.saving)
    return count


def start() -> None:
    """This loop's checkpoints (engine.start calls it once per loop)."""
    loop = asyncio.get_running_loop()
    clock = _clocks[loop] = _Clock(loop)
    clock.due = loop.time() + clock.interval
    clock._arm(clock.due + clock.interval)
