"""A socket's message loop: the client's frames and the channel layer's messages, handled one at a time.

channels' AsyncConsumer runs `channels.utils.await_many_dispatch`, which for every message calls
`asyncio.wait` on both receive tasks (a future and four callbacks) and then starts a new task for the next
receive. Every frame of every answer goes through it once per socket, so at a few hundred concurrent answers
that bookkeeping was a visible share of the event loop (bench/README.md, "Load"). Here each source has one
reader task for the socket's whole life, feeding one queue the handler loop takes from.

What stays as in channels: messages are handled one at a time, in the order they arrived (a command and the
frames that arrive while it runs never interleave: the consumer's `known` offsets depend on it); each source
has at most one message taken and not yet handled, so a socket that falls behind leaves the rest in its
channel, where the layer's capacity applies as before; an error raised by a source ends the loop with that
error; on exit the readers are cancelled. Unlike channels' loop, a reader may then be between two receives
(holding a message not yet handled), so a cancelled receive can't be relied on to release a channel-layer
channel: the consumer discards its channel itself (engine/consumer.py).

`Idle` tells a frame's sender when the loop waits with nothing to handle: a frame handled then, in the
sender's call (engine/direct_send.py), is handled exactly when and as the loop would have handled it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Idle:
    """True while a socket's message loop waits for a message and none is queued for it."""

    __slots__ = ("_inbox", "_waiting")

    def __init__(self) -> None:
        self._waiting = False
        self._inbox: asyncio.Queue | None = None

    def __bool__(self) -> bool:
        return self._waiting and self._inbox is not None and self._inbox.empty()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def dispatch_forever(
    sources: list[Callable[[], Awaitable[dict]]],
    dispatch: Callable[[dict], Awaitable[None]],
    idle: Idle | None = None,
) -> None:
    """Handle messages from `sources` with `dispatch` until it raises (StopConsumer when the socket closes).
    `idle`: kept up to date while the loop runs."""
    inbox: asyncio.Queue = asyncio.Queue()
    if idle is None:
        idle = Idle()
    idle._inbox = inbox
    # One permit per source: its reader takes the next message only once the last one was handled.
    permits = [asyncio.Semaphore(1) for _ in sources]

    async def read(index: int) -> None:
        source, permit = sources[index], permits[index]
        try:
            while True:
                await permit.acquire()
                inbox.put_nowait((index, await source()))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            inbox.put_nowait((index, _Failed(exc)))

    readers = [asyncio.ensure_future(read(i)) for i in range(len(sources))]
    try:
        while True:
            idle._waiting = True
            try:
                index, message = await inbox.get()
            finally:
                idle._waiting = False
            if isinstance(message, _Failed):
                raise message.error
            try:
                await dispatch(message)
            finally:
                permits[index].release()
    finally:
        for reader in readers:
            reader.cancel()
        for reader in readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader
