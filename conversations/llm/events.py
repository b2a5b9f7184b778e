"""Typed events a completion stream yields, and the summary left behind when it ends.

The realtime engine pattern-matches on these; it never sees SSE frames, JSON chunks or httpx objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conversations.llm.routes import Route


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the visible answer."""

    text: str


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """A piece of a refusal (OpenAI sends these in `delta.refusal`, separate from content)."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning (`delta.reasoning` or `delta.reasoning_content`)."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The model stopped: stop, length, content_filter, tool_calls (or whatever the server says)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as billed. Usually arrives after Finish, in its own chunk."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Started:
    """Who serves this answer. Yielded once, just before the first token: after it the stream is committed to
    this route and nothing is retried or sent elsewhere. Holds ids and names only (never the Route, which
    carries the API key), so it is safe to log or serialise; `ChatStream.route` has the full Route."""

    provider_name: str
    model_id: str
    provider_id: int | None = None
    chat_model_id: int | None = None
    attempt: int = 1  # 1-based, counted over every route tried
    request_id: str | None = None

    @classmethod
    def for_route(cls, route: Route, attempt: int, request_id: str | None) -> Started:
        return cls(
            route.provider_name, route.model_id, route.provider_id, route.chat_model_id, attempt, request_id
        )


# What the decoder produces (Started is added by the client, which alone knows routes).
ChunkEvent = TextDelta | RefusalDelta | ReasoningDelta | Finish | Usage
StreamEvent = Started | ChunkEvent

# Events that count as "a token reached the caller": once one is delivered, retries and fallback stop.
TOKEN_EVENTS = (TextDelta, RefusalDelta, ReasoningDelta)


@dataclass(slots=True)
class StreamResult:
    """What is known about a stream once it ends (or while it runs). Filled in by the client."""

    route: Route | None = None
    attempts: int = 0
    request_id: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    # The stream ended without a finish reason or [DONE]: the answer is incomplete.
    truncated: bool = False
    # Seconds from the start of the call (including retries) to the first token, and to the end.
    ttft: float | None = None
    duration: float | None = None
    errors: list[Exception] = field(default_factory=list)  # every failed attempt, oldest first

    @property
    def complete(self) -> bool:
        return self.finish_reason is not None and not self.truncated
