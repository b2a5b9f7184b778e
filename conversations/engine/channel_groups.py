"""Channel-layer group names: who receives which frames (not Django's auth groups).

Decided here on purpose, since a wrong group leaks private data:
- `conv.<conversation>`: sockets that opened that conversation, joined only after an ownership check;
- `gen.<message>`: the one task generating that answer, for stop and sync requests;
- `user.<id>`: every socket of one user, for sidebar updates such as new titles, and for re-checking their
  sessions when the user's access may have ended (engine/revocation.py);
- `revocations`: one listener per process (engine/revocation.py), which cancels the answers it runs for a
  user whose access ended. Site-wide but carries only user ids.
"""

from __future__ import annotations


def conversation_group(conversation_id: str) -> str:
    return f"conv.{conversation_id}"


def generation_group(message_id: str) -> str:
    return f"gen.{message_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


# The one channel per process that listens to `revocations`.
REVOCATIONS_CHANNEL_PREFIX = "revocations."


def revocations_group() -> str:
    return "revocations"
