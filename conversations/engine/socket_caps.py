"""CHAT_MAX_SOCKETS_PER_USER, counted over the whole site, not per daphne process.

With the in-memory channel layer there is one process, and its own count (registry.SOCKETS) is the site's.
With Redis (several processes) a user's open sockets are a sorted set, `chatsite:sockets:<user>` in the
layer's Redis database: members are the sockets' channel names, scores the time each stops counting. A socket
is added only while the set holds fewer than the cap (one Lua script checks and adds), and removed when it
closes. Every process renews its sockets' scores every RENEW seconds, so the sockets of a process that died
without closing them stop counting after TTL seconds.

One round trip per connect and one per close; nothing on the per-frame path. If Redis can't be reached the
socket is let in on this process's own count (the channel layer needs Redis anyway: the log says so).
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.layers import get_channel_layer
from django.conf import settings

from conversations.engine import registry

logger = logging.getLogger(__name__)

TTL = 90.0  # seconds a socket counts without being renewed (its process died)
RENEW = 30.0

# KEYS[1] the user's set; ARGV: now, expires at, cap (0: none), channel, key lifetime in ms.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if tonumber(ARGV[3]) > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Sockets of this process counted in Redis: channel name -> user pk (what the renewal refreshes).
_COUNTED: dict[str, int] = {}


def _key(user_id: int) -> str:
    return f"chatsite:sockets:{user_id}"


def _redis():
    """The layer's Redis client for this event loop, or None with the in-memory layer."""
    layer = get_channel_layer()
    return layer.redis() if hasattr(layer, "redis") else None


async def opened(user_id: int, channel: str) -> bool:
    """Count a new socket of `user_id`; False (nothing counted) when the user already has the cap open."""
    client = _redis()
    if client is None:
        return registry.socket_opened(user_id)
    now, cap = time.time(), settings.CHAT_MAX_SOCKETS_PER_USER
    try:
        allowed = await client.eval(_OPEN, 1, _key(user_id), now, now + TTL, cap, channel, int(TTL * 1000))
    except Exception:
        logger.exception("could not count user %s's sockets in Redis; counting this process's only", user_id)
        return registry.socket_opened(user_id)
    if allowed:
        _COUNTED[channel] = user_id
    return bool(allowed)


async def closed(user_id: int, channel: str) -> None:
    if _COUNTED.pop(channel, None) is None:
        registry.socket_closed(user_id)
        return
    try:
        await _redis().zrem(_key(user_id), channel)
    except Exception:
        logger.warning(
            "could not uncount a socket of user %s in Redis; it stops counting in %.0f s", user_id, TTL
        )


async def renew() -> None:
    """Push back the expiry of every socket this process counted in Redis (XX: never re-adds a removed one)."""
    if not _COUNTED:
        return
    expires = time.time() + TTL
    pipe = _redis().pipeline(transaction=False)
    for channel, user_id in list(_COUNTED.items()):
        pipe.zadd(_key(user_id), {channel: expires}, xx=True)
        pipe.pexpire(_key(user_id), int(TTL * 1000))
    await pipe.execute()


async def _renew_forever() -> None:
    while True:
        await asyncio.sleep(RENEW)
        try:
            await renew()
        except Exception:
            logger.exception("could not renew this process's sockets in Redis")


def start() -> asyncio.Task | None:
    """The renewal task, on the running loop (engine.start calls it once); none with the in-memory layer."""
    if not hasattr(get_channel_layer(), "redis"):
        return None
    return asyncio.get_running_loop().create_task(_renew_forever(), name="socket-caps")
