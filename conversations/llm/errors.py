"""Typed errors for everything that can go wrong talking to a provider, each with a message a person can act on.

`str(error)` is for logs (class, status, code, upstream detail, request id); `error.user_message` is what the
chat shows. Neither ever contains an API key: errors are built from status, body and a few response headers.

Two flags drive the client (see client.py):
- `retryable`: the same request to the same route may succeed if tried again shortly (5xx, 429, timeouts...).
- `fallback`: another provider's copy of the same model may succeed (dead key, no credits, model missing...).
  Errors about the request itself (too long, images, JSON mode, other 400s) set it False: they'd fail anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

# Models OpenAI has withdrawn from its API: model id -> (date, suggested replacement).
RETIRED_MODELS: dict[str, tuple[str, str]] = {
    "gpt-4": ("2026-10-23", "gpt-4o"),
    "gpt-4-0613": ("2026-10-23", "gpt-4o"),
    "chatgpt-4o-latest": ("2026-02-17", "gpt-4o"),
}

_DETAIL_LIMIT = 300


class LLMError(Exception):
    """Base class. Subclasses set the flags and write `_describe()`."""

    retryable: bool = False
    fallback: bool = True
    kind: ClassVar[str] = "error"  # short stable name for logs and the websocket protocol

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        provider_name: str = "",
        model_id: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = _clip(detail)
        self.status = status
        self.code = code
        self.provider_name = provider_name
        self.model_id = model_id
        self.request_id = request_id
        self.retry_after = retry_after  # seconds the server asked us to wait, if it said
        self.timeout = timeout
        # `x-should-retry: true|false` from the response overrides our own judgement (as the OpenAI SDK does).
        self.should_retry_header: bool | None = None

    @property
    def user_message(self) -> str:
        return _public(self._describe())

    def _describe(self) -> str:
        return f"{self._who()} returned an error: {_sentence(self.detail or 'no detail given')}"

    def _who(self, start: bool = True) -> str:
        """'The provider "Name"', or 'the provider "Name"' mid-sentence."""
        article = "The" if start else "the"
        return f'{article} provider "{self.provider_name}"' if self.provider_name else f"{article} provider"

    def _model(self) -> str:
        return self.model_id or "this model"

    def __str__(self) -> str:
        parts = [type(self).__name__]
        if self.provider_name:
            parts.append(f"provider={self.provider_name}")
        if self.model_id:
            parts.append(f"model={self.model_id}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.detail:
            parts.append(f"detail={self.detail!r}")
        return " ".join(parts)


class NoRouteAvailable(LLMError):
    fallback = False
    kind = "no_route"

    def _describe(self) -> str:
        return "No enabled provider offers this model. Pick another model, or ask an administrator to enable one."


class ProviderMisconfigured(LLMError):
    kind = "provider_misconfigured"

    def _describe(self) -> str:
        return (
            f"{self._who()} can't be used: its stored API key can't be decrypted (the site's encryption key "
            "changed). An administrator needs to enter the key again."
        )


class InvalidAPIKey(LLMError):
    kind = "invalid_api_key"

    def _describe(self) -> str:
        return (
            f"{self._who()} rejected the API key (HTTP 401). An administrator needs to check or replace the key "
            "for this provider."
        )


class PermissionDenied(LLMError):
    kind = "permission_denied"

    def _describe(self) -> str:
        why = f" It said: {_sentence(self.detail)}" if self.detail else ""
        return (
            f"{self._who()} refused access to {self._model()} (HTTP 403). The key may not have access to this "
            f"model, or the provider does not serve this region.{why}"
        )


class QuotaExceeded(LLMError):
    """Out of credits (OpenRouter 402) or over the billing quota (OpenAI 429 insufficient_quota). Never retried:
    waiting does not refill an account."""

    kind = "quota_exceeded"

    def _describe(self) -> str:
        return (
            f"{self._who()} says the account is out of credits or over its quota. An administrator needs to add "
            "credits or raise the limit; trying again won't help until then."
        )


class ProviderRateLimited(LLMError):
    """The provider answered 429 for its rate limit (429 for an exhausted quota is QuotaExceeded)."""

    retryable = True
    kind = "rate_limited"

    def _describe(self) -> str:
        if self.retry_after:
            seconds = max(1, round(self.retry_after))
            wait = f"Wait about {seconds} second{'s' if seconds != 1 else ''} and try again."
        else:
            wait = "Wait a moment and try again."
        return f"{self._who()} is limiting how many requests this site may send right now. {wait}"


class ModelNotFound(LLMError):
    kind = "model_not_found"

    def _describe(self) -> str:
        retired = RETIRED_MODELS.get(self.model_id.removeprefix("openai/"))
        if retired:
            day, replacement = retired
            return (
                f"{self.model_id} is no longer available: OpenAI retired it from its API on {day}. Switch this "
                f"conversation to {replacement}."
            )
        return (
            f"{self._who()} doesn't offer the model {self._model()} (any more). Pick another model; an "
            "administrator can refresh this provider's model list."
        )


class EndpointNotFound(LLMError):
    kind = "endpoint_not_found"

    def _describe(self) -> str:
        return (
            f"{self._who()} answered 404 Not Found for the chat completions endpoint. An administrator should "
            "check the provider's base URL (it should end in /v1)."
        )


class BadRequest(LLMError):
    """The provider rejected the request itself; another provider would too, so no fallback."""

    fallback = False
    kind = "bad_request"

    def _describe(self) -> str:
        return f"{self._who()} rejected the request: {_sentence(self.detail or 'no reason given')}"


class ContextTooLong(BadRequest):
    kind = "context_too_long"

    def _describe(self) -> str:
        return (
            f"This conversation is too long for {self._model()}. Start a new conversation, shorten your message, "
            "or pick a model with a larger context window."
        )


class ImagesNotSupported(BadRequest):
    kind = "images_not_supported"

    def _describe(self) -> str:
        return f"{self._model()} can't read images. Remove the images, or pick a model that supports them."


class JSONModeNeedsJSONWord(BadRequest):
    kind = "json_mode_needs_json_word"

    def _describe(self) -> str:
        return (
            'JSON mode needs the word "json" somewhere in the messages, for example in the system prompt '
            '("Reply in JSON."). Add it, or turn JSON mode off.'
        )


class RequestTooLarge(BadRequest):
    kind = "request_too_large"

    def _describe(self) -> str:
        return (
            f"The request is too large for {self._who(start=False)} (HTTP 413). Send fewer "
            "or smaller images, or start a new conversation."
        )


class UpstreamError(LLMError):
    """5xx, 408, 409 and other answers that usually go away on their own."""

    retryable = True
    kind = "upstream_error"

    def _describe(self) -> str:
        status = f" (HTTP {self.status})" if self.status else ""
        return f"{self._who()} had a server error{status}. Try again in a moment."


class NetworkError(LLMError):
    retryable = True
    kind = "network_error"

    def _describe(self) -> str:
        # No detail here: it is the socket error ("[Errno 111] Connect call failed ('10.0.0.5', 9599)"), which
        # tells a user nothing they can act on and shows our network. It stays in str(error), for the log.
        return (
            f"Couldn't reach {self._who(start=False)}. It may be down, or this server can't reach it. "
            "Try again in a few minutes; if it keeps happening, tell an administrator."
        )


class UpstreamTimeout(LLMError):
    retryable = True
    kind = "timeout"
    phase: ClassVar[str] = "request"

    def _seconds(self) -> str:
        return f"{self.timeout:g} seconds" if self.timeout is not None else "the time limit"


class ConnectTimeout(UpstreamTimeout):
    kind = "connect_timeout"
    phase = "connect"

    def _describe(self) -> str:
        return (
            f"Couldn't connect to {self._who(start=False)} within {self._seconds()}. The "
            "provider may be down or unreachable from this server."
        )


class FirstTokenTimeout(UpstreamTimeout):
    kind = "first_token_timeout"
    phase = "first_token"

    def _describe(self) -> str:
        return (
            f"{self._who()} didn't start answering within {self._seconds()}. It may be overloaded: try again, or "
            "pick another model."
        )


class StallTimeout(UpstreamTimeout):
    kind = "stall_timeout"
    phase = "stall"

    def _describe(self) -> str:
        return (
            f"{self._who()} stopped sending the answer for more than {self._seconds()}, so it was cut off. "
            "The answer is incomplete; try regenerating it."
        )


class TotalTimeout(UpstreamTimeout):
    retryable = False  # the time budget for this answer is spent
    fallback = False
    kind = "total_timeout"
    phase = "total"

    def _describe(self) -> str:
        return (
            f"The answer took longer than {self._seconds()} in total and was stopped. Try again, or ask for a "
            "shorter answer."
        )


class MidStreamError(LLMError):
    """An error reported inside a 200 event stream (OpenAI `{"error":...}`, OpenRouter finish_reason "error")."""

    retryable = True
    kind = "midstream_error"

    def _describe(self) -> str:
        said = f": {_sentence(self.detail)}" if self.detail else "."
        return f"{self._who()} reported an error while answering{said} Try regenerating the answer."


class UpstreamTruncated(LLMError):
    """The stream ended with neither a finish reason nor [DONE]: what arrived is only part of the answer."""

    retryable = True
    kind = "truncated"

    def _describe(self) -> str:
        return (
            f"The connection to {self._who(start=False)} ended before the answer was "
            "complete. The answer is incomplete; try regenerating it."
        )


# ---------------------------------------------------------------------------------------------------------
# Mapping status + body to the classes above.

_CONTEXT_PATTERNS = re.compile(
    r"context[_ ]length|maximum context|context window|too many tokens|prompt is too long|exceed_context_size"
    r"|exceeds the context|input is too long|reduce the length of the messages",
    re.IGNORECASE,
)
_IMAGE_PATTERNS = re.compile(
    r"image_url is only supported|does not support image|doesn't support image|not a multimodal model"
    r"|vision is not supported|image input is not supported|images are not supported",
    re.IGNORECASE,
)
_JSON_WORD_PATTERN = re.compile(r"must contain the word ['\"]?json", re.IGNORECASE)
_QUOTA_PATTERN = re.compile(
    r"insufficient_quota|exceeded your current quota|insufficient credits", re.IGNORECASE
)
_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


# What a socket or OS error adds to a message: "[Errno 111] ", "('127.0.0.1', 9599)", "127.0.0.1:9599".
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
_ADDRESS_TUPLE = re.compile(r"\(\s*'[^']*'\s*,\s*\d+(?:\s*,\s*\d+)*\s*\)")
_IP_ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\[[0-9a-fA-F:]+\](?::\d+)?")


# Stack text a local server may answer with (vLLM, llama.cpp's Python wrappers, FastAPI): the traceback, of
# which only its last line (the exception) says anything to a person, and "File "/srv/...", line 12" frames.
_TRACEBACK = re.compile(r"Traceback \(most recent call last\):.*", re.DOTALL)
_EXCEPTION_LINE = re.compile(r"\b[A-Z][\w.]*(?:Error|Exception|Exit|Interrupt|Fault)\b: ")
_FRAME = re.compile(r'\bFile "[^"]*", line \d+(?:, in [\w.<>]+)?')
# Addresses of a private network, in a URL or as host:port. A public https link (a provider's documentation)
# stays: it names no machine of ours and helps.
_URL = re.compile(r"\bhttps?://[^\s\"'<>)]+", re.IGNORECASE)
_HOST_PORT = re.compile(r"\b(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+):\d{2,5}\b", re.IGNORECASE)
_PRIVATE_SUFFIXES = (".local", ".internal", ".lan", ".corp", ".home", ".localdomain", ".intranet")
_HIDDEN = "(address hidden)"


def _public(text: str) -> str:
    """A user-facing message without error numbers, network addresses or stack text, whatever a provider or
    the OS put in the detail (the full text stays in str(error), which goes to the log and to staff)."""
    text = _TRACEBACK.sub(_last_exception, text)
    text = _FRAME.sub("", text)
    text = _URL.sub(lambda m: _HIDDEN if _is_private_url(m.group(0)) else m.group(0), text)
    text = _HOST_PORT.sub(_HIDDEN, text)
    text = _ADDRESS_TUPLE.sub("", _ERRNO.sub("", text))
    text = _IP_ADDRESS.sub(_HIDDEN, text)
    return re.sub(r"\s+([.,:;])", r"\1", text).strip()


def _last_exception(match: re.Match) -> str:
    """A traceback as its last line ("RuntimeError: CUDA out of memory"), or nothing of it."""
    lines = list(_EXCEPTION_LINE.finditer(match.group(0)))
    return match.group(0)[lines[-1].start() :] if lines else "(technical detail hidden)"


def _is_private_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return True
    host = (parts.hostname or "").lower()
    return (
        port is not None
        or "." not in host
        or host.endswith(_PRIVATE_SUFFIXES)
        or _IP_ADDRESS.fullmatch(host) is not None
    )


def _sentence(text: str) -> str:
    """Upstream text as a sentence of ours: ended by its own ! or ? or … if it has one, else by one full stop
    (never "Sorry about that!.")."""
    text = text.rstrip().rstrip(".")
    return text if text.endswith(("!", "?", "…")) else f"{text}."


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def parse_error_body(body: bytes, content_type: str = "") -> tuple[str, str | None, str | None]:
    """(message, type, code) from any error body we have met: OpenAI, OpenRouter, old vLLM, FastAPI, HTML."""
    stripped = body.strip()
    if not stripped:
        return "", None, None
    if "html" in content_type.lower() or stripped[:1] == b"<":
        match = _HTML_TITLE.search(stripped)
        text = match.group(1) if match else re.sub(rb"<[^>]+>", b" ", stripped)
        return _clip(text.decode("utf-8", "replace")), None, None
    try:
        payload = json.loads(stripped)
    except ValueError:
        return _clip(stripped.decode("utf-8", "replace")), None, None
    if isinstance(payload, dict):
        return parse_error_payload(payload)
    return _clip(str(payload)), None, None


def parse_error_payload(payload: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    error = payload.get("error", payload)  # old vLLM puts the fields at the top level
    if isinstance(error, str):
        return _clip(error), None, None
    if not isinstance(error, Mapping):
        return _clip(str(error)), None, None
    message = error.get("message")
    if message is None:
        message = error.get("detail", "")  # FastAPI-based local servers (422)
    if not isinstance(message, str):
        message = json.dumps(message)[:_DETAIL_LIMIT]
    raw = error.get("metadata", {}).get("raw") if isinstance(error.get("metadata"), Mapping) else None
    if isinstance(raw, str) and raw and raw not in message:
        message = f"{message} ({raw})"  # OpenRouter wraps the real provider's message here
    err_type = error.get("type")
    code = error.get("code")
    return (
        _clip(message),
        str(err_type) if err_type is not None else None,
        str(code) if code is not None else None,
    )


def error_from_response(
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    model_id: str = "",
    provider_name: str = "",
) -> LLMError:
    """The typed error for a non-2xx answer. `headers` supplies the request id and retry hints."""
    headers = headers or {}
    message, err_type, code = parse_error_body(body, headers.get("content-type", ""))
    cls = _classify(status, message, err_type, code)
    err = cls(
        message,
        status=status,
        code=code or err_type,
        model_id=model_id,
        provider_name=provider_name,
        request_id=headers.get("x-request-id") or headers.get("x-generation-id"),
        retry_after=retry_after_seconds(headers),
    )
    should_retry = headers.get("x-should-retry", "").strip().lower()
    if should_retry in ("true", "false"):
        err.should_retry_header = should_retry == "true"
    return err


def error_from_stream_payload(payload: Mapping[str, Any], *, model_id: str = "") -> LLMError:
    """The typed error for an error object found inside a 200 event stream.

    Account-level problems keep their own class (an OpenRouter stream can say 402 mid-way); anything else is a
    MidStreamError, which is retried only if no token has reached the caller yet.
    """
    message, err_type, code = parse_error_payload(payload)
    status = int(code) if code is not None and code.isdigit() else None
    cls = _classify(status, message, err_type, code) if status or code or err_type else MidStreamError
    if cls in (UpstreamError, BadRequest, LLMError):
        cls = MidStreamError
    return cls(message, status=status, code=code or err_type, model_id=model_id)


def _classify(status: int | None, message: str, err_type: str | None, code: str | None) -> type[LLMError]:
    tags = f"{err_type or ''} {code or ''}"
    if "insufficient_quota" in tags or status == 402 or _QUOTA_PATTERN.search(message):
        return QuotaExceeded
    if (
        "context_length_exceeded" in tags
        or "exceed_context_size" in tags
        or _CONTEXT_PATTERNS.search(message)
    ):
        return ContextTooLong
    if "model_not_found" in tags:
        return ModelNotFound
    if status == 401 or "invalid_api_key" in tags:
        return InvalidAPIKey
    if status == 429 or "rate_limit" in tags:
        return ProviderRateLimited
    if status == 413:
        return RequestTooLarge
    if _IMAGE_PATTERNS.search(message):
        return ImagesNotSupported
    if _JSON_WORD_PATTERN.search(message):
        return JSONModeNeedsJSONWord
    if status == 403:
        return PermissionDenied
    if status == 404:
        # A 404 naming the model means the provider lacks it (OpenRouter: "No endpoints found for <model>");
        # OpenAI's "Invalid URL (POST /v1/...)" or a bare 404 page means the base URL is wrong.
        if message.startswith("Invalid URL"):
            return EndpointNotFound
        lowered = message.lower()
        return ModelNotFound if "model" in lowered or "no endpoints found" in lowered else EndpointNotFound
    if status is None:
        return UpstreamError if err_type == "server_error" else LLMError
    if status >= 500 or status in (408, 409):
        return UpstreamError
    if 400 <= status < 500:
        return BadRequest
    return UpstreamError


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, then `retry-after` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    return _seconds_until_http_date(raw)


def _seconds_until_http_date(raw: str) -> float | None:

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
