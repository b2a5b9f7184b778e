"""Paced reads: take a streamed answer from the socket once per frame instead of once per token.

A provider writes each token as it comes (every 10-30 ms); the engine sends a websocket frame at most every
CHAT_FRAME_INTERVAL. Reading each token as it arrives wakes the event loop and runs the HTTP stack and
the SSE decoder once per token for nothing: the frame goes out later anyway. With a pacer, the reader of a
stream, once it has handed over everything it has, asks the pacer when it may read again and until then
leaves the bytes in the kernel (the socket's reading is paused, so arriving tokens wake nothing); then one
recv() takes everything that arrived meanwhile.

The caller gives `open_stream(..., pacer=...)` an object with::

    async def idle(self) -> float | None

which the client calls (only after the first token, from the task that iterates the stream) each time it
has yielded every event it has received and is about to wait for the network. `idle()` sends what the caller
has gathered, if it wants to, and returns the event-loop time (`loop.time()`) before which no byte should be
read, or None to read at once. See README.md ("Paced reads") for the whole contract. `FramePacer` is a ready
one: a frame every `interval` seconds.

Mechanism: `open_stream` sets `current_pacer` (a ContextVar) around its reads of the body after the first
token; the asyncio transport (transport.py) consults it when its read queue is empty. Other transports (httpx's
own, used when a proxy is configured) ignore it: reads are then unpaced and idle() is never called.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol


class Pacer(Protocol):
    async def idle(self) -> float | None:
        """Every received event has been handed over and the reader is about to wait for more: send what
        you have if a frame is due, and return the loop time before which nothing should be read (None: now)."""
        ...


# The pacer of the reads the current task makes, if any. Set by the client around its reads; read by the
# transport. Not for the caller to set: use open_stream(..., pacer=).
current_pacer: ContextVar[Pacer | None] = ContextVar("chatsite_llm_pacer", default=None)


class FramePacer:
    """Reads at most once every `interval` seconds while tokens keep coming; `flush()` sends a frame.

    `idle()`: when the current frame's time is up (or none was sent yet), awaits `flush()` and returns the
    time of the next frame; before that, returns the same time again without flushing. `interval` may be
    changed at any time (it applies from the next frame).
    """

    __slots__ = ("flush", "interval", "next_frame")

    def __init__(self, interval: float, flush: Callable[[], Awaitable[object]] | None = None) -> None:
        self.interval = interval
        self.flush = flush
        self.next_frame = -math.inf  # loop time of the next frame; the first idle() sends at once

    async def idle(self) -> float | None:
        now = asyncio.get_running_loop().time()
        if now >= self.next_frame:
            self.next_frame = now + self.interval
            if self.flush is not None:
                await self.flush()
        return self.next_frame
