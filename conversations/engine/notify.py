"""The one module that sends through the channel layer: frames to sockets, and requests to generations.

Frames (engine/frames.py) travel in an envelope that consumers forward from `chat_frame`. Addresses are the
groups of engine/channel_groups.py, or one socket's own channel (a generation's reply to a `sync`, which
must stay in order with the live frames of the same generation: both leave from the same process, and
both layers keep one sender's order).

Control messages (`gen.stop`, `gen.sync`) go to an answer's control group, where the listener of each
process (engine/control.py) receives them.
"""

from __future__ import annotations

from channels.layers import get_channel_layer

from conversations.engine import channel_groups
from conversations.engine.frames import Frame

FRAME = "chat.frame"  # the consumer's handler: ChatConsumer.chat_frame


def _envelope(frame: Frame) -> dict:
    return {"type": FRAME, "frame": frame}


async def to_conversation(conversation_id: str, frame: Frame) -> None:
    """Every socket, in any process, that has the conversation open."""
    await get_channel_layer().group_send(channel_groups.conversation_group(conversation_id), _envelope(frame))


async def to_user(user_id: int, frame: Frame) -> None:
    """Every socket of one user (sidebar updates)."""
    await get_channel_layer().group_send(channel_groups.user_group(user_id), _envelope(frame))


async def to_socket(channel_name: str, frame: Frame) -> None:
    """One socket. Raises channels.exceptions.ChannelFull when that socket is far behind (in-memory layer)."""
    await get_channel_layer().send(channel_name, _envelope(frame))


async def joins_done(conversation_id: str) -> None:
    """Until every socket of this process that is joining the conversation's group (ChatConsumer.join with
    `local_first`) receives other processes' frames too. At once with the in-memory layer."""
    joined = getattr(get_channel_layer(), "joined", None)
    if joined is not None:
        await joined(channel_groups.conversation_group(conversation_id))


async def to_generation(message_id: str, message: dict) -> None:
    """A stop or sync request to the answer's control group, for the process that runs it (engine/control.py:
    every process with Redis listens to all such groups; requests for this process's own answers never come
    here)."""
    await get_channel_layer().group_send(channel_groups.generation_group(message_id), message)


async def access_revoked(user_id) -> None:
    """A user's access may have ended (services/revocation.py): their sockets, in every process, re-check
    their sessions and close with 4401 if ended; every process's revocation listener cancels that user's
    answers whose session ended (engine/revocation.py)."""
    layer = get_channel_layer()
    await layer.group_send(channel_groups.user_group(user_id), {"type": "user.revoked"})
    await layer.group_send(channel_groups.revocations_group(), {"type": "user.revoked", "user": user_id})
