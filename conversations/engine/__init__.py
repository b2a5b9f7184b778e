"""The realtime engine: everything that lives as long as the process, on its event loop.

The websocket consumer and its protocol, the commands it runs, running answers (generations) with their
registry, the frames they send and the one module that sends them, the channel layers, the sweeper, the
SIGTERM drain and titles. The service layer (conversations/services/) holds the synchronous database work
the engine calls through database_sync_to_async; it never imports the engine. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from django.conf import settings

from conversations.engine import (
    checkpoints,
    control,
    direct_send,
    revocation,
    shutdown,
    socket_caps,
    sweeper,
)

logger = logging.getLogger(__name__)

_started: set[asyncio.AbstractEventLoop] = set()
_gc_tuned = False


def start() -> bool:
    """Process start-up, once per event loop (one in production; tests run many): the graceful SIGTERM handler
    (in a running daphne), the periodic sweep, the checkpoints of running answers and the listener that stops
    the answers of a user whose access ended, and (with Redis) the listener for Stop and sync requests from
    other processes and the renewal of this process's counted sockets. The ASGI application calls it on its first connection
    (chatsite/asgi.py), when the loop is running. Returns whether it ran now."""
    loop = asyncio.get_running_loop()
    if loop in _started:
        return False
    _started.add(loop)
    _tune_gc()
    sigterm = shutdown.install()
    sweeper.start()
    checkpoints.start()
    revocation.start()
    control.start()
    socket_caps.start()
    logger.info("engine started (graceful SIGTERM: %s)", "yes" if sigterm else "no, not a daphne process")
    return True


def _tune_gc() -> None:
    """Once per process: fewer, cheaper runs of Python's cycle collector (CHAT_GC_GEN0_THRESHOLD).

    A streaming answer allocates for every token and frame, and the collector's default (a young-generation
    run every 700 net allocations, older generations scanned every 10 of those) then runs thousands of times
    a second, each full run walking every object of the loaded site. Freezing what start-up created (Django,
    the apps, the URL and template caches: they live as long as the process) takes it out of every run, and
    a larger young-generation threshold runs the collector less often. Measured with bench/load.py (burst
    of 500: added TTFT p95 4.6 -> 2.8 s, CPU per answer 14.7 -> 12.5 ms; bench/README.md, "Session 5")."""
    global _gc_tuned
    threshold = settings.CHAT_GC_GEN0_THRESHOLD
    if _gc_tuned or not threshold:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)


class StartEngine:
    """ASGI middleware: start the engine on the first connection of each event loop, then get out of the way.
    Being outermost, it also hands a websocket's consumer the synchronous writer of daphne's `send`, which
    the middleware further in wraps (engine/direct_send.py)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if asyncio.get_running_loop() not in _started:
            start()
        if scope["type"] == "websocket":
            writer = direct_send.sync_writer(send)
            if writer is not None:
                scope = {**scope, direct_send.SCOPE_KEY: writer}
        return await self.app(scope, receive, send)
