"""Nothing stays "streaming" forever: answers whose process died are marked interrupted, text kept.

A running generation refreshes `heartbeat_at` every checkpoint (about once a second). One whose heartbeat is
older than CHAT_STALE_AFTER belongs to a process that was killed or lost (services/answers.sweep_stale).
Each process sweeps for those from start-up (engine.start) every CHAT_SWEEP_INTERVAL, and when a
conversation is opened.

A process never sweeps the answers it is running itself (registry.alive()): under overload (a burst of turns
queued on the database thread, answers waiting for a provider connection) a live answer's heartbeat can fall
behind, and marking it interrupted would send its tabs an early `end` with the last checkpoint's text.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from conversations.engine import frames, notify, registry
from conversations.services import answers

logger = logging.getLogger(__name__)


async def sweep_and_notify(conversation_pk: int | None = None) -> int:
    """Sweep (one conversation, or all) and send each swept answer's `end` frame. Returns how many."""
    swept = await database_sync_to_async(answers.sweep_stale)(conversation_pk, registry.alive())
    for conversation_id, message in swept:
        await notify.to_conversation(conversation_id, frames.end(conversation_id, message))
    return len(swept)


async def sweep_forever() -> None:
    while True:
        try:
            await sweep_and_notify()
        except Exception:
            logger.exception("sweep for interrupted answers failed")
        await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL)


def start() -> asyncio.Task:
    """This process's periodic sweep, on the running loop (engine.start calls it once)."""
    return asyncio.get_running_loop().create_task(sweep_forever(), name="sweep-interrupted")
