"""Server-sent events decoding for chat completion streams, on bytes.

Two layers:
- `SSEDecoder` turns arbitrary byte pieces into `ServerSentEvent`s. Lines end at CRLF, LF or CR (mixed freely);
  a blank line ends an event; ':' lines are comments; several `data:` lines are joined with "\\n". Splitting
  happens on bytes and UTF-8 is decoded per event afterwards, so a character cut between two network reads
  is never mangled. A CR at the end of one piece followed by LF at the start of the next is one line end.
- `StreamDecoder` turns those events into typed chunk events (events.py) and raises typed errors for error
  objects inside the stream. It remembers whether the stream really finished, so the client can tell a
  complete answer from a cut one.

Both are plain synchronous objects with no I/O, so they are easy to test and fast (see bench/sse_decoder.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

import orjson

from conversations.llm.errors import LLMError, MidStreamError, error_from_stream_payload
from conversations.llm.events import ChunkEvent, Finish, ReasoningDelta, RefusalDelta, TextDelta, Usage

logger = logging.getLogger(__name__)


def _loads(data: str) -> Any:
    """One chunk's JSON. orjson (in C) parses a typical chunk several times faster than the standard library,
    and a 200-token answer is 200 of them: json.loads was about 4% of the event loop at 100 answers a second
    (bench/README.md, "Load", session 8). What orjson refuses but the standard library reads (a lone surrogate
    escape, an integer past 64 bits, NaN) is read as before; a ValueError still means "not JSON"."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_BOM = b"\xef\xbb\xbf"
_LF = 10
_CR = 13
_COLON = 58
# A single line this long means the peer is not speaking SSE; stop before it eats memory.
MAX_LINE_BYTES = 8 * 1024 * 1024


class ServerSentEvent(NamedTuple):
    event: str  # "message" unless an `event:` field said otherwise
    data: str
    id: str | None = None


class SSEProtocolError(LLMError):
    kind = "protocol_error"

    def _describe(self) -> str:
        return (
            f"{self._who()} sent something that is not an event stream. An administrator should check the "
            "provider's base URL (it should end in /v1)."
        )


class SSEDecoder:
    """Incremental SSE parser. `feed()` pieces as they arrive, then `close()` once at end of stream."""

    __slots__ = ("_buffer", "_data", "_event", "_last_id", "_skip_lf", "_started", "comments")

    def __init__(self) -> None:
        self._buffer = b""  # the unfinished last line
        self._skip_lf = False  # the previous piece ended in CR: a leading LF now belongs to it
        self._started = False  # the UTF-8 byte order mark, if any, has been dealt with
        self._data: list[bytes] = []
        self._event: str | None = None
        self._last_id: str | None = None
        self.comments = 0  # keep-alive comments seen (": OPENROUTER PROCESSING", ": ping")

    def feed(self, piece: bytes) -> list[ServerSentEvent]:
        if not piece:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if piece[0] == _LF:
                piece = piece[1:]
                if not piece:
                    return []
        buf = self._buffer + piece if self._buffer else piece
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buffer = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if end < 0:
            if len(buf) > MAX_LINE_BYTES:
                raise SSEProtocolError("event stream line longer than 8 MiB")
            self._buffer = buf
            return []
        last = len(buf) - 1
        if end == last:
            self._buffer = b""
            if buf[end] == _CR:
                self._skip_lf = True
            # bytes.splitlines splits on exactly \r\n, \r and \n (unlike str.splitlines), as SSE wants.
            return self._lines(buf.splitlines())
        self._buffer = buf[end + 1 :]
        return self._lines(buf[: end + 1].splitlines())

    def close(self) -> list[ServerSentEvent]:
        """End of stream. Leniently treats an unterminated last line and event as complete (some servers end
        with `data: [DONE]` and no blank line); the spec would drop them."""
        lines = [self._buffer] if self._buffer else []
        self._buffer = b""
        lines.append(b"")
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(
                        ServerSentEvent(
                            self._event or "message", raw.decode("utf-8", "replace"), self._last_id
                        )
                    )
                    data.clear()
                self._event = None
                continue
            if line[0] == _COLON:
                self.comments += 1
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
            elif name == b"id" and b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
            # `retry:` and unknown fields are ignored, as the spec says.
        return events


