"""Every server→client frame of the websocket protocol (docs/websocket-protocol.md), built in one place.

Frames are plain dicts, encoded once by the socket that sends them. Messages inside frames come from
services/serialize.py; an `end` frame leaves out `siblings` (the client knows the branch layout from the
acknowledgement, and the final save does not read it).
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = 1

Frame = dict[str, Any]


def hello() -> Frame:
    return {"type": "hello", "protocol": PROTOCOL_VERSION}


def pong(ping_id: Any) -> Frame:
    return {"type": "pong", "id": ping_id}


def error(code: str, message: str, ref: Any = None) -> Frame:
    return {"type": "error", "code": code, "message": message, "ref": ref}


def conversation(ref: Any, snapshot: dict) -> Frame:
    """The reply to `open` and `select`: the conversation and its active branch (services/transcript.py)."""
    return {"type": "conversation", "ref": ref, **snapshot}


def ack(ref: Any, command: str, **payload: Any) -> Frame:
    """A command was done: for turns, with the new messages (services/turns.turn_ack)."""
    return {"type": "ack", "ref": ref, "command": command, **payload}


def turn(turn_ack: dict) -> Frame:
    """A turn's new messages for the conversation's other tabs (the sender ignores ids it knows)."""
    return {"type": "turn", **turn_ack}


def status(conversation_id: str, message_id: str, status: str, provider: str, model: str) -> Frame:
    return {"type": "status", "conversation": conversation_id, "message": message_id, "status": status,
            "provider": provider, "model": model}  # fmt: skip


def retrying(conversation_id: str, message_id: str, attempt: int, attempts: int, provider: str) -> Frame:
    """No first token yet: the provider failed and is being asked again ("Retrying (2 of 3)…")."""
    return {"type": "retrying", "conversation": conversation_id, "message": message_id, "attempt": attempt,
            "attempts": attempts, "provider": provider}  # fmt: skip


def delta(conversation_id: str, message_id: str, offset: int, text: str) -> Frame:
    """`text` of the answer starting at character `offset` (Unicode code points)."""
    return {"type": "delta", "conversation": conversation_id, "message": message_id, "offset": offset,
            "text": text}  # fmt: skip


def end(conversation_id: str, message: dict) -> Frame:
    """An answer's final state (complete, cancelled, error, interrupted), from services/answers.py."""
    message = {key: value for key, value in message.items() if key != "siblings"}
    return {"type": "end", "conversation": conversation_id, "message": message}


def title(conversation_id: str, title: str) -> Frame:
    return {"type": "title", "conversation": conversation_id, "title": title}
