"""A new conversation's title, asked of the title model after its first answer and pushed to the user's
sidebars. What is asked and saved is services/titles.py; a title never blocks or breaks the answer."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from conversations.engine import frames, notify
from conversations.llm import errors as llm_errors
from conversations.llm.client import complete
from conversations.llm.events import StreamResult
from conversations.services import titles
from conversations.services.context import Prepared

logger = logging.getLogger(__name__)


async def write_title(prepared: Prepared, result: StreamResult | None) -> None:
    """Title the answer's conversation, through the user's own key when that is what served the answer."""
    served_by_own_key = result is not None and result.route is not None and result.route.personal_key
    job = await database_sync_to_async(titles.title_job)(
        prepared.conversation_pk, prepared.owner_id, prepared.routes if served_by_own_key else None
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
