"""Routes from the database: each provider's copy of a model as the completion client's `Route`, with the
provider's key decrypted once, here, and the copies of a model in fallback order."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from conversations import crypto
from conversations.llm.routes import Route
from conversations.models import ChatModel, Provider


def route_for_provider(provider: Provider, model_id: str, **extra: object) -> Route:
    """A route to `model_id` on `provider` (saved or not). Decrypts the key once, here."""
    try:
        api_key, unreadable = provider.api_key, False
    except crypto.DecryptionError:
        api_key, unreadable = "", True
    return Route(
        provider_name=provider.name,
        kind=str(provider.kind),
        base_url=provider.base_url,
        model_id=model_id,
        api_key=api_key,
        organization=provider.organization or "",
        project=provider.project or "",
        extra_headers={str(k): str(v) for k, v in (provider.extra_headers or {}).items()},
        provider_id=provider.pk,
        key_unreadable=unreadable,
        **extra,  # type: ignore[arg-type]
    )


def route_for_model(chat_model: ChatModel) -> Route:
    """Reads chat_model.provider: one query unless it was select_related."""
    return route_for_provider(
        chat_model.provider,
        chat_model.model_id,
        canonical_id=chat_model.canonical_id,
        chat_model_id=chat_model.pk,
        supports_images=chat_model.supports_images,
        context_window=chat_model.context_window,
        max_output_tokens=chat_model.max_output_tokens,
        retired_on=chat_model.retired_on,
    )


def order_candidates(
    chosen: ChatModel, others: list[ChatModel], today: dt.date | None = None
) -> list[ChatModel]:
    """The fallback order: the model the user picked first, then its twins by provider priority (the
    queryset's order); models past their retirement date go last, since they will most likely answer 404."""
    today = today or dt.date.today()
    ordered = [chosen] + [m for m in others if m.pk != chosen.pk]
    return sorted(ordered, key=lambda m: m.retired_on is not None and m.retired_on <= today)  # stable


def candidates_for(chat_model: ChatModel) -> list[Route]:
    """Routes able to serve `chat_model`: itself and every enabled copy sharing its canonical_id on an enabled
    provider. One query (sync; the engine calls it through sync_to_async). Empty if none is available."""
    same = Q(pk=chat_model.pk)
    if chat_model.canonical_id:
        same |= Q(canonical_id=chat_model.canonical_id)
    rows = ChatModel.objects.available().filter(same).select_related("provider")
    found = list(rows.order_by("provider__priority", "provider__name", "pk"))
    chosen = next((m for m in found if m.pk == chat_model.pk), None)
    if chosen is None:  # the picked copy is disabled: its twins still serve
        ordered = order_candidates(found[0], found) if found else []
    else:
        ordered = order_candidates(chosen, found)
    return [route_for_model(m) for m in ordered]
