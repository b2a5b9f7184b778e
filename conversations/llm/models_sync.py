"""Model listings: fetch a provider's catalogue and parse each dialect into `ListedModel`s.

- OpenAI `GET /v1/models`: `{"data": [{id, owned_by, ...}]}`, no capabilities. Non-chat models (embeddings,
  DALL-E, Whisper...) are dropped, and known chat models get their limits and prices from `KNOWN_OPENAI`.
- OpenRouter `GET /api/v1/models`: context_length, architecture.input_modalities (vision = contains "image"),
  pricing in USD per token as strings (converted to USD per 1M), top_provider.max_completion_tokens.
- AI/ML API `GET /models`: a bare array of {id, type, info{contextLength, maxTokens}, features[]}; only
  type "chat-completion", vision from the "openai/chat-completion.vision" feature.
The shape of the payload decides the parser, so a provider configured with the wrong kind still parses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from conversations.llm.errors import LLMError, NetworkError, error_from_response
from conversations.llm.request import build_headers
from conversations.llm.routes import Route

MILLION = Decimal(1_000_000)
PRICE_PLACES = Decimal("0.0001")  # ChatModel prices have 4 decimal places


@dataclass(frozen=True, slots=True)
class ListedModel:
    model_id: str
    display_name: str = ""
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_images: bool | None = None  # None: the listing doesn't say
    input_price: Decimal | None = None  # USD per 1M tokens
    cached_input_price: Decimal | None = None
    output_price: Decimal | None = None


# (context window, max output, vision, input, cached input, output per 1M) from OpenAI's model pages.
KNOWN_OPENAI: dict[str, tuple[int, int, bool, str, str | None, str]] = {
    "gpt-4o": (128_000, 16_384, True, "2.50", "1.25", "10.00"),
    "gpt-4o-2024-11-20": (128_000, 16_384, True, "2.50", "1.25", "10.00"),
    "gpt-4o-2024-08-06": (128_000, 16_384, True, "2.50", "1.25", "10.00"),
    "gpt-4o-2024-05-13": (128_000, 4_096, True, "5.00", None, "15.00"),
    "chatgpt-4o-latest": (128_000, 16_384, True, "5.00", None, "15.00"),
    "gpt-4o-mini": (128_000, 16_384, True, "0.15", "0.075", "0.60"),
    "gpt-4o-mini-2024-07-18": (128_000, 16_384, True, "0.15", "0.075", "0.60"),
    "gpt-4-turbo": (128_000, 4_096, True, "10.00", None, "30.00"),
    "gpt-4": (8_192, 8_192, False, "30.00", None, "60.00"),
    "gpt-4-0613": (8_192, 8_192, False, "30.00", None, "60.00"),
}

_NOT_CHAT = re.compile(
    r"embed|dall-e|whisper|tts|moderation|davinci|babbage|transcribe|realtime|audio|image|search|sora"
    r"|computer-use|rerank",
    re.IGNORECASE,
)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value) or None
    return None


def per_million(per_token: Any) -> Decimal | None:
    """OpenRouter's "0.0000025" USD per token -> Decimal("2.5000") per 1M. Negative means "varies": None."""
    if per_token is None or isinstance(per_token, bool):
        return None
    try:
        value = Decimal(str(per_token))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return (value * MILLION).quantize(PRICE_PLACES)


def is_chat_model_id(model_id: str) -> bool:
    return not _NOT_CHAT.search(model_id)


def parse_openai_models(payload: Mapping[str, Any], *, known: bool = True) -> list[ListedModel]:
    out = []
    for item in payload.get("data") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        model_id = item["id"]
        if not is_chat_model_id(model_id):
            continue
        facts = KNOWN_OPENAI.get(model_id) if known else None
        if facts:
            ctx, max_out, vision, price_in, price_cached, price_out = facts
            out.append(
                ListedModel(
                    model_id,
                    model_id,
                    ctx,
                    max_out,
                    vision,
                    Decimal(price_in),
                    Decimal(price_cached) if price_cached else None,
                    Decimal(price_out),
                )
            )
        else:
            out.append(ListedModel(model_id, model_id))
    return out


