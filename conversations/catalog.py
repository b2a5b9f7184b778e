"""The built-in model catalog and the environment bootstrap that turns API keys into providers.

Prices are USD per 1M tokens, from shared/UPSTREAM_API.md section 7. The seed migration and `manage.py
bootstrap` both call `ensure_catalog`, so a provider created later from the environment gets the same models.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
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
    description: str = ""  # one line, for the model menu


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        "gpt-4o", "GPT-4o", 128_000, 16_384, "2.50", "1.25", "10.00", True,
        description="OpenAI's flagship: fast, strong at most tasks, reads images.",
    ),
    CatalogModel(
        "gpt-4o-2024-05-13", "GPT-4o (2024-05-13)", 128_000, 4_096, "5.00", None, "15.00", True,
        description="The first GPT-4o release, kept for answers that must not change.",
    ),
    CatalogModel(
        "gpt-4o-2024-08-06", "GPT-4o (2024-08-06)", 128_000, 16_384, "2.50", "1.25", "10.00", True,
        description="A fixed GPT-4o snapshot with longer answers.",
    ),
    CatalogModel(
        "chatgpt-4o-latest", "ChatGPT-4o latest", 128_000, 16_384, "5.00", None, "15.00", True,
        retired_on=datetime.date(2026, 2, 17),
        description="The GPT-4o that ChatGPT used; retired from OpenAI's API.",
    ),
    CatalogModel(
        "gpt-4o-mini", "GPT-4o mini", 128_000, 16_384, "0.15", "0.075", "0.60", True,
        description="Small, quick and cheap; good for everyday questions.",
    ),
    CatalogModel(
        "gpt-4", "GPT-4", 8_192, 8_192, "30.00", None, "60.00", False, retired_on=datetime.date(2026, 10, 23),
        description="The original GPT-4: text only, short context, expensive.",
    ),
    CatalogModel(
        "gpt-4-turbo", "GPT-4 Turbo", 128_000, 4_096, "10.00", None, "30.00", True,
        description="GPT-4 with a long context and vision; slower than GPT-4o.",
    ),
)  # fmt: skip
BY_ID: dict[str, CatalogModel] = {item.canonical_id: item for item in CATALOG}
# A dated snapshot's suffix: gpt-4o-2024-11-20, gpt-4o-mini-2024-07-18, gpt-4-0613, gpt-4-turbo-2024-04-09.
_SNAPSHOT = re.compile(r"^(?P<family>.+?)-(?P<date>\d{4}-\d{2}-\d{2}|\d{4})$")


def family_of(canonical_id: str) -> tuple[CatalogModel | None, str]:
    """The catalog entry `canonical_id` is, or the family it is a dated snapshot of, and the snapshot's date
    ("" for the entry itself): gpt-4o-2024-11-20 -> (gpt-4o, "2024-11-20"). (None, "") when unknown."""
    if canonical_id in BY_ID:
        return BY_ID[canonical_id], ""
    match = _SNAPSHOT.match(canonical_id)
    if match and match["family"] in BY_ID:
        return BY_ID[match["family"]], match["date"]
    return None, ""


def display_name_for(canonical_id: str) -> str:
    """A person's name for a catalog model or a snapshot of one ("GPT-4o (2024-11-20)"); "" when unknown."""
    known, date = family_of(canonical_id)
    if known is None:
        return ""
    return f"{known.display_name} ({date})" if date else known.display_name


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


@dataclass(frozen=True)
class EnvDifference:
    """A provider setting the environment would have seeded differently from what the database holds."""

    label: str
    variable: str  # the variable, or "built-in" for the preset's own value
    environment: str
    database: str


def preset_for(provider) -> ProviderPreset | None:
    return next((p for p in PRESETS if p.name == provider.name), None)


def _seeded_values(preset: ProviderPreset, env) -> dict[str, tuple[str, str, str]]:
    """What the environment seeds a provider with: field -> (label, variable, value)."""
    base_url = (env.get(preset.base_url_env) or preset.base_url).rstrip("/")
    values = {
        "base_url": (
            "Base URL",
            preset.base_url_env if env.get(preset.base_url_env) else "built-in",
            base_url,
        ),
        "priority": ("Priority", "built-in", str(preset.priority)),
    }
    if preset.kind == "openai":
        for name, var in (("organization", "OPENAI_ORGANIZATION"), ("project", "OPENAI_PROJECT")):
            if env.get(var) is not None:
                values[name] = (name.capitalize(), var, env[var])
    return values


def env_differences(provider, environ: dict[str, str] | None = None) -> list[EnvDifference]:
    """Where the environment and the database disagree about `provider` (a seed provider whose key variable
    is set); the database wins (bootstrap_from_environment). Never mentions the key's value."""
    env = os.environ if environ is None else environ
    preset = preset_for(provider)
    if preset is None or not env.get(preset.key_env, "").strip():
        return []
    out = []
    for name, (label, variable, value) in _seeded_values(preset, env).items():
        held = str(getattr(provider, name) or "")
        if held != value:
            out.append(EnvDifference(label, variable, value, held))
    if not provider.enabled:
        out.append(EnvDifference("Enabled", preset.key_env, "set (seeds the provider switched on)", "off"))
    return out


