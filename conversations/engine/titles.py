"""A new conversation's title, asked of the title model once its first answer has about a sentence (or when a
short answer ends), and pushed to the user's sidebars. What is asked and saved is services/titles.py; a title
never blocks or breaks the answer: it runs as its own task beside the stream."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from conversations.engine import frames, notify
from conversations.llm import errors as llm_errors
from conversations.llm.client import complete
from conversations.llm.events import StreamResult
from conversations.services import titles
from conversations.services.context import Prepared

logger = logging.getLogger(__name__)

_running: set[asyncio.Task] = set()  # title tasks started beside their answers: kept until they end

answer_is_enough = titles.answer_is_enough  # the generation asks this once per frame, not per token


def start(prepared: Prepared, result: StreamResult | None, answer: str) -> asyncio.Task:
    """Write the title in the background from the answer so far; the answer streams on meanwhile."""
    task = asyncio.get_running_loop().create_task(
        write_title(prepared, result, answer), name=f"title-{prepared.conversation_pk}"
    )
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def write_title(prepared: Prepared, result: StreamResult | None, answer: str | None = None) -> None:
    """Title the answer's conversation, through the user's own key when that is what served the answer.
    `answer`: its text so far (None: as saved)."""
    try:
        await _write_title(prepared, result, answer)
    except Exception:  # never break the answer, nor leave an unretrieved task exception
        logger.exception("title for conversation %s failed", prepared.conversation_pk)


async def _write_title(prepared: Prepared, result: StreamResult | None, answer: str | None) -> None:
    served_by_own_key = result is not None and result.route is not None and result.route.personal_key
    job = await database_sync_to_async(titles.title_job)(
        prepared.conversation_pk, prepared.owner_id, prepared.routes if served_by_own_key else None, answer
    )
    if job is None:
        return
    title = ""
    if job.routes:
        try:
            title = titles.clean_title((await complete(job.request(prepared.owner_id), job.routes)).text)
        except llm_errors.LLMError as exc:
            logger.info(
                "title for conversation %s fell back to the prompt: %s", prepared.conversation_pk, exc
            )
    title = title or titles.fallback_title(job.prompt, job.images)
    if await database_sync_to_async(titles.save_title)(prepared.conversation_pk, title):
        await notify.to_user(prepared.owner_id, frames.title(prepared.conversation_id, title))