def parse_openrouter_models(payload: Mapping[str, Any]) -> list[ListedModel]:
    out = []
    for item in payload.get("data") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        architecture = item.get("architecture") or {}
        pricing = item.get("pricing") or {}
        top = item.get("top_provider") or {}
        inputs = architecture.get("input_modalities")
        if not isinstance(inputs, list):  # older listings only had "modality": "text+image->text"
            modality = str(architecture.get("modality", ""))
            inputs = modality.split("->")[0].split("+") if modality else []
        outputs = architecture.get("output_modalities")
        if isinstance(outputs, list) and "text" not in outputs:
            continue  # image generators and the like
        out.append(
            ListedModel(
                model_id=item["id"],
                display_name=str(item.get("name") or item["id"]),
                context_window=_int(item.get("context_length")) or _int(top.get("context_length")),
                max_output_tokens=_int(top.get("max_completion_tokens")),
                supports_images="image" in inputs,
                input_price=per_million(pricing.get("prompt")),
                cached_input_price=per_million(pricing.get("input_cache_read")),
                output_price=per_million(pricing.get("completion")),
            )
        )
    return out


def parse_aimlapi_models(payload: list[Any]) -> list[ListedModel]:
    out = []
    for item in payload:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            continue
        if item.get("type") not in (None, "chat-completion"):
            continue
        info = item.get("info") or {}
        features = item.get("features") or []
        out.append(
            ListedModel(
                model_id=item["id"],
                display_name=str(info.get("name") or item["id"]),
                context_window=_int(info.get("contextLength")),
                max_output_tokens=_int(info.get("maxTokens")),
                supports_images="openai/chat-completion.vision" in features,
            )
        )
    return out


def parse_models(payload: Any, kind: str = "") -> list[ListedModel]:
    """Parse any of the three dialects, told apart by shape."""
    if isinstance(payload, list):
        return parse_aimlapi_models(payload)
    if not isinstance(payload, Mapping):
        return []
    data = payload.get("data") or []
    if any(isinstance(m, Mapping) and ("pricing" in m or "context_length" in m) for m in data):
        return parse_openrouter_models(payload)
    return parse_openai_models(payload, known=kind in ("openai", "aimlapi", ""))


def models_url(route: Route) -> str:
    base = route.base_url.rstrip("/")
    if route.kind == "aimlapi":
        return base.removesuffix("/v1") + "/models"  # AI/ML API lists models outside /v1
    return base + "/models"


def list_models(route: Route, *, url: str | None = None, timeout: float = 15.0) -> list[ListedModel]:
    """Fetch and parse the provider's model list (sync: admin actions, management commands)."""
    headers = {**build_headers(route), "Accept": "application/json"}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(url or models_url(route), headers=headers)
    except httpx.HTTPError as exc:
        raise NetworkError(str(exc) or type(exc).__name__, provider_name=route.provider_name) from None
    return _parse_response(response, route)


async def alist_models(route: Route, *, url: str | None = None, timeout: float = 15.0) -> list[ListedModel]:
    """list_models for async callers; uses the shared pool."""
    from conversations.llm.client import shared_client

    headers = {**build_headers(route), "Accept": "application/json"}
    try:
        response = await shared_client().get(url or models_url(route), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise NetworkError(str(exc) or type(exc).__name__, provider_name=route.provider_name) from None
    return _parse_response(response, route)


def _parse_response(response: httpx.Response, route: Route) -> list[ListedModel]:
    if response.status_code >= 300:
        raise error_from_response(
            response.status_code, response.content, response.headers, provider_name=route.provider_name
        )
    try:
        payload = response.json()
    except ValueError:
        raise LLMError("the model list was not JSON", provider_name=route.provider_name) from None
    return parse_models(payload, route.kind)
