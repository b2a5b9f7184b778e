"""Admin operations on providers: test the connection, import the provider's model list, re-encrypt keys.

Everything that talks to a provider goes through conversations.llm (list_models, open_stream), so the errors
an admin sees are the same clear `user_message`s the chat shows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal

import httpx
from asgiref.sync import async_to_sync
from django.db import transaction

from conversations import catalog, crypto
from conversations.llm import errors as llm_errors
from conversations.llm.client import ClientConfig, open_stream
from conversations.llm.models_sync import ListedModel, is_chat_model_id, list_models
from conversations.llm.request import ChatMessage, ChatParams, ChatRequest
from conversations.llm.routes import Route
from conversations.models import ChatModel, PersonalKey, Provider, SiteSettings
from conversations.services import model_choices
from conversations.services.routes import route_for_provider

logger = logging.getLogger(__name__)

# Short on purpose: an admin is waiting on the page.
TEST_TIMEOUT = 20.0
# What OpenRouter-style providers put before OpenAI's model ids; the catalog's canonical ids have no prefix.
CANONICAL_PREFIXES = ("openai/",)
CATALOG = {item.canonical_id: item for item in catalog.CATALOG}


@dataclass
class ConnectionReport:
    ok: bool
    message: str  # for the admin, one or two sentences
    list_ms: int | None = None
    models_listed: int = 0
    model_id: str = ""
    ttft_ms: int | None = None
    total_ms: int | None = None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _pick_test_model(provider: Provider, listed: list[ListedModel]) -> str:
    """The provider's default or first enabled model, else a chat model from its listing."""
    own = list(provider.models.filter(enabled=True).order_by("display_name"))
    default = SiteSettings.default_model_id()
    chosen = next((m for m in own if m.canonical_id == default), None) or (own[0] if own else None)
    if chosen is not None:
        return chosen.model_id
    ids = [m.model_id for m in listed]
    for preferred in ("gpt-4o-mini", "openai/gpt-4o-mini", "gpt-4o", "openai/gpt-4o"):
        if preferred in ids:
            return preferred
    return ids[0] if ids else ""


async def _one_token(route: Route) -> tuple[float | None, float]:
    """A one-token completion through the real client (retries off: the admin wants the truth now)."""
    request = ChatRequest([ChatMessage("user", "Say OK.")], ChatParams(max_output_tokens=1))
    config = ClientConfig.from_settings(
        max_retries=0, first_token_timeout=TEST_TIMEOUT, total_timeout=TEST_TIMEOUT
    )
    started = time.monotonic()
    # A client of its own: the admin view runs this on a throwaway event loop, not the shared pool's.
    async with httpx.AsyncClient() as client, open_stream(request, [route], config, client=client) as stream:
        async for _event in stream:
            pass
    return stream.result.ttft, time.monotonic() - started


def test_connection(provider: Provider) -> ConnectionReport:
    """List the provider's models, then ask one of them for a single token. Never raises for upstream errors:
    they become the report's message. Sync (admin views); blocks for at most about twice TEST_TIMEOUT."""
    route = route_for_provider(provider, model_id="")
    if route.key_unreadable:
        return ConnectionReport(
            False, llm_errors.ProviderMisconfigured(provider_name=provider.name).user_message
        )
    started = time.monotonic()
    try:
        listed = list_models(route, timeout=TEST_TIMEOUT)
    except llm_errors.LLMError as exc:
        logger.info("connection test of provider %s failed listing models: %s", provider.pk, exc)
        return ConnectionReport(False, f"Listing models failed: {exc.user_message}")
    list_ms = _ms(time.monotonic() - started)
    model_id = _pick_test_model(provider, listed)
    if not model_id:
        return ConnectionReport(
            False,
            f"{provider.name} answered in {list_ms} ms but lists no chat model to try.",
            list_ms=list_ms,
        )
    try:
        ttft, total = async_to_sync(_one_token)(replace(route, model_id=model_id))
    except llm_errors.LLMError as exc:
        logger.info("connection test of provider %s failed completing: %s", provider.pk, exc)
        return ConnectionReport(
            False,
            f"Listing models worked ({len(listed)} models, {list_ms} ms), but a one-token answer from "
            f"{model_id} failed: {exc.user_message}",
            list_ms=list_ms,
            models_listed=len(listed),
            model_id=model_id,
        )
    ttft_ms = _ms(ttft) if ttft is not None else None
    return ConnectionReport(
        True,
        f"{provider.name} works: {len(listed)} models listed in {list_ms} ms; {model_id} answered one token "
        f"in {_ms(total)} ms" + (f" (first token after {ttft_ms} ms)." if ttft_ms is not None else "."),
        list_ms=list_ms,
        models_listed=len(listed),
        model_id=model_id,
        ttft_ms=ttft_ms,
        total_ms=_ms(total),
    )


# --- Sync models ---------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)  # created and switched on (known catalog models)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    without_prices: int = 0

    @property
    def message(self) -> str:
        parts = [f"{len(self.created)} new models imported"]
        if self.created:
            disabled = len(self.created) - len(self.enabled)
            parts.append(
                f"{len(self.enabled)} of them enabled (models in the built-in catalog)"
                + (f", {disabled} left disabled for you to review" if disabled else "")
            )
        parts.append(f"{len(self.updated)} updated, {self.unchanged} unchanged")
        if self.without_prices:
            parts.append(f"{self.without_prices} without prices from the provider (set them under Models)")
        return "; ".join(parts) + "."


