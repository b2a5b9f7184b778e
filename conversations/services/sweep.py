"""Nothing stays "streaming" forever: answers whose process died are marked interrupted, text kept.

A running generation refreshes `heartbeat_at` every checkpoint (about once a second). One whose heartbeat is
older than CHAT_STALE_AFTER belongs to a process that was killed or lost; each process sweeps for those when
its first socket connects, every CHAT_SWEEP_INTERVAL after that, and when a conversation is opened.

A process never sweeps the answers it is running itself: under overload (a burst of turns queued on the
database thread, answers waiting for a provider connection) a live answer's heartbeat can fall behind, and
marking it interrupted would send its tabs an early `end` with the last checkpoint's text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from conversations.models import Message
from conversations.services import groups
from conversations.services.serialize import message_dict

logger = logging.getLogger(__name__)

INTERRUPTED_ERROR = (
    "The server stopped while writing this answer. The text so far is kept; regenerate to retry."
)

_sweepers: dict[int, asyncio.Task] = {}  # one per event loop


def sweep_stale(
    conversation_pk: int | None = None, alive: frozenset[int] = frozenset()
) -> list[tuple[str, dict]]:
    """Mark dead generations interrupted, except those in `alive` (the message pks this process is answering).
    Returns (conversation id, message frame) for each, to broadcast."""
    cutoff = timezone.now() - dt.timedelta(seconds=settings.CHAT_STALE_AFTER)
    stale = Message.objects.filter(status__in=Message.ACTIVE_STATUSES, heartbeat_at__lt=cutoff)
    if alive:
        stale = stale.exclude(pk__in=alive)
    if conversation_pk is not None:
        stale = stale.filter(conversation_id=conversation_pk)
    swept = []
    for message in stale.select_related("conversation", "parent"):
        # Conditional update: a generation that is alive after all (a late heartbeat) wins the race.
        updated = Message.objects.filter(pk=message.pk, heartbeat_at=message.heartbeat_at).update(
            status=Message.Status.INTERRUPTED,
            error=INTERRUPTED_ERROR,
            finish_reason="interrupted",
            heartbeat_at=None,
            reserved_cost=None,
        )
        if not updated:
            continue
        message.status, message.error, message.finish_reason = (
            Message.Status.INTERRUPTED,
            INTERRUPTED_ERROR,
            "interrupted",
        )
        frame = message_dict(message)
        frame.pop("siblings")
        swept.append((str(message.conversation.public_id), frame))
        logger.warning(
            "marked answer %s interrupted (last heartbeat %s)", message.public_id, message.heartbeat_at
        )
    return swept


async def sweep_and_notify(conversation_pk: int | None = None) -> int:
    from conversations.services.generation import RUNNING  # generation imports this module

    swept = await database_sync_to_async(sweep_stale)(conversation_pk, frozenset(RUNNING))
    layer = get_channel_layer()
    for conversation_id, frame in swept:
        await layer.group_send(
            groups.conversation_group(conversation_id),
            groups.frame({"type": "end", "conversation": conversation_id, "message": frame}),
        )
    return len(swept)


async def _sweep_forever() -> None:
    while True:
        try:
            await sweep_and_notify()
        except Exception:
            logger.exception("sweep for interrupted answers failed")
        await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL)


def ensure_sweeper() -> None:
    """Start this process's periodic sweep (idempotent; call from the event loop)."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(id(loop))
    if task is None or task.done():
        _sweepers[id(loop)] = loop.create_task(_sweep_forever(), name="sweep-interrupted")
