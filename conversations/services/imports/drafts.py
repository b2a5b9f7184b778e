"""What every format reader produces: a `Draft` per conversation (its messages in any order, linked by parent
keys) and what the import tells the user (`Report`). Readers are liberal: a missing field gets a default, and
a conversation that can't be read raises `Unreadable`, which skips it alone."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.utils import timezone


class Unreadable(Exception):
    """This one conversation can't be read; the rest of the file imports."""


# Marks where an image was that the import could not carry (not in the file, or refused when written).
IMAGE_MISSING = "[image not included in export]"


@dataclass
class DraftImage:
    """An image the file holds, read only when it is written: a zip member by name, or the `data:` URL an
    export carries inline (Open WebUI), decoded then, one image at a time."""

    member: str = ""
    inline: str = ""


@dataclass
class DraftMessage:
    key: str
    parent: str | None
    role: str  # user, assistant or system
    content: str
    created_at: dt.datetime | None = None
    status: str = "complete"
    error: str = ""
    finish_reason: str = ""
    model_name: str = ""
    provider_name: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost: Decimal | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    images: list[DraftImage] = field(default_factory=list)
    # Set by the tree builder: the nearest kept ancestor, and the id the row will get when it is free.
    public_id: str | None = None


@dataclass
class Draft:
    source_id: str  # "<format>:<id in the source>"; idempotent re-import matches on it
    title: str
    messages: list[DraftMessage]
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    current_leaf: str | None = None
    pinned: bool = False
    archived: bool = False
    system_prompt: str = ""
    params: dict = field(default_factory=dict)
    model: str | None = None
    public_id: str | None = None  # ours: the id it had, kept when free so /c/<id> links survive a restore


# What the report says, in words a person understands. Readers count skipped things under these keys.
TOOL_CALL_WORDS = {
    "web": ("web search", "web searches"),
    "code": ("code run", "code runs"),
    "image": ("image generation request", "image generation requests"),
    "canvas": ("canvas edit", "canvas edits"),
    "memory": ("memory update", "memory updates"),
    "artifact": ("artifact edit", "artifact edits"),
    "plugin": ("plugin or tool call", "plugin or tool calls"),
}


@dataclass
class Report:
    conversations: int = 0  # written (new or with something new)
    messages: int = 0
    images: int = 0
    already_here: int = 0  # conversations imported before, with nothing new
    format: str = ""
    skipped: Counter = field(default_factory=Counter)  # plain-words reason -> count
    tools: Counter = field(default_factory=Counter)  # TOOL_CALL_WORDS key -> count
    problems: list[str] = field(default_factory=list)  # conversations that could not be read (first few)
    instructions_imported: bool = False  # our export's custom instructions applied (the user had none)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def unreadable(self, title: str, why: str) -> None:
        self.skipped["conversations that could not be read"] += 1
        if len(self.problems) < 20:
            self.problems.append(f"{title or 'A conversation without a title'}: {why}")

    def to_dict(self) -> dict:
        skipped = [{"reason": reason, "count": n} for reason, n in sorted(self.skipped.items())]
        for kind, n in sorted(self.tools.items()):
            one, many = TOOL_CALL_WORDS.get(kind, TOOL_CALL_WORDS["plugin"])
            skipped.append({"reason": one if n == 1 else many, "count": n})
        return {
            "format": self.format,
            "conversations": self.conversations,
            "messages": self.messages,
            "images": self.images,
            "already_here": self.already_here,
            "skipped": skipped,
            "problems": self.problems,
            "custom_instructions": self.instructions_imported,
        }


def when(value, fallback: dt.datetime | None = None) -> dt.datetime | None:
    """A timestamp from seconds (or milli-, micro- or nanoseconds) since the epoch or an ISO string; `fallback`
    otherwise."""
    if isinstance(value, bool) or value is None:
        return fallback
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        if not math.isfinite(seconds):
            return fallback
        for _ in range(3):  # milliseconds (JavaScript's Date.now()), micro- or nanoseconds
            if abs(seconds) > 1e11:
                seconds /= 1000
        try:
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return fallback
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return when(float(text), fallback)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return fallback


def text(value, limit: int | None = None) -> str:
    out = value if isinstance(value, str) else ("" if value is None else str(value))
    return out[:limit] if limit else out


def number(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if 0 <= n < 2**31 else None


def money(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and abs(amount) < Decimal("1e8") else None


def now() -> dt.datetime:
    return timezone.now()
