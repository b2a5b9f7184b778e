"""Bring your own key: a user's personal API key for a provider, used for that user's turns only.

Off unless CHAT_ALLOW_PERSONAL_KEYS. Keys are encrypted like provider keys and never shown back beyond their
last four characters. An answer served through a personal key is the user's spend: it is recorded (tokens, and
its cost at the model's prices) with `Message.own_key` set, and counts toward neither the site's money and
token quotas nor the site's spend on the usage dashboard. When every route a turn may take carries the user's
key (`covers_every_route`), the turn reserves no site budget either; turns per minute still apply.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q
from django.views.decorators.debug import sensitive_variables

from conversations import crypto
from conversations.llm.routes import Route
from conversations.models import ChatModel, PersonalKey, Provider
from conversations.services import audit
from conversations.services.errors import InvalidInput, NotAllowed, NotFound
from conversations.services.model_choices import ModelChoices
from conversations.services.routes import candidates_for

MAX_KEY_CHARS = 500


def enabled() -> bool:
    return bool(settings.CHAT_ALLOW_PERSONAL_KEYS)


@dataclass(frozen=True)
class KeySlot:
    """One provider on the settings page, with the hint of the user's key for it, if any."""

    provider_id: int
    provider_name: str
    hint: str  # "" when the user has no key for it


def slots_for(user) -> list[KeySlot]:
    """Every enabled provider and the user's key hint for each. Two queries."""
    mine = {k.provider_id: k for k in PersonalKey.objects.filter(user=user)}
    return [
        KeySlot(p.pk, p.name, mine[p.pk].api_key_hint if p.pk in mine else "")
        for p in Provider.objects.filter(enabled=True).order_by("priority", "name")
    ]


def _provider(provider_id: object) -> Provider:
    try:
        return Provider.objects.get(pk=_int(provider_id), enabled=True)
    except Provider.DoesNotExist as exc:
        raise NotFound("No such provider.") from exc


def _require_enabled() -> None:
    if not enabled():
        raise NotAllowed("Personal API keys are turned off on this site.")


@sensitive_variables("api_key")
def set_key(user, provider_id: object, api_key: str) -> PersonalKey:
    _require_enabled()
    api_key = api_key.strip()
    if not api_key or len(api_key) > MAX_KEY_CHARS or any(c.isspace() for c in api_key):
        raise InvalidInput("Paste the key exactly as the provider shows it: one word, no spaces.")
    provider = _provider(provider_id)
    with transaction.atomic():
        key, created = PersonalKey.objects.select_for_update().get_or_create(
            user=user, provider=provider, defaults={"api_key_encrypted": crypto.encrypt(api_key)}
        )
        if not created:
            key.api_key = api_key
            key.save(update_fields=["api_key_encrypted", "updated_at"])
        audit.record(user, "personal_key.set" if created else "personal_key.replaced", provider)
    return key


def remove_key(user, provider_id: object) -> None:
    """Allowed even when personal keys are off or the provider is disabled: a user may always withdraw a key."""
    key = (
        PersonalKey.objects.select_related("provider")
        .filter(user=user, provider_id=_int(provider_id))
        .first()
    )
    if key is None:
        raise NotFound("You have no key for that provider.")
    key.delete()
    audit.record(user, "personal_key.removed", key.provider)


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError as exc:
        raise NotFound("No such provider.") from exc


def _user_id(user) -> int | None:
    return user if isinstance(user, int) else getattr(user, "pk", None)


def routes_for_user(
    chat_model: ChatModel, user, checked_model_pk: int | None = None, choices: ModelChoices | None = None
) -> list[Route]:
    """candidates_for(chat_model), restricted to models open to `user` (a user or a user id), with the user's
    personal key in place of the site's on every provider they have one for. Sync: one to four queries.
    `checked_model_pk`: a model already known to be open to this user (the turn just resolved it), so the
    common single-route case needs no group check.

    A turn prepares its answer with this (services/context.prepare), passing the batch's `choices` (the
    catalogue read once for a batch of turns: no query for the routes or the group check)."""
    routes = choices.candidates(chat_model) if choices is not None else candidates_for(chat_model)
    user_id = _user_id(user)
    if user_id is None or not routes:
        return routes
    owner = (
        user if not isinstance(user, int) else get_user_model()._default_manager.filter(pk=user_id).first()
    )
    if owner is not None and not owner.is_superuser and choices is not None:
        routes = choices.open_twins(owner, routes, checked_model_pk)
    elif owner is not None and not owner.is_superuser:
        # A twin on another provider may be restricted to groups this user isn't in: don't fall back to it.
        ids = [r.chat_model_id for r in routes if r.chat_model_id not in (None, checked_model_pk)]
        if ids:
            allowed = set(ChatModel.objects.filter(pk__in=ids).open_to(owner).values_list("pk", flat=True))
            allowed.add(checked_model_pk)
            routes = [r for r in routes if r.chat_model_id is None or r.chat_model_id in allowed]
    if not enabled():
        return routes
    keys = {
        k.provider_id: k
        for k in PersonalKey.objects.filter(user_id=user_id, provider_id__in={r.provider_id for r in routes})
    }
    out = []
    for route in routes:
        key = keys.get(route.provider_id)
        if key is None:
            out.append(route)
            continue
        try:
            out.append(replace(route, api_key=key.api_key, key_unreadable=False, personal_key=True))
        except crypto.DecryptionError:
            out.append(replace(route, api_key="", key_unreadable=True, personal_key=True))
    return out


def covers_every_route(user, chat_model: ChatModel) -> bool:
    """Whether the user has their own key for every provider that could serve `chat_model` (itself and its
    enabled twins, as candidates_for finds them), so an answer can never fall back to the site's key. False
    when personal keys are off (no query) or nothing could serve it; else one query. Twins the user's groups
    exclude are counted too: that can only make it answer False, and reserve as usual."""
    if not enabled():
        return False
    same = Q(pk=chat_model.pk)
    if chat_model.canonical_id:
        same |= Q(canonical_id=chat_model.canonical_id)
    counts = (
        ChatModel.objects.available()
        .filter(same)
        .aggregate(
            routes=Count("pk"),
            site=Count(
                "pk",
                filter=~Q(provider_id__in=PersonalKey.objects.filter(user_id=user.pk).values("provider_id")),
            ),
        )
    )
    return counts["routes"] > 0 and counts["site"] == 0