def canonical_id_for(model_id: str) -> str:
    for prefix in CANONICAL_PREFIXES:
        if model_id.startswith(prefix):
            return model_id.removeprefix(prefix)
    return model_id


# Facts the listing may give; only those it gives overwrite what is stored (an admin's edits otherwise stay).
SYNCED_FACTS = (
    "context_window",
    "max_output_tokens",
    "supports_images",
    "input_price",
    "cached_input_price",
    "output_price",
)


PRICES = ("input_price", "cached_input_price", "output_price")


def _facts(listed: ListedModel, known: catalog.CatalogModel | None) -> dict:
    """What the listing states, with the catalog's capabilities where it is silent. `known` is the catalog
    entry of the model or of its family (gpt-4o for gpt-4o-2024-11-20): a snapshot reads like its family."""
    facts = {name: getattr(listed, name) for name in SYNCED_FACTS if getattr(listed, name) is not None}
    if known is not None:
        facts.setdefault("context_window", known.context_window)
        facts.setdefault("max_output_tokens", known.max_output_tokens)
        facts.setdefault("supports_images", known.supports_images)
    return facts


def _catalog_prices(listed: ListedModel, known: catalog.CatalogModel | None) -> dict:
    """The catalog's prices (of the model or its family) for a model the listing gives none for (OpenAI's list
    from a compatible server, AI/ML API's): what ensure_catalog gives a provider's seeded copies too, and a
    safer figure for budgets and the usage dashboard than $0. An admin's prices are never replaced; a free
    local model keeps $0 by an admin setting it (or by its id, outside the catalog)."""
    if known is None:
        return {}
    if any(getattr(listed, name) is not None for name in PRICES):
        return {}
    cached = known.cached_input_price
    return {
        "input_price": Decimal(known.input_price),
        "cached_input_price": Decimal(cached) if cached else None,
        "output_price": Decimal(known.output_price),
    }


def sync_models(provider: Provider) -> SyncReport:
    """Import the provider's model list. New models are created (enabled only when they are in the built-in
    catalog and not retired, so a 300-model OpenRouter listing doesn't flood the model picker); existing ones get
    the facts the listing states. A dated snapshot of a catalog model (gpt-4o-2024-11-20) inherits its family's
    vision, context window, prices and name. Nothing is deleted. Raises llm_errors.LLMError when listing fails."""
    listed = [
        m
        for m in list_models(route_for_provider(provider, model_id=""), timeout=TEST_TIMEOUT)
        if is_chat_model_id(m.model_id)
    ]
    report = SyncReport()
    existing = {m.model_id: m for m in provider.models.all()}
    with transaction.atomic():
        for item in listed:
            canonical = canonical_id_for(item.model_id)
            known, _snapshot_date = catalog.family_of(canonical)
            facts = _facts(item, known)
            prices = _catalog_prices(item, known)
            if item.input_price is None and item.output_price is None:
                report.without_prices += 1
            row = existing.get(item.model_id)
            if row is None:
                exact = CATALOG.get(canonical)
                enable = exact is not None and exact.retired_on is None
                row = ChatModel(
                    provider=provider,
                    model_id=item.model_id,
                    canonical_id=canonical,
                    display_name=catalog.display_name_for(canonical) or item.display_name or item.model_id,
                    retired_on=exact.retired_on if exact else None,
                    enabled=enable,
                    **{**prices, **facts},
                )
                row.save()
                report.created.append(item.model_id)
                if enable:
                    report.enabled.append(item.model_id)
                continue
            if prices and not row.input_price and not row.output_price:
                facts = {**prices, **facts}  # $0 that nobody set (an older sync): the family's prices
            changed = [name for name, value in facts.items() if getattr(row, name) != value]
            if changed:
                for name in changed:
                    setattr(row, name, facts[name])
                row.save(update_fields=[*changed, "updated_at"])
                report.updated.append(item.model_id)
            else:
                report.unchanged += 1
    return report


# --- Re-encrypting stored keys --------------------------------------------------------------------------------


@dataclass
class RotationReport:
    rotated: int = 0
    unreadable: list[str] = field(default_factory=list)  # "provider 3", "personal key 7": never a value


def rotate_all_keys(*, dry_run: bool = False) -> RotationReport:
    """Re-encrypt every stored key (providers' and personal) under the first CHAT_ENCRYPTION_KEY.

    Row by row, each under a row lock, so a key an admin saves meanwhile is not overwritten with an old value.
    Rows that can't be decrypted are reported and left alone. Running it twice is harmless."""
    report = RotationReport()
    for model, label in ((Provider, "provider"), (PersonalKey, "personal key")):
        for pk in model.objects.exclude(api_key_encrypted="").values_list("pk", flat=True):
            with transaction.atomic():
                row = model.objects.select_for_update().filter(pk=pk).first()
                if row is None or not row.api_key_encrypted:
                    continue
                try:
                    token = crypto.rotate(row.api_key_encrypted)
                except crypto.DecryptionError:
                    report.unreadable.append(f"{label} {pk}")
                    continue
                if not dry_run:
                    model.objects.filter(pk=pk).update(api_key_encrypted=token)
                    if model is Provider:  # update() sends no signal: processes re-read the routes' keys
                        model_choices.catalogue_changed()
                report.rotated += 1
    return report
