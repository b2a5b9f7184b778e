"""Stop and sync requests reach the answer they name, in whichever process runs it: one listener per process.

A request for an answer running in this process (the usual case: the asking socket and the answer share a
process) goes straight to it, never through the channel layer. Otherwise the request is sent to the answer's
control group `gen.<message>` (engine/notify.py). With Redis every process listens to all those groups at
once, with one pattern subscription made at start-up (`gen.*`; engine/layers.py `listen_to_groups`), and
hands each request to the answer it names if it runs there; the others drop it. With the in-memory layer
there is no other process, so a request for an answer not running here has nobody to reach.

Before this, every answer subscribed to a control group of its own and unsubscribed at its end: with Redis
four commands per answer, and a turn's acknowledgement waited for two subscription confirmations (Redis
round trips behind every other subscription of a burst). Now the acknowledgement only waits, once per
process, for the pattern subscription (`ready`), so a Stop sent from any process the moment the client
learns the answer's id still reaches it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer

from conversations.engine import channel_groups, notify

if TYPE_CHECKING:
    from conversations.engine.generation import Generation

logger = logging.getLogger(__name__)

# The answers running in this process, by their public id (str), from the moment they start until their task
# ends (engine/generation.start_held). registry.RUNNING keys them by row pk once their row exists; requests
# from sockets name answers by public id, and may come before the row is written.
LOCAL: dict[str, Generation] = {}

CONTROL_CHANNEL_PREFIX = "control."
RETRY_AFTER = 1.0  # seconds before a listener whose subscription failed tries again
# Seconds an acknowledgement waits for this process's subscription (Redis unreachable at start-up, say)
# before going on without it: as engine/layers.py's SUBSCRIBE_TIMEOUT for any other subscription.
READY_TIMEOUT = 5.0

_tasks: set[asyncio.Task] = set()  # sync replies being sent


def add(generation: Generation) -> None:
    LOCAL[generation.message_id] = generation


def discard(generation: Generation) -> None:
    if LOCAL.get(generation.message_id) is generation:
        del LOCAL[generation.message_id]


async def stop(message_id: str) -> None:
    """Stop this answer wherever it runs (nothing happens if it runs nowhere)."""
    generation = LOCAL.get(message_id)
    if generation is not None:
        generation.request_stop()
        return
    await notify.to_generation(message_id, {"type": "gen.stop", "message": message_id})


async def ask_for_rest(message_id: str, reply_to: str, offset: int) -> None:
    """Ask the generator of `message_id` to send socket `reply_to` the answer's text from `offset` on."""
    generation = LOCAL.get(message_id)
    if generation is not None:
        _answer_sync(generation, reply_to, offset)
        return
    await notify.to_generation(
        message_id, {"type": "gen.sync", "message": message_id, "reply_to": reply_to, "offset": offset}
    )


def _answer_sync(generation: Generation, reply_to: str, offset: int) -> None:
    # Its own task, as when it came through the listener: the asking socket's consumer goes on meanwhile, and
    # the reply is queued in order with the generation's live frames (Generation.answer_sync takes its lock).
    task = asyncio.get_running_loop().create_task(generation.answer_sync(reply_to, offset))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _handle(message: dict) -> None:
    """A request that came through the channel layer (from another process, or sent before its answer was
    registered here): to the answer if it runs in this process."""
    message_id = message.get("message")
    generation = LOCAL.get(message_id) if isinstance(message_id, str) else None
    if generation is None:
        return  # another process runs it, or it ended
    kind = message.get("type")
    if kind == "gen.stop":
        generation.request_stop()
    elif kind == "gen.sync" and isinstance(message.get("reply_to"), str):
        try:
            offset = int(message.get("offset") or 0)
        except (TypeError, ValueError):
            return
        _answer_sync(generation, message["reply_to"], offset)


class _Listener:
    """One event loop's listener (one in production; tests run many loops)."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.channel: str | None = None
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="answer-control")

    def alive(self) -> bool:
        """Running, and (once subscribed) still subscribed: a layer's flush (tests) drops its subscriptions."""
        if self.task.done():
            return False
        return not self.subscribed.done() or self.channel in self.layer.group_patterns.values()

    async def _run(self) -> None:
        while True:
            try:
                self.channel = await self.layer.new_channel(prefix=CONTROL_CHANNEL_PREFIX)
                await self.layer.listen_to_groups(channel_groups.generation_group("*"), self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("answer control listener: could not subscribe; trying again")
                await asyncio.sleep(RETRY_AFTER)
                continue
            if not self.subscribed.done():
                self.subscribed.set_result(None)
            try:
                while True:
                    _handle(await self.layer.receive(self.channel))
            except asyncio.CancelledError:
                raise
            except Exception:  # its connection to Redis is gone for good: subscribe again
                logger.warning("answer control listener: receiving failed; subscribing again", exc_info=True)
                await asyncio.sleep(RETRY_AFTER)


_listeners: dict[asyncio.AbstractEventLoop, _Listener] = {}


def start() -> _Listener | None:
    """This process's listener, on the running loop, if its layer spans processes (engine.start calls it; so
    does `ready`, which starts a new one should the last have stopped)."""
    layer = get_channel_layer()
    if not hasattr(layer, "listen_to_groups"):  # the in-memory layer: this process is the whole site
        return None
    loop = asyncio.get_running_loop()
    listener = _listeners.get(loop)
    if listener is None or not listener.alive():
        if listener is not None:
            listener.task.cancel()
        listener = _listeners[loop] = _Listener(layer)
    return listener


async def ready() -> None:
    """Until a request sent to an answer from any process reaches this process (at once, but for the first
    time in a process, or after READY_TIMEOUT if Redis does not confirm)."""
    listener = start()
    if listener is None or listener.subscribed.done():
        return
    try:
        await asyncio.wait_for(asyncio.shield(listener.subscribed), READY_TIMEOUT)
    except TimeoutError:
        logger.warning("answer control listener: not subscribed after %.0f s; going on", READY_TIMEOUT)