def bootstrap_from_environment(environ: dict[str, str] | None = None) -> list[str]:
    """The environment seeds, the admin decides. Idempotent; run by ./scripts/run at every start.

    For each *_API_KEY: a missing provider, or one never set up (`Provider.configured`), is set up from the
    environment (switched on, its base URL and priority, the catalog's models); any other only gets the key,
    when it changed (also after an admin removed it). Its switch, base URL, priority, organization and project
    stay as the admin left them (the provider's admin page shows where the environment differs). CHAT_DEFAULT_MODEL sets the site default only while the admin has chosen none.
    Returns human-readable lines describing what happened, for the command to print.
    """
    from conversations.models import ChatModel, Provider

    env = os.environ if environ is None else environ
    report: list[str] = []
    for preset in PRESETS:
        key = env.get(preset.key_env, "").strip()
        if not key:
            continue
        seeded = {name: value for name, (_, _, value) in _seeded_values(preset, env).items()}
        kind = preset.kind
        if preset.kind == "openai" and urlsplit(seeded["base_url"]).hostname != OPENAI_HOST:
            # OPENAI_BASE_URL pointing elsewhere means a local or third-party server: speak the common dialect.
            kind = "openai_compatible"
        provider = Provider.objects.filter(name=preset.name).first()
        if provider is None or not provider.configured:
            # New, or never set up (the OpenAI row migration 0002 seeds switched off): set it up. Not a
            # provider whose key an admin removed: switching it back on is theirs to decide.
            created = provider is None
            provider = provider or Provider(name=preset.name)
            provider.kind, provider.enabled, provider.configured = kind, True, True
            provider.base_url = seeded["base_url"]
            provider.priority = int(seeded["priority"])
            provider.organization = seeded.get("organization", "")
            provider.project = seeded.get("project", "")
            provider.api_key = key
            provider.save()
            added = ensure_catalog(provider, ChatModel, preset.model_prefix)
            verb = "Created" if created else "Set up"
            report.append(f"{verb} provider {provider.name} ({provider.base_url}); {added} models added")
            continue
        key_changed = provider.api_key_encrypted == "" or _readable_key(provider) != key
        if key_changed:
            provider.api_key = key
            provider.save(update_fields=["api_key_encrypted", "updated_at"])
        added = ensure_catalog(provider, ChatModel, preset.model_prefix)
        line = f"Kept provider {provider.name}" + ("; key updated" if key_changed else "")
        if added:
            line += f"; {added} models added"
        differences = env_differences(provider, env)
        if differences:
            line += "; the database differs from the environment and wins: " + ", ".join(
                f"{d.label} {d.database or '(empty)'} (environment: {d.environment})" for d in differences
            )
        report.append(line)

    default_name = env.get("CHAT_DEFAULT_MODEL", "").strip()
    if default_name:
        report.append(seed_default_model(default_name))
    warning = unserved_default_warning()
    if warning:
        logger.warning("%s", warning)
        report.append(warning)
    return report


def _readable_key(provider) -> str | None:
    from conversations import crypto

    try:
        return provider.api_key
    except crypto.DecryptionError:
        return None


def _known_model(name: str):
    """The copy named `name` (canonical or provider id), preferring usable ones; LookupError if none."""
    from conversations.models import ChatModel

    candidates = ChatModel.objects.filter(canonical_id=name) | ChatModel.objects.filter(model_id=name)
    chosen = candidates.order_by("-provider__enabled", "-enabled", "provider__priority").first()
    if chosen is None:
        known = ", ".join(sorted(set(ChatModel.objects.values_list("canonical_id", flat=True))))
        raise LookupError(f"CHAT_DEFAULT_MODEL={name!r} is not a known model. Known: {known}")
    return chosen


def seed_default_model(name: str) -> str:
    """CHAT_DEFAULT_MODEL at start: checked, and the site default while the admin has chosen none (read live
    by SiteSettings.default_model_id, so nothing is written: an admin's choice is never overwritten)."""
    from conversations.models import SiteSettings

    canonical = _known_model(name).canonical_id
    chosen = SiteSettings.objects.filter(pk=1).values_list("default_model", flat=True).first()
    if chosen and chosen != canonical:
        return f"Default model: {chosen} (chosen in the admin; CHAT_DEFAULT_MODEL={name} ignored)"
    return f"Default model: {chosen or canonical}"


def set_default_model(name: str) -> str:
    """Make the model called `name` (canonical or provider id) the site default, as its canonical id (the
    admin's choice: what the Models page's "Make default" does)."""
    from conversations.models import SiteSettings

    chosen = _known_model(name)
    site = SiteSettings.load()
    if site.default_model != chosen.canonical_id:
        site.default_model = chosen.canonical_id
        site.save()
    return f"Default model: {chosen.canonical_id}"


def unserved_default_warning() -> str:
    """A sentence for the admin index and the log when no enabled provider serves the site default; else ""."""
    from conversations.models import ChatModel, SiteSettings

    default = SiteSettings.default_model_id()
    if not ChatModel.objects.exists():
        return ""  # nothing is set up yet
    available = ChatModel.objects.available()
    if available.filter(canonical_id=default).exists():
        return ""
    if not available.exists():  # every provider (or every model) switched off: nobody can chat at all
        return (
            f"The default model {default} is served by no enabled provider, and no other model is either: "
            "nobody can start or continue a chat. Enable a provider (with its API key) and a model it serves."
        )
    return (
        f"The default model {default} is served by no enabled provider: new chats start on another model. "
        "Enable a provider or a copy that serves it, or choose another default."
    )
