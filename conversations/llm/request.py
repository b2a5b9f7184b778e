"""What we ask for, and how each provider kind wants it on the wire.

`ChatRequest` is provider-neutral; `build_body()` / `build_headers()` turn it into one provider's dialect
using the per-kind table `PROFILES`:

| kind              | max output field      | store:false | stream_options.include_usage | extra headers           |
|-------------------|-----------------------|-------------|------------------------------|-------------------------|
| openai            | max_completion_tokens | yes         | yes                          | OpenAI-Organization/-Project |
| openrouter        | max_tokens            | no          | yes                          | HTTP-Referer, X-Title   |
| aimlapi           | max_tokens            | no          | yes                          |                         |
| openai_compatible | max_tokens            | no          | yes (vLLM needs it for usage) |                        |

Why: OpenAI rejects max_tokens on newer models but local servers only know max_tokens. `store` is an
OpenAI-only field (keeps our users' chats out of OpenAI's stored completions); gateways and local servers are
left alone because strict ones reject unknown fields. include_usage is how every one of them reports usage
while streaming; servers that don't know it ignore it (llama.cpp, Ollama, LM Studio).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conversations.llm.routes import Route


@dataclass(frozen=True, slots=True)
class ImagePart:
    url: str  # https URL or a data: URL (base64)
    detail: str = "auto"  # auto | low | high
    width: int | None = None  # only used for token estimates
    height: int | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant
    text: str = ""
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatParams:
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_output_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_mode: bool = False

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> ChatParams:
        """From Conversation.params. Values of the wrong type are dropped, numbers clamped to the API's ranges,
        so a stale or hand-edited params blob can't turn into a 400 from the provider."""
        params = params or {}

        def number(name: str, low: float, high: float) -> float | None:
            value = params.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return min(max(float(value), low), high)

        def integer(name: str, low: int) -> int | None:
            value = params.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                return None
            return max(value, low)

        stop = params.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        return cls(
            temperature=number("temperature", 0.0, 2.0),
            top_p=number("top_p", 0.0, 1.0),
            presence_penalty=number("presence_penalty", -2.0, 2.0),
            frequency_penalty=number("frequency_penalty", -2.0, 2.0),
            max_output_tokens=integer("max_tokens", 1) or integer("max_output_tokens", 1),
            seed=integer("seed", -(2**63)),
            stop=tuple(s for s in stop if isinstance(s, str) and s)[:4],
            json_mode=params.get("json_mode") is True,
        )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: Sequence[ChatMessage]
    params: ChatParams = field(default_factory=ChatParams)
    # Our user's id. Sent only as a keyed hash (`user` field), so the provider can tell abusers apart
    # without learning who anyone is; never a username or email.
    user_id: str | int | None = None

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)


@dataclass(frozen=True, slots=True)
class KindProfile:
    max_tokens_field: str
    store_false: bool
    include_usage: bool
    account_headers: bool  # OpenAI-Organization / OpenAI-Project
    attribution_headers: bool  # OpenRouter's HTTP-Referer / X-Title app attribution


PROFILES: dict[str, KindProfile] = {
    "openai": KindProfile("max_completion_tokens", True, True, True, False),
    "openrouter": KindProfile("max_tokens", False, True, False, True),
    "aimlapi": KindProfile("max_tokens", False, True, False, False),
    "openai_compatible": KindProfile("max_tokens", False, True, False, False),
}


def profile_for(kind: str) -> KindProfile:
    return PROFILES.get(kind, PROFILES["openai_compatible"])


def user_hash(user_id: str | int, secret: str) -> str:
    """A stable pseudonym for a user: HMAC-SHA256 of the id keyed with a site secret, hex (64 chars)."""
    return hmac.new(secret.encode(), f"chatsite-user:{user_id}".encode(), hashlib.sha256).hexdigest()


def message_to_wire(message: ChatMessage) -> dict[str, Any]:
    if not message.images:
        return {"role": message.role, "content": message.text}
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    for image in message.images:
        # image_url is an object, not a bare string: several servers reject the string form.
        parts.append({"type": "image_url", "image_url": {"url": image.url, "detail": image.detail}})
    return {"role": message.role, "content": parts}


def build_body(request: ChatRequest, route: Route, *, user_secret: str = "") -> dict[str, Any]:
    profile = profile_for(route.kind)
    params = request.params
    body: dict[str, Any] = {
        "model": route.model_id,
        "messages": [message_to_wire(m) for m in request.messages],
        "stream": True,
    }
    if profile.include_usage:
        body["stream_options"] = {"include_usage": True}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed"):
        value = getattr(params, name)
        if value is not None:
            body[name] = value
    max_output = params.max_output_tokens
    if max_output is not None and route.max_output_tokens:
        max_output = min(max_output, route.max_output_tokens)  # asking for more is a 400 on most providers
    if max_output is not None:
        body[profile.max_tokens_field] = max_output
    if params.stop:
        body["stop"] = list(params.stop[:4])
    if params.json_mode:
        body["response_format"] = {"type": "json_object"}
    if request.user_id is not None and user_secret:
        body["user"] = user_hash(request.user_id, user_secret)
    if profile.store_false:
        body["store"] = False
    return body


def build_headers(route: Route, *, site_url: str = "", site_name: str = "") -> dict[str, str]:
    """Request headers. Contains the API key: never log the result."""
    profile = profile_for(route.kind)
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if route.api_key:  # local servers often have no key; an empty "Bearer " confuses some of them
        headers["Authorization"] = f"Bearer {route.api_key}"
    if profile.account_headers:
        if route.organization:
            headers["OpenAI-Organization"] = route.organization
        if route.project:
            headers["OpenAI-Project"] = route.project
    if profile.attribution_headers:
        if site_url:
            headers["HTTP-Referer"] = site_url
        if site_name:
            headers["X-Title"] = site_name
    headers.update(route.extra_headers)  # last, so an administrator can override any of the above
    return headers
