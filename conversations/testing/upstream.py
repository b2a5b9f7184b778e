"""A faithful, scriptable fake of OpenAI's Chat Completions API, served over real HTTP on 127.0.0.1.

Every test and benchmark of the project talks to this instead of the internet. It is a hand-written
HTTP/1.1 server on raw asyncio streams (no framework) because the fault modes need byte-level control of
what goes on the wire and when: split writes, CRLF line endings, abrupt closes, stalls.

Usage::

    from conversations.testing.upstream import UpstreamSimulator, Reply, Fault

    with UpstreamSimulator() as sim:                 # port 0: the OS picks a free port
        sim.enqueue(Reply(text="Hi there!", token_delay=0.01), Reply(fault=Fault.RATE_LIMIT, retry_after=1))
        ...point the client at sim.base_url ("http://127.0.0.1:<port>/v1") with any API key...
        sim.wait_for_requests(1)[0].json["messages"]

Each ``POST .../chat/completions`` takes the next queued :class:`Reply` (FIFO), or ``sim.default`` when the
queue is empty. Every request on every path is recorded (``sim.requests``) before it is answered. A client
that goes away before a response is complete is recorded in ``sim.disconnects``.

Paths served
------------
``POST /v1/chat/completions``      OpenAI Chat Completions, streamed (SSE, chunked) or not.
``POST /api/v1/chat/completions``  The same, for clients configured with an OpenRouter-style base URL.
``POST /aimlapi/v1/chat/completions``  The same, for an AI/ML API-style base URL (``sim.aimlapi_base_url``).
``GET  /v1/models``                OpenAI list: ``{"object": "list", "data": [{id, object, created, owned_by}]}``.
``GET  /v1/models/<id>``           One OpenAI model, or 404 ``model_not_found``.
``GET  /api/v1/models``            OpenRouter list: context_length, architecture.input_modalities, pricing
                                   (USD per token, as strings), top_provider, supported_parameters.
``GET  /aimlapi/models``           AI/ML API list: a bare JSON array of {id, type, info{contextLength,
                                   maxTokens}, features[]}.
anything else                      404 with OpenAI's ``Invalid URL (METHOD /path)`` error JSON.

Wire details
------------
* Streaming responses use ``Transfer-Encoding: chunked`` on a keep-alive connection, one HTTP chunk per
  SSE event (or per 1-3 byte piece with ``Reply.split_writes``), so httpx sees the same framing as from
  OpenAI. Non-streamed and error responses carry ``Content-Length``.
* "Deltas" (what ``Reply.fault_after`` and ``Disconnect.tokens_sent`` count) are the reasoning, refusal and
  content delta events after the initial role chunk.
* A ``model`` whose name is text-only (``gpt-4``, ``gpt-3.5-turbo``...) is answered with OpenAI's 400
  ``Invalid content type. image_url is only supported by certain models.`` when the request has image parts.
* ``sim.required_api_key`` (default None: anything goes) makes requests without that bearer key get 401.
* A body larger than ``sim.max_body_bytes`` (64 MiB) gets Cloudflare's HTML 413 unread, and the connection
  closes. ``Expect: 100-continue`` (curl, bodies over 1 KiB) is answered.
* ``reset()`` restores a fresh state except for connections that are still open.

This module must not import Django: it is used by plain pytest runs and by benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import http
import itertools
import json
import random
import re
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

__all__ = [
    "DEMO_REPLY_TEXT",
    "TITLE_REQUEST_PREFIX",
    "Disconnect",
    "Fault",
    "RecordedRequest",
    "Reply",
    "UpstreamSimulator",
    "estimate_prompt_tokens",
    "split_tokens",
    "title_from_prompt",
]

# Word-ish tokens that keep their leading whitespace, so "".join(split_tokens(t)) == t.
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
# Rough BPE-like count for prompt estimates: words and punctuation marks.
_WORD_RE = re.compile(r"\w+|[^\w\s]")

MAX_HEAD_BYTES = 64 * 1024
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn (see _run)
MAX_BODY_BYTES = 64 * 1024 * 1024

# Models OpenAI rejects image parts for (gate uploads by a vision allowlist: UPSTREAM_API.md section 2).
TEXT_ONLY_MODELS = frozenset(
    {
        "gpt-4",
        "gpt-4-0613",
        "gpt-4-0314",
        "gpt-4-32k",
        "gpt-3.5-turbo",
        "gpt-3.5-turbo-0125",
        "gpt-3.5-turbo-1106",
        "openai/gpt-4",
        "openai/gpt-3.5-turbo",
    }
)

DEMO_REPLY_TEXT = (
    "Hi! I'm the **upstream simulator**: a local stand-in for an OpenAI-compatible API, "
    "so no real model wrote this answer.\n\n"
    "Here is a small code block to check rendering:\n\n"
    "```python\n"
    "def greet(name: str) -> str:\n"
    '    return f"Hello, {name}!"\n'
    "```\n\n"
    "A table:\n\n"
    "| Model | Context | Vision |\n"
    "|---|---:|:---:|\n"
    "| gpt-4o | 128k | yes |\n"
    "| gpt-4o-mini | 128k | yes |\n\n"
    "And some math, inline \\(e^{i\\pi} + 1 = 0\\) and on its own line:\n\n"
    "\\[\\int_0^1 x^2 \\, dx = \\frac{1}{3}\\]\n\n"
    "- Replies stream token by token.\n"
    "- Point `OPENAI_BASE_URL` at a real provider to talk to a real model.\n"
)

# What the site asks a title model (conversations/services/titles.py): recognised so that a simulator with
# `title_replies` answers it with a few words of the person's first message instead of the demo answer.
TITLE_REQUEST_PREFIX = "Write a short title"
_TITLE_USER_LINE = re.compile(r"^User: (.*?)(?:\n\nAssistant:|$)", re.S)


def title_from_prompt(body: Any) -> str | None:
    """A short title drawn from a title request's prompt, or None when `body` is not a title request."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or len(messages) < 2:
        return None
    system, user = messages[0], messages[-1]
    if not (isinstance(system, dict) and str(system.get("content", "")).startswith(TITLE_REQUEST_PREFIX)):
        return None
    content = user.get("content", "") if isinstance(user, dict) else ""
    match = _TITLE_USER_LINE.match(content if isinstance(content, str) else "")
    words = re.findall(r"[\w'\u2019-]+", match.group(1) if match else "")[:5]  # and curly apostrophes
    if not words:
        return "New conversation"
    title = " ".join(words)
    return title[0].upper() + title[1:]


