"""Graceful shutdown: on SIGTERM, running answers get CHAT_SHUTDOWN_GRACE seconds, then a final save.

daphne runs Twisted's asyncio reactor, whose own SIGTERM handler stops the reactor at once: daphne cancels
every connection's application and the process exits, leaving running answers "streaming" until another
process's sweep marks them interrupted (their text only as fresh as the last checkpoint). Instead, engine.start
takes over SIGTERM in a daphne process (`install`), and on the signal:

1. new turns are refused: their answers end at once with an error saying the server is restarting;
2. running answers get up to CHAT_SHUTDOWN_GRACE seconds to finish normally, streaming to their sockets;
3. the rest stop reading from the provider and are saved `interrupted` with all the text received so far
   (their `end` frames go out as usual);
4. the process waits until its own sockets have taken the last frames (through Redis a frame to a socket
   of this process goes there and back: `deliver_last_frames`), whether or not any answer was still running;
5. then daphne's own SIGTERM handling runs and the process exits.

A second SIGTERM skips what is left of the grace period. Outside a running daphne (tests, management
commands) nothing is installed. systemd's TimeoutStopSec must exceed the grace period by a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time

from channels.layers import get_channel_layer
from django.conf import settings

from conversations.engine import registry

logger = logging.getLogger(__name__)

# After the grace period, how long the final saves of interrupted answers may take before we exit anyway
# (an answer not saved by then stays "streaming" and is swept as interrupted from its last checkpoint).
FINAL_SAVE_TIMEOUT = 10.0
# A moment for consumers to forward the last `end` frames before daphne cancels them.
FLUSH_DELAY = 0.2
# How long to wait for the channel layer to bring the last frames back to this process's own sockets.
DELIVERY_TIMEOUT = 2.0

_hurry: asyncio.Event | None = None


def _daphne_loop() -> asyncio.AbstractEventLoop | None:
    """The running loop if a running daphne drives it (Twisted's asyncio reactor, on the main thread), else
    None. Twisted's reactor runs the main thread's asyncio loop: once it is running, that is ours."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not reactor.running or threading.current_thread() is not threading.main_thread():
        return None
    return asyncio.get_running_loop()


def install() -> bool:
    """Take over SIGTERM if this is a running daphne process (engine.start calls it once, on the event
    loop). False outside daphne (tests, management commands): nothing is installed."""
    loop = _daphne_loop()
    if loop is None:
        return False
    previous = signal.getsignal(signal.SIGTERM)  # Twisted's: stop the reactor
    try:
        loop.add_signal_handler(signal.SIGTERM, _on_sigterm, loop, previous)
    except (RuntimeError, ValueError):  # not the main thread: keep daphne's handling
        logger.warning("could not install the graceful SIGTERM handler", exc_info=True)
        return False
    return True


def _on_sigterm(loop: asyncio.AbstractEventLoop, previous) -> None:
    global _hurry
    if registry.draining():
        logger.warning("second SIGTERM: skipping the rest of the grace period")
        if _hurry is not None:
            _hurry.set()
        return
    registry.begin_draining()
    _hurry = asyncio.Event()
    loop.create_task(_drain_then_exit(loop, previous, _hurry), name="graceful-shutdown")


async def _drain_then_exit(loop: asyncio.AbstractEventLoop, previous, hurry: asyncio.Event) -> None:
    try:
        await drain(settings.CHAT_SHUTDOWN_GRACE, hurry)
    except Exception:
        logger.exception("graceful shutdown failed; exiting anyway")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if callable(previous):
            signal.signal(signal.SIGTERM, previous)
        _exit(previous)


async def drain(grace: float, hurry: asyncio.Event | None = None) -> None:
    """Let running generations finish within `grace` seconds, then save the rest as interrupted."""
    running = registry.RUNNING
    deadline = time.monotonic() + grace
    if running:
        logger.warning(
            "SIGTERM: refusing new turns; %d answer(s) running get up to %.1fs to finish", len(running), grace
        )
    hurried = asyncio.ensure_future(hurry.wait()) if hurry is not None else None
    try:
        while running and (remaining := deadline - time.monotonic()) > 0:
            waiting = {generation.task for generation in running.values() if generation.task is not None}
            if hurried is not None:
                waiting.add(hurried)
            await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if hurried is not None and hurried.done():
                break
    finally:
        if hurried is not None:
            hurried.cancel()
    late = list(running.values())
    if not late:
        # Every answer ended in time, the last of them maybe a moment ago: its `end` frame may still be on its
        # way to this process's own sockets (through Redis, a round trip).
        await deliver_last_frames()
        return
    logger.warning("SIGTERM: saving %d unfinished answer(s) as interrupted", len(late))
    for generation in late:
        generation.interrupt()
    tasks = [generation.task for generation in late if generation.task is not None]
    _done, pending = await asyncio.wait(tasks, timeout=FINAL_SAVE_TIMEOUT)
    if pending:
        logger.error(
            "SIGTERM: %d answer(s) could not be saved in time; the sweep will mark them", len(pending)
        )
    await deliver_last_frames()


async def deliver_last_frames() -> None:
    """Let this process's sockets forward the frames just sent (the `end` frames) before daphne closes them.

    Through Redis pub/sub a frame for a socket of this process travels there and back: the layer's
    `delivered` waits until everything published so far has come back and been taken by the consumers. Then
    FLUSH_DELAY for the consumers' writes to reach their transports (a loop turn or two)."""
    delivered = getattr(get_channel_layer(), "delivered", None)
    if delivered is not None:
        try:
            if not await delivered(DELIVERY_TIMEOUT):
                logger.warning("SIGTERM: the channel layer did not deliver the last frames in time")
        except Exception:
            logger.exception("SIGTERM: waiting for the channel layer failed")
    await asyncio.sleep(FLUSH_DELAY)


def _exit(previous) -> None:
    """Hand over to daphne's own SIGTERM handling: Twisted stops the reactor and closes every connection."""
    logger.warning("SIGTERM: exiting")
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None:
        reactor.addSystemEventTrigger("after", "shutdown", _exit_now)
    if callable(previous):
        previous(signal.SIGTERM, None)
    elif previous == signal.SIG_IGN:
        return
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_now() -> None:
    """Exit once daphne has closed every connection, skipping interpreter finalisation: on CPython before
    3.11.8 collecting daphne's pending coroutines there can crash the process with SIGSEGV (gh-113566), and
    nothing is left to clean up by now."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