def parse_usage(usage: dict[str, Any]) -> Usage:
    """Usage from a chunk; counts may be missing or null on some servers."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(prompt_details.get("cached_tokens") or 0)
        if isinstance(prompt_details, dict)
        else 0,
        reasoning_tokens=(
            int(completion_details.get("reasoning_tokens") or 0)
            if isinstance(completion_details, dict)
            else 0
        ),
    )


class StreamDecoder:
    """Bytes of a chat.completion.chunk stream in, typed events out.

    After the stream ends (`close()`), `finished` says whether it ended properly: a finish reason was seen, or
    `[DONE]` arrived (a `[DONE]` without a finish reason is taken as "stop": some local servers omit it).
    """

    __slots__ = ("_error", "_sse", "done", "finish_reason", "model_id", "usage")

    def __init__(self, model_id: str = "") -> None:
        self._sse = SSEDecoder()
        self.model_id = model_id  # only used to word errors
        self.done = False  # [DONE] seen; anything after it is ignored
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._error: Exception | None = None  # an error event that followed others in the same piece

    @property
    def comments(self) -> int:
        return self._sse.comments

    @property
    def finished(self) -> bool:
        return self.done or self.finish_reason is not None

    def feed(self, piece: bytes) -> list[ChunkEvent]:
        """The events in `piece`. A piece may hold many events (a read takes whatever arrived): when an error
        event follows others, those are returned first and the error is raised by the next call, so the
        caller sees them in the order the provider sent them (text, then the failure)."""
        self.raise_pending()
        out: list[ChunkEvent] = []
        try:
            for event in self._sse.feed(piece):
                self._interpret(event, out)
        except LLMError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def close(self) -> list[ChunkEvent]:
        self.raise_pending()
        out: list[ChunkEvent] = []
        try:
            for event in self._sse.close():
                self._interpret(event, out, at_eof=True)
        except LLMError as exc:
            if not out:
                raise
            self._error = exc
        return out

    def raise_pending(self) -> None:
        """Raise the error kept back by the last feed(), if any (the caller has handled the events before it)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _interpret(self, event: ServerSentEvent, out: list[ChunkEvent], at_eof: bool = False) -> None:
        if self.done:
            return
        data = event.data
        if not data or data.isspace():
            return  # llama.cpp sends empty `data:` frames
        if len(data) < 16 and data.strip() == "[DONE]":
            self.done = True
            if self.finish_reason is None:
                self.finish_reason = "stop"
                out.append(Finish("stop"))
            return
        try:
            obj = _loads(data)
        except ValueError:
            if at_eof:
                return  # the connection died mid-event; `finished` stays False and the client reports that
            if event.event == "error" or "error" in data.lower():
                raise MidStreamError(data, model_id=self.model_id) from None
            logger.warning("Ignoring a non-JSON event in a completion stream: %.200r", data)
            return
        if type(obj) is not dict:
            return
        if event.event == "error" or obj.get("error") or obj.get("object") == "error":
            err = error_from_stream_payload(obj, model_id=self.model_id)
            err.model_id = err.model_id or self.model_id
            raise err
        choices = obj.get("choices")
        if choices:
            choice = choices[0]  # we always ask for n=1
            delta = choice.get("delta")
            if delta:
                reasoning = delta.get("reasoning") or delta.get("reasoning_content")
                if reasoning and type(reasoning) is str:
                    out.append(ReasoningDelta(reasoning))
                refusal = delta.get("refusal")
                if refusal and type(refusal) is str:
                    out.append(RefusalDelta(refusal))
                content = delta.get("content")
                if content and type(content) is str:
                    out.append(TextDelta(content))
            reason = choice.get("finish_reason")
            if reason:
                if reason == "error":  # OpenRouter's mid-stream failure, when no error object came with it
                    raise MidStreamError(
                        "the provider ended the answer with an error", model_id=self.model_id
                    )
                if self.finish_reason is None:
                    self.finish_reason = reason
                    out.append(Finish(reason))
        usage = obj.get("usage")
        if usage and type(usage) is dict:
            # llama.cpp puts usage on the finish chunk; OpenAI sends it in a chunk of its own after the finish.
            self.usage = parse_usage(usage)
            out.append(self.usage)
