"""What this process is doing right now: the answers it is running, the sockets it holds per user, and
whether it is draining (SIGTERM).

One home for this state, so the generation (adds and removes itself), the sweeper (never sweeps what is
alive here) and shutdown (waits for, then interrupts, what runs) share it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from conversations.engine.generation import Generation

# Running generations of this process, by message pk. Holding the task here keeps it alive (asyncio only
# keeps weak references) and lets shutdown and tests find them.
RUNNING: dict[int, Generation] = {}

# Open websockets of this process, by user pk: the site's count of them with the in-memory channel layer (one
# process); with Redis, engine/socket_caps.py counts them over every process.
SOCKETS: dict[int, int] = {}

# Turns of this process between their frame's arrival and their acknowledgement (engine/admission.py). While
# any wait, running answers send frames less often (engine/generation.frame_interval): the event loop's time
# goes to starting the waiting answers first.
ADMITTING = 0

_draining = False


def draining() -> bool:
    """True once SIGTERM arrived: new answers must not start."""
    return _draining


def begin_draining() -> None:
    global _draining
    _draining = True


def alive() -> frozenset[int]:
    """Message pks this process is answering."""
    return frozenset(RUNNING)


def socket_opened(user_id: int) -> bool:
    """Count a new socket of `user_id`; False (and nothing counted) when the user has as many as allowed."""
    open_now = SOCKETS.get(user_id, 0)
    cap = settings.CHAT_MAX_SOCKETS_PER_USER
    if cap and open_now >= cap:
        return False
    SOCKETS[user_id] = open_now + 1
    return True


def socket_closed(user_id: int) -> None:
    left = SOCKETS.get(user_id, 0) - 1
    if left > 0:
        SOCKETS[user_id] = left
    else:
        SOCKETS.pop(user_id, None)
