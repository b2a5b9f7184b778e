"""The built-in model catalog and the environment bootstrap that turns API keys into providers.

Prices are USD per 1M tokens, from shared/UPSTREAM_API.md section 7. The seed migration and `manage.py
bootstrap` both call `ensure_catalog`, so a provider created later from the environment gets the same models.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogModel:
    canonical_id: str
    display_name: str
    context_window: int
    max_output_tokens: int
    input_price: str
    cached_input_price: str | None
    output_price: str
    supports_images: bool
    retired_on: datetime.date | None = None


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel("gpt-4o", "GPT-4o", 128_000, 16_384, "2.50", "1.25", "10.00", True),
    CatalogModel("gpt-4o-2024-05-13", "GPT-4o (2024-05-13)", 128_000, 4_096, "5.00", None, "15.00", True),
    CatalogModel("gpt-4o-2024-08-06", "GPT-4o (2024-08-06)", 128_000, 16_384, "2.50", "1.25", "10.00", True),
    CatalogModel(
        "chatgpt-4o-latest",
        "ChatGPT-4o latest",
        128_000,
        16_384,
        "5.00",
        None,
        "15.00",
        True,
        retired_on=datetime.date(2026, 2, 17),
    ),
    CatalogModel("gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, "0.15", "0.075", "0.60", True),
    CatalogModel(
        "gpt-4", "GPT-4", 8_192, 8_192, "30.00", None, "60.00", False, retired_on=datetime.date(2026, 10, 23)
    ),
    CatalogModel("gpt-4-turbo", "GPT-4 Turbo", 128_000, 4_096, "10.00", None, "30.00", True),
)
DEFAULT_CANONICAL_ID = "gpt-4o"


@dataclass(frozen=True)
class ProviderPreset:
    """How one hosted provider is reached, and how it names OpenAI's models."""

    name: str
    kind: str
    base_url: str
    priority: int
    model_prefix: str
    key_env: str
    base_url_env: str


PRESETS: tuple[ProviderPreset, ...] = (
    ProviderPreset(
        "OpenAI", "openai", "https://api.openai.com/v1", 10, "", "OPENAI_API_KEY", "OPENAI_BASE_URL"
    ),
    ProviderPreset(
        "OpenRouter",
        "openrouter",
        "https://openrouter.ai/api/v1",
        20,
        "openai/",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
    ),
    ProviderPreset(
        "AI/ML API", "aimlapi", "https://api.aimlapi.com/v1", 30, "", "AIMLAPI_API_KEY", "AIMLAPI_BASE_URL"
    ),
)
OPENAI_HOST = "api.openai.com"


def ensure_catalog(provider, chat_model_cls, prefix: str = "") -> int:
    """Create the catalog's models on `provider` where missing; existing rows (an admin's edits) are kept.

    Takes the model class as an argument so the seed migration can pass its historical model.
    Returns how many rows were created.
    """
    created = 0
    for item in CATALOG:
        _, was_created = chat_model_cls.objects.get_or_create(
            provider=provider,
            model_id=f"{prefix}{item.canonical_id}",
            defaults={
                "canonical_id": item.canonical_id,
                "display_name": item.display_name,
                "supports_images": item.supports_images,
                "context_window": item.context_window,
                "max_output_tokens": item.max_output_tokens,
                "input_price": Decimal(item.input_price),
                "cached_input_price": Decimal(item.cached_input_price) if item.cached_input_price else None,
                "output_price": Decimal(item.output_price),
                "retired_on": item.retired_on,
                # A retired model stays listed (history refers to it) but is not offered until an admin says so.
                "enabled": item.retired_on is None,
            },
        )
        created += was_created
    return created


def bootstrap_from_environment(environ: dict[str, str] | None = None) -> list[str]:
    """Create or update providers from *_API_KEY variables and pick the default model. Idempotent.

    Returns human-readable lines describing what changed, for the command to print.
    """
    from conversations.models import ChatModel, Provider

    env = os.environ if environ is None else environ
    report: list[str] = []
    for preset in PRESETS:
        key = env.get(preset.key_env, "").strip()
        if not key:
            continue
        base_url = (env.get(preset.base_url_env) or preset.base_url).rstrip("/")
        kind = preset.kind
        if preset.kind == "openai" and urlsplit(base_url).hostname != OPENAI_HOST:
            # OPENAI_BASE_URL pointing elsewhere means a local or third-party server: speak the common dialect.
            kind = "openai_compatible"
        provider, created = Provider.objects.get_or_create(
            name=preset.name, defaults={"kind": kind, "base_url": base_url, "priority": preset.priority}
        )
        provider.kind = kind
        provider.base_url = base_url
        provider.enabled = True
        if preset.kind == "openai":
            provider.organization = env.get("OPENAI_ORGANIZATION", provider.organization)
            provider.project = env.get("OPENAI_PROJECT", provider.project)
        if provider.api_key_encrypted == "" or provider.api_key != key:
            provider.api_key = key
        provider.save()
        added = ensure_catalog(provider, ChatModel, preset.model_prefix)
        report.append(
            f"{'Created' if created else 'Updated'} provider {provider.name} ({base_url}); {added} models added"
        )

    default_name = env.get("CHAT_DEFAULT_MODEL", "").strip()
    if default_name:
        report.append(set_default_model(default_name))
    return report


def set_default_model(name: str) -> str:
    """Make the model called `name` (canonical or provider id) the default, preferring usable copies."""
    from conversations.models import ChatModel

    candidates = ChatModel.objects.filter(canonical_id=name) | ChatModel.objects.filter(model_id=name)
    chosen = candidates.order_by("-provider__enabled", "-enabled", "provider__priority").first()
    if chosen is None:
        known = ", ".join(sorted(set(ChatModel.objects.values_list("canonical_id", flat=True))))
        raise LookupError(f"CHAT_DEFAULT_MODEL={name!r} is not a known model. Known: {known}")
    if not chosen.is_default:
        chosen.is_default = True
        chosen.save()
    return f"Default model: {chosen.display_name} on {chosen.provider.name}"
