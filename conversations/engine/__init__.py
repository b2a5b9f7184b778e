"""The realtime engine: everything that lives as long as the process, on its event loop.

The websocket consumer and its protocol, the commands it runs, running answers (generations) with their
registry, the frames they send and the one module that sends them, the channel layers, the sweeper, the
SIGTERM drain and titles. The service layer (conversations/services/) holds the synchronous database work
the engine calls through database_sync_to_async; it never imports the engine. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging

from conversations.engine import checkpoints, revocation, shutdown, sweeper

logger = logging.getLogger(__name__)

_started: set[asyncio.AbstractEventLoop] = set()


def start() -> bool:
    """Process start-up, once per event loop (one in production; tests run many): the graceful SIGTERM handler
    (in a running daphne), the periodic sweep, the checkpoints of running answers and the listener that stops
    the answers of a user whose access ended. The ASGI application calls it on its first connection
    (chatsite/asgi.py), when the loop is running. Returns whether it ran now."""
    loop = asyncio.get_running_loop()
    if loop in _started:
        return False
    _started.add(loop)
    sigterm = shutdown.install()
    sweeper.start()
    checkpoints.start()
    revocation.start()
    logger.info("engine started (graceful SIGTERM: %s)", "yes" if sigterm else "no, not a daphne process")
    return True


class StartEngine:
    """ASGI middleware: start the engine on the first connection of each event loop, then get out of the way."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if asyncio.get_running_loop() not in _started:
            start()
        return await self.app(scope, receive, send)