def split_tokens(text: str) -> list[str]:
    """Split text into word-ish deltas that keep whitespace ("".join(result) == text)."""
    return list(_split_tokens(text))


@functools.lru_cache(maxsize=64)
def _split_tokens(text: str) -> tuple[str, ...]:
    # A benchmark streams the same reply thousands of times, and each answer asked for its tokens three times.
    return tuple(_TOKEN_RE.findall(text))


def _count_words(text: Any) -> int:
    return len(_WORD_RE.findall(text)) if isinstance(text, str) else 0


def estimate_prompt_tokens(body: Any) -> int:
    """A rough prompt token count for a chat request body: ~1 per word/punctuation, 4 per message, images
    85 (detail low) or 765 (a 1024x1024 image at high detail), 3 for the reply priming."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return 0
    total = 3
    for message in body["messages"]:
        total += 4
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += _count_words(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    total += _count_words(part.get("text"))
                elif part.get("type") == "image_url":
                    image = part.get("image_url")
                    detail = image.get("detail") if isinstance(image, dict) else None
                    total += 85 if detail == "low" else 765
    return total


class Fault(enum.Enum):
    """What goes wrong with a reply. HTTP faults answer with an error status before any stream starts;
    mid-stream faults happen after ``Reply.fault_after`` deltas of an otherwise normal stream."""

    INVALID_KEY = "invalid_key"  # 401 invalid_api_key
    MODEL_NOT_FOUND = "model_not_found"  # 404 model_not_found
    RATE_LIMIT = "rate_limit"  # 429 rate_limit_exceeded (+ Retry-After / retry-after-ms per Reply)
    INSUFFICIENT_QUOTA = "insufficient_quota"  # 429 insufficient_quota (must not be retried)
    SERVER_ERROR = "server_error"  # Reply.status (500/502/503), JSON error
    HTML_413 = "html_413"  # 413 Cloudflare HTML page, text/html
    CONTEXT_TOO_LONG = "context_too_long"  # 400 context_length_exceeded
    IMAGE_NOT_SUPPORTED = "image_not_supported"  # 400 "Invalid content type. image_url is only supported..."
    MIDSTREAM_ERROR_OPENAI = "midstream_error_openai"  # data: {"error": {...}} then end of body
    MIDSTREAM_ERROR_OPENROUTER = "midstream_error_openrouter"  # error + finish_reason "error", end of body
    DROP = "drop"  # TCP close in the middle of the chunked body: no finish, no [DONE]
    STALL = "stall"  # silence for Reply.stall_seconds, connection open, then the stream resumes
    NO_DONE = "no_done"  # finish chunk (and usage if asked) but the body ends without data: [DONE]

    @property
    def is_http_error(self) -> bool:
        return self in _HTTP_FAULTS


_HTTP_FAULTS = frozenset(
    {
        Fault.INVALID_KEY,
        Fault.MODEL_NOT_FOUND,
        Fault.RATE_LIMIT,
        Fault.INSUFFICIENT_QUOTA,
        Fault.SERVER_ERROR,
        Fault.HTML_413,
        Fault.CONTEXT_TOO_LONG,
        Fault.IMAGE_NOT_SUPPORTED,
    }
)
# Faults that interrupt the delta loop at fault_after (NO_DONE acts at the end of the stream instead).
_MIDSTREAM_FAULTS = frozenset(
    {Fault.MIDSTREAM_ERROR_OPENAI, Fault.MIDSTREAM_ERROR_OPENROUTER, Fault.DROP, Fault.STALL}
)


@dataclass
class Reply:
    """One scripted answer to a chat completion request."""

    text: str = "Hello! This is the upstream simulator."
    # Explicit content deltas; default split_tokens(text). Ignored when `refusal` is set.
    tokens: list[str] | None = None
    ttft: float = 0.0  # seconds between the role chunk and the first delta
    token_delay: float = 0.0  # seconds between deltas
    finish_reason: str = "stop"
    prompt_tokens: int | None = None  # default: estimate_prompt_tokens(request body)
    completion_tokens: int | None = None  # default: number of deltas
    cached_tokens: int = 0  # usage.prompt_tokens_details.cached_tokens
    fault: Fault | None = None
    fault_after: int = 0  # deltas sent before a mid-stream fault
    status: int | None = None  # SERVER_ERROR status (default 500)
    retry_after: float | str | None = None  # Retry-After header on error responses
    retry_after_ms: int | None = None  # retry-after-ms header on error responses
    stall_seconds: float = 30.0
    # Wire-shape switches.
    keepalive: bool = False  # ": OPENROUTER PROCESSING" before the first events, ": ping" between the rest
    # With keepalive: also send ": OPENROUTER PROCESSING" every this many seconds while waiting (ttft, token
    # delays, and a STALL, which then is silent of data but not of bytes), as OpenRouter does.
    keepalive_interval: float | None = None
    crlf: bool = False  # CRLF line endings in the SSE body
    split_writes: bool = False  # each event written in pieces cycling through split_sizes bytes
    split_sizes: tuple[int, ...] = (1, 2, 3)
    # Pause between pieces. Via httpx each piece is its own chunk anyway; a raw-socket reader needs ~0.001
    # to see separate reads (each pause costs >= ~1 ms: the event loop's timer resolution).
    split_delay: float = 0.0
    obfuscation: bool = False  # OpenAI's random "obfuscation" padding field on delta chunks
    reasoning: str | None = None  # streamed as delta.<reasoning_field> before the content
    reasoning_field: str = "reasoning"  # "reasoning" (vLLM, OpenRouter) or "reasoning_content" (DeepSeek)
    refusal: str | None = None  # streamed as delta.refusal instead of content (message.content is null)
    model: str | None = None  # model echoed in responses; default: the request's model
    error_message: str | None = None  # overrides the message of an error fault
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    # Escape hatches for odd servers: a verbatim HTTP body (with `status`, default 200, and content_type)...
    raw_body: bytes | str | None = None
    content_type: str = "application/json"
    # ...or verbatim SSE pieces (you write the "data: ...\n\n" framing) sent as a 200 event stream.
    raw_sse: list[bytes | str] | None = None

    def __post_init__(self) -> None:
        if not self.split_sizes or any(size < 1 for size in self.split_sizes):
            raise ValueError("split_sizes must be positive byte counts")

    def content_tokens(self) -> list[str]:
        return list(self.tokens) if self.tokens is not None else split_tokens(self.text)

    def deltas(self) -> list[tuple[str, str]]:
        """(delta field, text) pairs in wire order: reasoning first, then refusal or content."""
        out = [(self.reasoning_field, tok) for tok in split_tokens(self.reasoning or "")]
        if self.refusal is not None:
            out += [("refusal", tok) for tok in split_tokens(self.refusal)]
        else:
            out += [("content", tok) for tok in self.content_tokens()]
        return out


@dataclass
class RecordedRequest:
    """One request as the simulator received it (any path)."""

    index: int
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    json: Any  # parsed body, or None when empty or not JSON
    client: tuple[str, int] | None  # peer address: equal for requests on one keep-alive connection
    at: float  # time.monotonic() when the request was complete

    @property
    def model(self) -> str | None:
        return self.json.get("model") if isinstance(self.json, dict) else None


@dataclass(frozen=True)
class Disconnect:
    """The client went away before its response was complete."""

    request_index: int  # index into sim.requests
    tokens_sent: int  # deltas completely written before the client left
    at: float  # time.monotonic()


class _ClientGone(Exception):
    """The peer closed its side (EOF) or the socket failed while we were answering."""


class _Abort(Exception):
    """End the TCP connection now, in the middle of the response (Fault.DROP)."""


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    too_large: bool = False

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class _Conn:
    """One client connection: a byte buffer over the reader plus a concurrent EOF watcher.

    While a response is being produced the watcher keeps reading, so a client that goes away during ttft,
    token delays or a stall is noticed at once, not at the next write. StreamReader.read() is cancellation
    safe, so stopping the watcher loses no bytes (they land in self.buf for the next request)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_body_bytes = max_body_bytes
        self.buf = bytearray()
        self.eof = False
        self.discard = False  # drop incoming bytes (lingering close after an unread oversized body)
        self.gone = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._pausing: asyncio.Future[None] | None = None  # pause()'s wake-up, also set when the client goes

    async def fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            self.gone.set()
            if self._pausing is not None:
                _wake(self._pausing)
            return False
        if not self.discard:
            self.buf += data
        return True

    async def _watch(self) -> None:
        while await self.fill():
            pass

    def start_watching(self) -> None:
        if self._watcher is None and not self.eof:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self.fill():
                raise _ClientGone
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def read_line(self, limit: int = MAX_HEAD_BYTES) -> bytes:
        while (idx := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > limit:
                raise _BadRequest(400, "line too long")
            if not await self.fill():
                raise _ClientGone
        line = bytes(self.buf[:idx])
        del self.buf[: idx + 2]
        return line

    async def write(self, data: bytes) -> None:
        if self.gone.is_set() or self.writer.is_closing():
            raise _ClientGone
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise _ClientGone from exc

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up with _ClientGone as soon as the client disconnects."""
        if self.gone.is_set():
            raise _ClientGone
        if seconds <= 0:
            return
        # One future and one timer, woken by the timer or by the watcher seeing EOF. Not wait_for(gone.wait()):
        # that is a task of its own created and cancelled per token, most of the simulator's CPU in a
        # benchmark (bench/README.md, "Session 11"), and the simulator shares the machine with the server.
        loop = asyncio.get_running_loop()
        self._pausing = waiter = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._pausing = None
        if self.gone.is_set():
            raise _ClientGone

    async def read_request(self) -> _Request | None:
        """Parse one HTTP/1.1 request; None on a clean EOF between requests."""
        while True:
            # RFC 9112 2.2: ignore empty lines before a request line.
            while self.buf[:2] == b"\r\n":
                del self.buf[:2]
            idx = self.buf.find(b"\r\n\r\n")
            if idx >= 0:
                break
            if len(self.buf) > MAX_HEAD_BYTES:
                raise _BadRequest(431, "request header too large")
            if not await self.fill():
                return None
        head = bytes(self.buf[:idx]).decode("latin-1")
        del self.buf[: idx + 4]
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise _BadRequest(400, "malformed header line")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        request = _Request(method.upper(), target, version, headers, b"")
        has_body = "chunked" in headers.get("transfer-encoding", "").lower() or "content-length" in headers
        if has_body and headers.get("expect", "").lower() == "100-continue":
            # curl asks before sending bodies over 1 KiB and would otherwise wait a second for us.
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            request.body = await self._read_chunked_body()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError as exc:
                raise _BadRequest(400, "bad content-length") from exc
            if length > self.max_body_bytes:
                # Don't read it: answer like Cloudflare's edge and close the connection.
                request.too_large = True
            else:
                request.body = await self.read_exact(length)
        return request

    async def _read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            size_line = await self.read_line()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequest(400, "bad chunk size") from exc
            if size == 0:
                while await self.read_line():  # trailers, up to the empty line
                    pass
                return bytes(body)
            body += await self.read_exact(size)
            await self.read_exact(2)  # CRLF after the chunk data
            if len(body) > self.max_body_bytes:
                raise _BadRequest(413, "body too large")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _http_date() -> str:
    return formatdate(usegmt=True)


def _response_head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _dumps(obj: Any) -> str:
    # Compact like OpenAI, and raw UTF-8 (not \u escapes) so multi-byte characters really cross writes.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _random_id(prefix: str, n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(random.choices(alphabet, k=n))


def _openai_error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _mask_key(authorization: str) -> str:
    key = authorization.removeprefix("Bearer ").strip()
    return f"{key[:3]}*{'*' * 10}{key[-4:]}" if len(key) > 8 else "sk-***"


# Stands in for the delta while delta_json's template is made: a string no chunk otherwise holds.
_TEMPLATE_MARKER = "\x00delta\x00"


def _chunk_frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class _Completion:
    """Per-response identity shared by every chunk of one completion."""

    def __init__(self, request: RecordedRequest, reply: Reply) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        self.id = _random_id("chatcmpl-", 29)
        self.created = int(time.time())
        self.model = reply.model or str(body.get("model", ""))
        self.fingerprint = "fp_" + uuid.uuid4().hex[:10]
        stream_options = body.get("stream_options")
        self.include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        self.request_id = "req_" + uuid.uuid4().hex
        self.obfuscation = reply.obfuscation
        self._template: tuple[str, str] | None = None  # delta_json's text around the delta
        deltas = reply.deltas()
        reasoning_tokens = sum(1 for name, _ in deltas if name == reply.reasoning_field)
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else estimate_prompt_tokens(body)
        completion = reply.completion_tokens if reply.completion_tokens is not None else len(deltas)
        self.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def chunk(self, choices: list[dict], *, usage: dict | None = None, **extra: Any) -> dict:
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }
        if self.include_usage:
            obj["usage"] = usage  # null on every chunk but the last, like OpenAI
        obj.update(extra)
        if self.obfuscation and choices:
            obj["obfuscation"] = _random_id("", random.randint(2, 12))
        return obj

    def delta_chunk(self, delta: dict, finish_reason: str | None = None, **extra: Any) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.chunk([choice], **extra)

    def delta_json(self, delta: dict) -> str:
        """`_dumps(self.delta_chunk(delta))`, the same text, from a template made once per completion: a token's
        event is most of the simulator's work in a benchmark, and the simulator shares the machine with the
        server it measures (bench/README.md, "Session 14")."""
        if self.obfuscation:  # a random field per chunk: no template
            return _dumps(self.delta_chunk(delta))
        if self._template is None:
            marker = _dumps(_TEMPLATE_MARKER)
            prefix, found, suffix = _dumps(self.delta_chunk(_TEMPLATE_MARKER)).partition(marker)  # type: ignore[arg-type]
            self._template = (prefix, suffix) if found else ("", "")
        prefix, suffix = self._template
        if not prefix:
            return _dumps(self.delta_chunk(delta))
        return prefix + _dumps(delta) + suffix


class _SseWriter:
    """Writes SSE events as HTTP chunks, honouring the reply's wire-shape switches."""

    def __init__(self, conn: _Conn, reply: Reply) -> None:
        self.conn = conn
        self.reply = reply
        self.nl = "\r\n" if reply.crlf else "\n"
        self._sizes = itertools.cycle(reply.split_sizes) if reply.split_writes else None
        self.deltas_sent = 0
        self.events_sent = 0

    async def send(self, payload: bytes) -> None:
        if self._sizes is None:
            await self.conn.write(_chunk_frame(payload))
            return
        # One HTTP chunk per tiny piece: h11/httpx hand each chunk to the client separately, so the
        # client's SSE parser really sees events and UTF-8 sequences cut in the middle.
        pos = 0
        while pos < len(payload):
            size = next(self._sizes)
            await self.conn.write(_chunk_frame(payload[pos : pos + size]))
            pos += size
            if self.reply.split_delay > 0:
                await self.conn.pause(self.reply.split_delay)

    async def data(self, obj: dict | str) -> None:
        text = obj if isinstance(obj, str) else _dumps(obj)
        if self.reply.keepalive and self.events_sent > 0:
            await self.comment("OPENROUTER PROCESSING" if self.events_sent == 1 else "ping")
        await self.send(f"data: {text}{self.nl}{self.nl}".encode())
        self.events_sent += 1

    async def comment(self, text: str) -> None:
        await self.send(f": {text}{self.nl}{self.nl}".encode())

    async def wait(self, seconds: float) -> None:
        """Pause between events, with keep-alive comments meanwhile when the reply asks for them."""
        interval = self.reply.keepalive_interval
        if not (self.reply.keepalive and interval and interval > 0):
            await self.conn.pause(seconds)
            return
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            await self.conn.pause(min(interval, remaining))
            if deadline - time.monotonic() > 0:
                await self.comment("OPENROUTER PROCESSING")

    async def end(self) -> None:
        await self.conn.write(b"0\r\n\r\n")


# ---------------------------------------------------------------------------------------------- catalogs

_CREATED = 1715367049  # a fixed, plausible Unix time so model lists are stable

_OPENAI_MODELS = [
    ("gpt-4o", "system"),
    ("gpt-4o-2024-05-13", "system"),
    ("gpt-4o-2024-08-06", "system"),
    ("gpt-4o-2024-11-20", "system"),
    ("chatgpt-4o-latest", "system"),
    ("gpt-4o-mini", "system"),
    ("gpt-4o-mini-2024-07-18", "system"),
    ("gpt-4-turbo", "system"),
    ("gpt-4", "openai"),
    ("gpt-3.5-turbo", "openai"),
    # Non-chat models are listed too by OpenAI; a model sync must filter them out.
    ("text-embedding-3-small", "system"),
    ("dall-e-3", "system"),
    ("whisper-1", "openai-internal"),
]


def openai_models_payload() -> dict:
    return {
        "object": "list",
        "data": [
            {"id": mid, "object": "model", "created": _CREATED, "owned_by": owner}
            for mid, owner in _OPENAI_MODELS
        ],
    }


def _openrouter_model(
    mid: str, name: str, ctx: int, max_out: int, prompt: str, completion: str, image: str, vision: bool
) -> dict:
    inputs = ["text", "image", "file"] if vision else ["text"]
    return {
        "id": mid,
        "canonical_slug": mid,
        "name": name,
        "created": _CREATED,
        "description": f"{name} (served by the upstream simulator).",
        "context_length": ctx,
        "architecture": {
            "modality": "text+image->text" if vision else "text->text",
            "input_modalities": inputs,
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": prompt,
            "completion": completion,
            "request": "0",
            "image": image,
            "web_search": "0",
            "internal_reasoning": "0",
        },
        "top_provider": {"context_length": ctx, "max_completion_tokens": max_out, "is_moderated": True},
        "per_request_limits": None,
        "supported_parameters": [
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "frequency_penalty",
            "presence_penalty",
            "seed",
            "response_format",
            "tools",
            "tool_choice",
        ],
    }


def openrouter_models_payload() -> dict:
    return {
        "data": [
            _openrouter_model(
                "openai/gpt-4o", "OpenAI: GPT-4o", 128000, 16384, "0.0000025", "0.00001", "0.003613", True
            ),
            _openrouter_model(
                "openai/gpt-4o-mini",
                "OpenAI: GPT-4o-mini",
                128000,
                16384,
                "0.00000015",
                "0.0000006",
                "0.000217",
                True,
            ),
            _openrouter_model("openai/gpt-4", "OpenAI: GPT-4", 8191, 4096, "0.00003", "0.00006", "0", False),
            _openrouter_model(
                "meta-llama/llama-3.1-8b-instruct",
                "Meta: Llama 3.1 8B Instruct",
                131072,
                16384,
                "0.00000002",
                "0.00000003",
                "0",
                False,
            ),
        ]
    }


def aimlapi_models_payload() -> list[dict]:
    def chat(mid: str, name: str, ctx: int, max_tokens: int, vision: bool) -> dict:
        features = ["openai/chat-completion", "openai/chat-completion.stream"]
        if vision:
            features.append("openai/chat-completion.vision")
        return {
            "id": mid,
            "type": "chat-completion",
            "info": {
                "name": name,
                "developer": "Open AI",
                "description": f"{name} (served by the upstream simulator).",
                "contextLength": ctx,
                "maxTokens": max_tokens,
                "url": "https://aimlapi.com/models",
                "docs_url": "https://docs.aimlapi.com/",
            },
            "features": features,
            "endpoints": ["/v1/chat/completions"],
        }

    return [
        chat("gpt-4o", "GPT-4o", 128000, 16384, True),
        chat("gpt-4o-mini", "GPT-4o mini", 128000, 16384, True),
        chat("gpt-4", "GPT-4", 8192, 8192, False),
        {
            "id": "dall-e-3",
            "type": "image",
            "info": {"name": "DALL-E 3", "developer": "Open AI", "contextLength": None, "maxTokens": None},
            "features": ["openai/image-generation"],
            "endpoints": ["/v1/images/generations"],
        },
    ]


_CLOUDFLARE_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    "<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_SERVER_ERROR_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}

CHAT_PATHS = frozenset({"/v1/chat/completions", "/api/v1/chat/completions", "/aimlapi/v1/chat/completions"})


# ------------------------------------------------------------------------------------------- simulator


class UpstreamSimulator:
    """A real HTTP server on a background thread that answers like OpenAI's Chat Completions API."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: Reply | None = None) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._initial_default = default or Reply()
        self._default = self._initial_default
        self._lock = threading.Condition()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._disconnects: list[Disconnect] = []
        self._disconnect_cursor = 0
        # Set to a key to make requests without "Authorization: Bearer <key>" fail with 401.
        self.required_api_key: str | None = None
        # Bodies declared larger than this get Cloudflare's HTML 413 without being read.
        self.max_body_bytes = MAX_BODY_BYTES
        # Answer the site's title requests with a title drawn from their prompt when no reply is queued for
        # them (the CLI turns this on; tests script their titles).
        self.title_replies = False
        # Called on the server thread for every recorded request (e.g. the CLI logs them). Keep it fast.
        self.on_request: Callable[[RecordedRequest], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._start_error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> UpstreamSimulator:
        """Start serving on a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        ready = threading.Event()
        self._start_error = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, ready), name="upstream-simulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("simulator did not start within 10 s")
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = self._loop = None
            raise self._start_error
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                # A burst of answers opens hundreds of connections at once; past asyncio's default backlog of
                # 100 the kernel drops SYNs, and each dropped one costs its client a 1 s retransmit (the load
                # bench saw 1.2 s at p95 from that alone). Real servers listen with thousands (somaxconn).
                asyncio.start_server(self._handle, self.host, self._requested_port, backlog=LISTEN_BACKLOG)
            )
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # e.g. port in use: hand it to start()
            self._start_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving: cancel every connection (stalled ones too) and join the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._thread = self._loop = self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        current = asyncio.current_task()
        # Connection tasks and their EOF watchers: everything but us.
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL: http://127.0.0.1:<port>/v1"""
        return f"{self.origin}/v1"

    @property
    def openrouter_base_url(self) -> str:
        return f"{self.origin}/api/v1"

    @property
    def aimlapi_base_url(self) -> str:
        """AI/ML API-style base URL: chat at <base>/chat/completions, its bare-array model list one level up
        (<origin>/aimlapi/models), as api.aimlapi.com/v1 and api.aimlapi.com/models."""
        return f"{self.origin}/aimlapi/v1"

    @property
    def aimlapi_models_url(self) -> str:
        return f"{self.origin}/aimlapi/models"

    # -- scripting ---------------------------------------------------------------------------------------

    @property
    def default(self) -> Reply:
        with self._lock:
            return self._default

    @default.setter
    def default(self, reply: Reply) -> None:
        with self._lock:
            self._default = reply

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each chat completion request takes the next one (FIFO)."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Number of queued replies not yet taken."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget queued replies, recorded requests and disconnects; restore the constructor's default
        reply, required_api_key and max_body_bytes. Open connections stay open. (A response still in flight
        may record a Disconnect whose request_index predates the reset.)"""
        self.required_api_key = None
        self.max_body_bytes = MAX_BODY_BYTES
        self.title_replies = False
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._disconnects.clear()
            self._disconnect_cursor = 0
            self._default = self._initial_default

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else self._default

    # -- observation -------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path in CHAT_PATHS]

    @property
    def disconnects(self) -> list[Disconnect]:
        with self._lock:
            return list(self._disconnects)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least n requests were recorded; return them all. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"saw {len(self._requests)} of {n} requests within {timeout} s")
                self._lock.wait(remaining)
            return list(self._requests)

    def wait_for_disconnect(self, timeout: float = 5.0) -> Disconnect:
        """Block until the next not-yet-returned client disconnect. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (found := self._take_disconnect()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no client disconnect within {timeout} s")
                self._lock.wait(remaining)
            return found

    async def await_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """wait_for_requests for async tests: polls without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self._requests) >= n:
                    return list(self._requests)
                seen = len(self._requests)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"saw {seen} of {n} requests within {timeout} s")
            await asyncio.sleep(0.01)

    async def await_disconnect(self, timeout: float = 5.0) -> Disconnect:
        """wait_for_disconnect for async tests: polls without blocking the caller's event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = self._take_disconnect()
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no client disconnect within {timeout} s")
            await asyncio.sleep(0.01)

    def _take_disconnect(self) -> Disconnect | None:  # caller holds the lock
        if self._disconnect_cursor < len(self._disconnects):
            self._disconnect_cursor += 1
            return self._disconnects[self._disconnect_cursor - 1]
        return None

    def _record(self, request: _Request, client: tuple[str, int] | None) -> RecordedRequest:
        path, _, query = request.target.partition("?")
        try:
            parsed = json.loads(request.body) if request.body else None
        except ValueError:  # includes UnicodeDecodeError
            parsed = None
        with self._lock:
            recorded = RecordedRequest(
                index=len(self._requests),
                method=request.method,
                path=path,
                query=query,
                headers=dict(request.headers),
                body=request.body,
                json=parsed,
                client=client,
                at=time.monotonic(),
            )
            self._requests.append(recorded)
            self._lock.notify_all()
        if self.on_request is not None:
            self.on_request(recorded)
        return recorded

    def _record_disconnect(self, request_index: int, tokens_sent: int) -> None:
        with self._lock:
            self._disconnects.append(Disconnect(request_index, tokens_sent, time.monotonic()))
            self._lock.notify_all()

    # -- connection handling -----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = _Conn(reader, writer, self.max_body_bytes)
        peer = writer.get_extra_info("peername")
        client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        abrupt = False
        try:
            while True:
                try:
                    request = await conn.read_request()
                except _BadRequest as exc:
                    body = _dumps(_openai_error(str(exc), "invalid_request_error")).encode()
                    await self._send(conn, exc.status, body, keep_alive=False)
                    break
                if request is None:
                    break
                recorded = self._record(request, client)
                conn.start_watching()
                try:
                    keep_alive = await self._respond(conn, request, recorded)
                finally:
                    await conn.stop_watching()
                if not keep_alive or conn.eof:
                    break
        except _Abort:
            # Fault.DROP: flush what was written (the client must see the deltas), then FIN, with the
            # chunked body unterminated. Not a reset: a RST could discard deltas the client has not read.
            pass
        except (_ClientGone, ConnectionError, OSError):
            abrupt = True
        except asyncio.CancelledError:
            # Only stop() cancels connection tasks, and nobody awaits them. Ending normally instead of
            # re-raising keeps Python 3.11's StreamReaderProtocol callback (which calls task.exception()
            # on a cancelled task) from logging a spurious traceback.
            abrupt = True
        finally:
            self._writers.discard(writer)
            if abrupt:
                writer.transport.abort()
            else:
                writer.close()

    async def _send(
        self,
        conn: _Conn,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        keep_alive: bool = True,
    ) -> bool:
        head = [
            ("date", _http_date()),
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("connection", "keep-alive" if keep_alive else "close"),
            *headers,
        ]
        await conn.write(_response_head(status, head) + body)
        return keep_alive

    async def _send_json(
        self,
        conn: _Conn,
        status: int,
        obj: Any,
        request: _Request,
        headers: Iterable[tuple[str, str]] = (),
    ) -> bool:
        request_id = "req_" + uuid.uuid4().hex
        all_headers = [("x-request-id", request_id), ("openai-version", "2020-10-01"), *headers]
        return await self._send(
            conn, status, _dumps(obj).encode(), headers=all_headers, keep_alive=request.keep_alive
        )

    async def _respond(self, conn: _Conn, request: _Request, recorded: RecordedRequest) -> bool:
        """Answer one request; returns whether the connection may serve another."""
        path, method = recorded.path, recorded.method
        if request.too_large:
            # Like Cloudflare's edge: answer 413 without reading the body, then a lingering close (discard
            # what the client still sends, until it hangs up) so our close does not reset the connection
            # and destroy the answer before the client reads it.
            conn.discard = True
            head = [("server", "cloudflare"), ("cf-ray", uuid.uuid4().hex[:16] + "-AMS")]
            body = _CLOUDFLARE_413.encode()
            await self._send(conn, 413, body, content_type="text/html", headers=head, keep_alive=False)
            if conn.writer.can_write_eof():
                conn.writer.write_eof()
            with contextlib.suppress(_ClientGone):
                await conn.pause(2.0)
            return False
        if path in CHAT_PATHS and method == "POST":
            title = title_from_prompt(recorded.json) if self.title_replies else None
            if title is not None and not self.pending:
                return await self._chat(conn, request, recorded, Reply(text=title))
            return await self._chat(conn, request, recorded, self._next_reply())
        if method == "GET" and path == "/v1/models":
            return await self._send_json(conn, 200, openai_models_payload(), request)
        if method == "GET" and path.startswith("/v1/models/"):
            model_id = path.removeprefix("/v1/models/")
            for mid, owner in _OPENAI_MODELS:
                if mid == model_id:
                    obj = {"id": mid, "object": "model", "created": _CREATED, "owned_by": owner}
                    return await self._send_json(conn, 200, obj, request)
            return await self._send_json(conn, 404, self._model_not_found(model_id), request)
        if method == "GET" and path == "/api/v1/models":
            return await self._send_json(conn, 200, openrouter_models_payload(), request)
        if method == "GET" and path == "/aimlapi/models":
            return await self._send_json(conn, 200, aimlapi_models_payload(), request)
        error = _openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")
        return await self._send_json(conn, 404, error, request)

    @staticmethod
    def _model_not_found(model: str) -> dict:
        return _openai_error(
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    # -- chat completions --------------------------------------------------------------------------------

    async def _chat(self, conn: _Conn, request: _Request, recorded: RecordedRequest, reply: Reply) -> bool:
        if reply.raw_body is not None:
            raw = reply.raw_body.encode() if isinstance(reply.raw_body, str) else reply.raw_body
            headers = list(reply.headers.items())
            return await self._send(
                conn,
                reply.status or 200,
                raw,
                content_type=reply.content_type,
                headers=headers,
                keep_alive=request.keep_alive,
            )
        authorization = request.headers.get("authorization", "")
        if self.required_api_key is not None and authorization != f"Bearer {self.required_api_key}":
            return await self._http_fault(conn, request, recorded, Reply(fault=Fault.INVALID_KEY))
        if reply.fault is not None and reply.fault.is_http_error:
            return await self._http_fault(conn, request, recorded, reply)
        body = recorded.json
        if not isinstance(body, dict):
            error = _openai_error(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                "not valid JSON. If you have trouble figuring out how to fix this, please contact us through "
                "our help center at help.openai.com.)",
                "invalid_request_error",
            )
            return await self._send_json(conn, 400, error, request)
        if invalid := self._validate(body):
            return await self._send_json(conn, 400, invalid, request)
        if reply.raw_sse is not None:
            return await self._raw_stream(conn, request, recorded, reply)
        if body.get("stream") is True:
            return await self._stream(conn, request, recorded, reply)
        return await self._complete(conn, request, recorded, reply)

    @staticmethod
    def _validate(body: dict) -> dict | None:
        """The request checks OpenAI makes that a client can trip over; None when the body is fine."""
        model = body.get("model")
        if not model:
            return _openai_error("you must provide a model parameter", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list):
            return _openai_error(
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                "missing_required_parameter",
                "messages",
            )
        for i, message in enumerate(messages):
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "image_url":
                    continue
                if model in TEXT_ONLY_MODELS:
                    return _openai_error(
                        "Invalid content type. image_url is only supported by certain models.",
                        "invalid_request_error",
                        None,
                        f"messages.[{i}].content.[{j}].type",
                    )
                image = part.get("image_url")
                if not isinstance(image, dict):
                    got = "a string" if isinstance(image, str) else type(image).__name__
                    return _openai_error(
                        f"Invalid type for 'messages[{i}].content[{j}].image_url': expected an object, "
                        f"but got {got} instead.",
                        "invalid_request_error",
                        "invalid_type",
                        f"messages[{i}].content[{j}].image_url",
                    )
        return None

    async def _http_fault(
        self, conn: _Conn, request: _Request, recorded: RecordedRequest, reply: Reply
    ) -> bool:
        fault = reply.fault
        model = recorded.model or ""
        headers: list[tuple[str, str]] = []
        if reply.retry_after is not None:
            headers.append(("retry-after", str(reply.retry_after)))
        if reply.retry_after_ms is not None:
            headers.append(("retry-after-ms", str(reply.retry_after_ms)))
        headers += list(reply.headers.items())
        message = reply.error_message
        if fault is Fault.HTML_413:
            head = [("server", "cloudflare"), ("cf-ray", uuid.uuid4().hex[:16] + "-AMS"), *headers]
            return await self._send(
                conn,
                413,
                _CLOUDFLARE_413.encode(),
                content_type="text/html",
                headers=head,
                keep_alive=request.keep_alive,
            )
        if fault is Fault.INVALID_KEY:
            status = 401
            masked = _mask_key(request.headers.get("authorization", ""))
            error = _openai_error(
                message
                or f"Incorrect API key provided: {masked}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        elif fault is Fault.MODEL_NOT_FOUND:
            status = 404
            error = self._model_not_found(model)
            if message:
                error["error"]["message"] = message
        elif fault is Fault.RATE_LIMIT:
            status = 429
            headers += [
                ("x-ratelimit-limit-requests", "500"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "120ms"),
            ]
            error = _openai_error(
                message
                or f"Rate limit reached for {model} in organization org-simulator on requests per min (RPM): "
                "Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
            )
        elif fault is Fault.INSUFFICIENT_QUOTA:
            status = 429
            error = _openai_error(
                message
                or "You exceeded your current quota, please check your plan and billing details. For more "
                "information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                "insufficient_quota",
                "insufficient_quota",
            )
        elif fault is Fault.CONTEXT_TOO_LONG:
            status = 400
            prompt = reply.prompt_tokens or max(estimate_prompt_tokens(recorded.json), 128001)
            error = _openai_error(
                message
                or f"This model's maximum context length is 128000 tokens. However, your messages resulted "
                f"in {prompt} tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            )
        elif fault is Fault.IMAGE_NOT_SUPPORTED:
            status = 400
            error = _openai_error(
                message or "Invalid content type. image_url is only supported by certain models.",
                "invalid_request_error",
                None,
                "messages.[0].content.[1].type",
            )
        else:  # SERVER_ERROR
            status = reply.status or 500
            error = _openai_error(
                message
                or _SERVER_ERROR_MESSAGES.get(status, "The server had an error processing your request."),
                "server_error",
            )
        return await self._send_json(conn, status, error, request, headers)

    def _stream_head(self, completion: _Completion, request: _Request, reply: Reply) -> bytes:
        return _response_head(
            200,
            [
                ("date", _http_date()),
                ("content-type", "text/event-stream; charset=utf-8"),
                ("transfer-encoding", "chunked"),
                ("connection", "keep-alive" if request.keep_alive else "close"),
                ("cache-control", "no-cache, must-revalidate"),
                ("x-request-id", completion.request_id),
                ("openai-version", "2020-10-01"),
                ("openai-processing-ms", str(random.randint(80, 400))),
                ("access-control-expose-headers", "X-Request-ID"),
                *reply.headers.items(),
            ],
        )

    async def _stream(self, conn: _Conn, request: _Request, recorded: RecordedRequest, reply: Reply) -> bool:
        completion = _Completion(recorded, reply)
        sse = _SseWriter(conn, reply)
        deltas = reply.deltas()
        fault = reply.fault if reply.fault in _MIDSTREAM_FAULTS else None
        try:
            await conn.write(self._stream_head(completion, request, reply))
            if reply.keepalive:
                await sse.comment("OPENROUTER PROCESSING")
            role: dict[str, Any] = {"role": "assistant", "content": ""}
            if reply.refusal is not None:
                role = {"role": "assistant", "content": None, "refusal": ""}
            await sse.data(completion.delta_chunk(role))
            for i, (name, token) in enumerate(deltas):
                await sse.wait(reply.ttft if i == 0 else reply.token_delay)
                # STALL returns True (carry on with this delta); the other faults end the response.
                if (
                    fault is not None
                    and i == reply.fault_after
                    and not await self._midstream_fault(sse, completion, fault, reply)
                ):
                    return False
                await sse.data(completion.delta_json({name: token}))
                sse.deltas_sent += 1
            if not deltas:
                await sse.wait(reply.ttft)
            if (
                fault is not None
                and reply.fault_after >= len(deltas)
                and not await self._midstream_fault(sse, completion, fault, reply)
            ):
                return False
            await sse.data(completion.delta_chunk({}, reply.finish_reason))
            if completion.include_usage:
                await sse.data(completion.chunk([], usage=completion.usage))
            if reply.fault is not Fault.NO_DONE:
                await sse.data("[DONE]")
            await sse.end()
        except _ClientGone:
            self._record_disconnect(recorded.index, sse.deltas_sent)
            raise
        # NO_DONE: the body ends properly but the server closes the connection, like a crashing local server.
        return request.keep_alive and reply.fault is not Fault.NO_DONE

    async def _midstream_fault(
        self, sse: _SseWriter, completion: _Completion, fault: Fault, reply: Reply
    ) -> bool:
        """Play a mid-stream fault. True: carry on streaming (STALL); False: the connection is done."""
        if fault is Fault.STALL:
            await sse.wait(
                reply.stall_seconds
            )  # silence (keepalive_interval aside); notices a client leaving
            return True
        if fault is Fault.DROP:
            raise _Abort  # no finish chunk, no [DONE], no chunked terminator: the TCP connection just ends
        if fault is Fault.MIDSTREAM_ERROR_OPENAI:
            message = (
                reply.error_message
                or "The server had an error while processing your request. Sorry about that!"
            )
            await sse.data(_openai_error(message, "server_error"))
        else:  # MIDSTREAM_ERROR_OPENROUTER
            message = reply.error_message or "Provider returned error"
            await sse.data(
                completion.delta_chunk(
                    {"content": ""}, "error", error={"code": 502, "message": message}, provider="OpenAI"
                )
            )
        await sse.end()
        return False

    async def _raw_stream(
        self, conn: _Conn, request: _Request, recorded: RecordedRequest, reply: Reply
    ) -> bool:
        completion = _Completion(recorded, reply)
        sse = _SseWriter(conn, reply)
        try:
            await conn.write(self._stream_head(completion, request, reply))
            for i, piece in enumerate(reply.raw_sse or []):
                await conn.pause(reply.ttft if i == 0 else reply.token_delay)
                await sse.send(piece.encode() if isinstance(piece, str) else piece)
                sse.deltas_sent += 1
            await sse.end()
        except _ClientGone:
            self._record_disconnect(recorded.index, sse.deltas_sent)
            raise
        return request.keep_alive

    async def _complete(
        self, conn: _Conn, request: _Request, recorded: RecordedRequest, reply: Reply
    ) -> bool:
        """Non-streamed answer: the whole generation time passes, then one chat.completion JSON."""
        completion = _Completion(recorded, reply)
        deltas = reply.deltas()
        try:
            if reply.fault is Fault.STALL:
                await conn.pause(reply.stall_seconds)
            await conn.pause(reply.ttft + reply.token_delay * max(len(deltas) - 1, 0))
        except _ClientGone:
            self._record_disconnect(recorded.index, 0)
            raise
        if reply.fault is Fault.DROP:
            raise _Abort
        if reply.fault is Fault.MIDSTREAM_ERROR_OPENAI:
            message = reply.error_message or _SERVER_ERROR_MESSAGES[500]
            return await self._send_json(conn, 500, _openai_error(message, "server_error"), request)
        if reply.fault is Fault.MIDSTREAM_ERROR_OPENROUTER:
            error = {"error": {"code": 502, "message": reply.error_message or "Provider returned error"}}
            return await self._send_json(conn, 502, error, request)
        message: dict[str, Any] = {"role": "assistant"}
        if reply.refusal is not None:
            message.update(content=None, refusal=reply.refusal)
        else:
            message.update(content="".join(reply.content_tokens()), refusal=None)
        if reply.reasoning:
            message[reply.reasoning_field] = reply.reasoning
        message["annotations"] = []
        obj = {
            "id": completion.id,
            "object": "chat.completion",
            "created": completion.created,
            "model": completion.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
            ],
            "usage": completion.usage,
            "service_tier": "default",
            "system_fingerprint": completion.fingerprint,
        }
        headers = [("x-request-id", completion.request_id), *reply.headers.items()]
        return await self._send(
            conn, 200, _dumps(obj).encode(), headers=headers, keep_alive=request.keep_alive
        )
