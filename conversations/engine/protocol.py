"""Parsing and validating client frames of the websocket protocol (docs/websocket-protocol.md).

Strict on purpose: a field of the wrong type is an error, never coerced (Django forms would turn 5 into
"5"). A bad frame raises ProtocolError, which the consumer answers with an error frame; nothing is written.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from conversations.services.errors import EMPTY_MESSAGE


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True)
class Command:
    type: str
    data: dict[str, Any]
    ref: Any = None
    received_at: float = 0.0  # time.monotonic() when the frame reached the consumer (metrics: added TTFT)


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be an id string")
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise TypeError("is not a valid id") from exc


def _message_text(value: Any) -> str:
    """A turn's text; blank text becomes "". Images may stand in for it: checked in parse_frame for `send`,
    by turns.do_edit for `edit` (only the service knows whether the edited message has images)."""
    value = _optional_text(value)
    return value if value.strip() else ""


def _optional_text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    if len(value) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise TypeError(f"is longer than {settings.CHAT_MAX_MESSAGE_CHARS} characters")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("must be an integer")
    return value


def _model(value: Any) -> int | str:
    """A model from GET /api/models: its canonical id (a string), or a provider copy's integer id (older
    clients), which means that copy's canonical model."""
    if isinstance(value, str):
        if not 0 < len(value) <= 200:
            raise TypeError("must be a model id from /api/models")
        return value
    return _int(value)


def _offset(value: Any) -> int:
    value = _int(value)
    if value < 0:
        raise TypeError("must not be negative")
    return value


def _number(low: float, high: float):
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise TypeError("must be a number")
        if not low <= value <= high:
            raise TypeError(f"must be between {low:g} and {high:g}")
        return value

    return check


def _max_tokens(value: Any) -> int:
    value = _int(value)
    if not 1 <= value <= 1_000_000:
        raise TypeError("must be between 1 and 1000000")
    return value


def _stop(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > 4 or not all(isinstance(s, str) and s for s in value):
        raise TypeError("must be up to 4 non-empty strings")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("must be true or false")
    return value


PARAMS: dict[str, Any] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "max_tokens": _max_tokens,
    "seed": _int,
    "stop": _stop,
    "json_mode": _bool,
}


def _params(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("must be an object")
    clean = {}
    for key, item in value.items():
        if key not in PARAMS:
            raise TypeError(f"has an unknown parameter {key!r}")
        if item is None:
            continue
        try:
            clean[key] = PARAMS[key](item)
        except TypeError as exc:
            raise TypeError(f"{key} {exc}") from exc
    return clean


def _attachments(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 10:
        raise TypeError("must be a list of at most 10 ids")
    return [_uuid(item) for item in value]


# type -> {field: (validator, required)}. Optional fields may be null or absent.
SCHEMAS: dict[str, dict[str, tuple[Any, bool]]] = {
    "ping": {"id": (lambda v: v, False)},
    "open": {"conversation": (_uuid, True)},
    "send": {
        "conversation": (_uuid, False),
        "text": (_message_text, False),
        "model": (_model, False),
        "params": (_params, False),
        "system_prompt": (_optional_text, False),
        "attachments": (_attachments, False),
    },
    "stop": {"message": (_uuid, True)},
    "regenerate": {"message": (_uuid, True), "model": (_model, False)},
    # May be empty when the edited message has images: the service checks that (turns.do_edit).
    "edit": {"message": (_uuid, True), "text": (_message_text, True), "model": (_model, False)},
    "select": {"message": (_uuid, True)},
    "sync": {"message": (_uuid, True), "offset": (_offset, True)},
}


def parse_frame(text_data: str | None, bytes_data: bytes | None) -> Command:
    received_at = time.monotonic()
    if text_data is None:
        raise ProtocolError("bad_frame", "Frames must be JSON text, not binary.")
    if (
        len(text_data) > settings.CHAT_MAX_FRAME_BYTES
        or len(text_data.encode()) > settings.CHAT_MAX_FRAME_BYTES
    ):
        raise ProtocolError("too_large", f"Frames may be at most {settings.CHAT_MAX_FRAME_BYTES} bytes.")
    try:
        payload = json.loads(text_data)
    except ValueError:
        raise ProtocolError("bad_json", "That frame is not valid JSON.") from None
    except RecursionError:  # e.g. 100 KB of "[": the decoder recurses once per level
        raise ProtocolError("bad_json", "That frame is nested too deeply.") from None
    if not isinstance(payload, dict):
        raise ProtocolError("bad_frame", "A frame must be a JSON object with a type.")
    ref = payload.get("ref")
    if isinstance(ref, bool) or (ref is not None and not isinstance(ref, str | int)):
        raise ProtocolError("invalid", "ref must be a string or an integer.")
    kind = payload.get("type")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ProtocolError("unknown_type", f"Unknown frame type {kind!r}.", ref)
    data: dict[str, Any] = {}
    for name, (check, required) in schema.items():
        value = payload.get(name)
        if value is None:
            if required:
                raise ProtocolError("invalid", f"{name} is required.", ref)
            data[name] = None
            continue
        try:
            data[name] = check(value)
        except TypeError as exc:
            raise ProtocolError("invalid", f"{name} {exc}.", ref) from None
    unknown = set(payload) - set(schema) - {"type", "ref"}
    if unknown:
        raise ProtocolError("invalid", f"Unknown field(s): {', '.join(sorted(unknown))}.", ref)
    if kind == "send":
        data["text"] = data["text"] or ""
        if not data["text"] and not data["attachments"]:
            raise ProtocolError("empty_message", EMPTY_MESSAGE, ref)
    return Command(kind, data, ref, received_at)
