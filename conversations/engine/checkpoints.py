"""Checkpoints for every running answer of the process in one statement per CHAT_CHECKPOINT_INTERVAL.

A checkpoint saves an answer's partial text and refreshes its heartbeat, so a reload shows nearly all of it
and the sweeper knows it is alive. One statement for all answers, rather than one per answer per second,
keeps the database threads free for turns and final saves when hundreds of answers stream at once.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings

from conversations.engine import registry
from conversations.engine.db_threads import on_saves_thread
from conversations.services import answers

logger = logging.getLogger(__name__)


async def checkpoint_running() -> int:
    """Save the text of every answer this process is streaming. Returns how many."""
    texts = {pk: generation.text for pk, generation in registry.RUNNING.items() if generation.streaming}
    if texts:
        await on_saves_thread(answers.save_checkpoints)(texts)
    return len(texts)


async def checkpoint_forever() -> None:
    while True:
        await asyncio.sleep(settings.CHAT_CHECKPOINT_INTERVAL)
        try:
            await checkpoint_running()
        except Exception:
            logger.exception("checkpoint of running answers failed")


def start() -> asyncio.Task:
    """This process's checkpoints, on the running loop (engine.start calls it once)."""
    return asyncio.get_running_loop().create_task(checkpoint_forever(), name="checkpoints")
