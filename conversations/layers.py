"""The in-memory channel layer (one process, no REDIS_URL), with its housekeeping made cheap.

channels' InMemoryChannelLayer scans every queued channel and every group membership for expired entries
on each `receive` and each `group_send`, and `group_send` starts a task per member. Every open socket holds
two memberships and every running answer one more, so with a few hundred sockets those scans took most of
the process's CPU (bench/load.py: over half of it at 200 concurrent answers) and streams fell seconds
behind. Here the scan runs at most once a second, and `group_send` puts the message on each member's queue
directly. Everything else is channels' own code: messages are still copied per recipient, bounded per
channel (`capacity`), expired after `expiry` seconds, and `group_send` still skips full channels.
"""

from __future__ import annotations

import contextlib
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    CLEAN_INTERVAL = 1.0  # seconds between two scans for expired messages and memberships

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._next_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now < self._next_clean:
            return
        self._next_clean = now + self.CLEAN_INTERVAL
        super()._clean_expired()

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # As in channels, a consumer that far behind loses the message; the sender carries on.
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)  # no real await inside: a copy onto the channel's queue

    async def flush(self) -> None:
        await super().flush()
        self._next_clean = 0.0
