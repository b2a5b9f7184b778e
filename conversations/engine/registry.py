"""What this process is doing right now: the answers it is running, and whether it is draining (SIGTERM).

One home for this state, so the generation (adds and removes itself), the sweeper (never sweeps what is
alive here) and shutdown (waits for, then interrupts, what runs) share it without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversations.engine.generation import Generation

# Running generations of this process, by message pk. Holding the task here keeps it alive (asyncio only
# keeps weak references) and lets shutdown and tests find them.
RUNNING: dict[int, Generation] = {}

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
