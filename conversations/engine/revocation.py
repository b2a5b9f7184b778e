"""Stopping what runs for a user whose access ended (deactivated, deleted, password changed, logged out):
the engine's side of services/revocation.py.

`access_revoked` (sent after the commit, from whatever thread saved the change) becomes one message to the
user's sockets and one to every process's listener (engine/notify.access_revoked), through the channel
layer, so it reaches every daphne process with Redis. Then:
- each socket of the user re-checks its session, and closes with 4401 if it ended (ChatConsumer.user_revoked);
- each process's listener finds the user's answers it runs (registry.RUNNING) whose session ended, and stops
  them like the Stop button does: the upstream request is closed and the partial text saved as cancelled.

Nothing here is on the per-token path: one listener task per process, woken only by revocations.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.dispatch import receiver

from conversations.engine import channel_groups, notify, registry, send_ahead
from conversations.services import revocation

logger = logging.getLogger(__name__)


@receiver(revocation.access_revoked, dispatch_uid="engine_access_revoked")
def _broadcast(sender, user_id, **kwargs) -> None:
    """From synchronous code (a view, the admin, a management command): send the news to every process."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        if loop is None:
            async_to_sync(notify.access_revoked)(user_id)
        else:  # ORM code run on an event loop's thread (DJANGO_ALLOW_ASYNC_UNSAFE): don't block it
            loop.create_task(notify.access_revoked(user_id))
    except Exception:  # the change itself is saved: never fail it, but say loudly that sockets stay open
        logger.exception("could not announce that user %s's access ended", user_id)


async def stop_answers_of(user_id) -> int:
    """Stop this process's running answers of `user_id` whose session ended. How many."""
    send_ahead.forget_user(user_id)  # their next new conversation starts from the database thread
    running = [g for g in list(registry.RUNNING.values()) if str(g.prepared.owner_id) == str(user_id)]
    if not running:
        return 0
    ended = await database_sync_to_async(revocation.ended_sessions)({g.session_key for g in running})
    stopped = 0
    for generation in running:
        if generation.session_key in ended:
            generation.request_stop()
            stopped += 1
    if stopped:
        logger.info("stopped %d answer(s) of user %s: their access ended", stopped, user_id)
    return stopped


# Group memberships of channels' in-memory layer expire after a day (group_expiry): renew ours well before.
RESUBSCRIBE_INTERVAL = 3600.0


async def listen_forever() -> None:
    layer = get_channel_layer()
    # Named for what it is, so it is recognisable among a process's subscriptions (it lives as long as the
    # process; every other channel goes with its socket or answer).
    channel = await layer.new_channel(prefix=channel_groups.REVOCATIONS_CHANNEL_PREFIX)
    await layer.group_add(channel_groups.revocations_group(), channel)
    renew = asyncio.get_running_loop().create_task(_stay_subscribed(layer, channel))
    try:
        await _listen(layer, channel)
    finally:
        renew.cancel()


async def _stay_subscribed(layer, channel: str) -> None:
    while True:
        await asyncio.sleep(RESUBSCRIBE_INTERVAL)
        try:
            await layer.group_add(channel_groups.revocations_group(), channel)
        except Exception:
            logger.exception("revocation listener: could not renew its subscription")


async def _listen(layer, channel: str) -> None:
    while True:
        try:
            message = await layer.receive(channel)
            if message.get("type") == "user.revoked":
                await stop_answers_of(message.get("user"))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("revocation listener: a message failed")
            await asyncio.sleep(0.1)


def start() -> asyncio.Task:
    """This process's revocation listener, on the running loop (engine.start calls it once)."""
    return asyncio.get_running_loop().create_task(listen_forever(), name="revocations")
