"""The models people pick, and the routes that serve them, read once for a batch of turns.

A person picks a canonical model (GPT-4o: `gpt-4o`); each enabled provider's enabled copy of it is a route,
tried in the providers' priority order (the admin's *Priority*), copies past their retirement date last. A
turn's model is the one asked for, else the conversation's, else the site default (SiteSettings), each
resolved to the first route open to the user; the routes after it are the fallback before the first token.
So a chat, or the default, survives its provider being switched off while another provider serves the model.
A conversation an admin pinned (`Conversation.model_pinned`) answers through its own copy only.

The catalogue (the available models with their providers, which are restricted to groups, the site default's
stored choice, and the routes with their decrypted keys) is read once per process and shared by every batch
of turns and every page (`Catalog.current()`): reading it took several queries and about 1.5 ms of query
building per turn, on the path before the provider's request leaves. Each use reads one row instead, the
`CatalogStamp` token, which every change to the catalogue replaces in its own transaction (the receivers at
the end of this module, and `catalogue_changed()` for writes that send no signals, such as
`QuerySet.update`): a change made in any process, the admin's or a management command's, is seen by every
process's next turn. The snapshot is also re-read after CATALOG_MAX_AGE (a model's retirement date
passing at midnight changes the route order). A user's groups are read per ModelChoices (one batch or
page), only when a restricted model is involved.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from conversations.llm.routes import Route
from conversations.models import CatalogStamp, ChatModel, Conversation, Provider, SiteSettings
from conversations.services.errors import InvalidInput
from conversations.services.routes import order_candidates, route_for_model

logger = logging.getLogger(__name__)

UNAVAILABLE = "That model isn't available. Pick another one."
CONVERSATION_UNAVAILABLE = "This conversation's model is no longer available. Pick another one."
NONE_AVAILABLE = "No model is available yet. An administrator needs to add a provider key."


def route_order(model: ChatModel) -> tuple:
    """Copies of one model in the order they are tried (reads model.provider: select_related it)."""
    return (model.provider.priority, model.provider.name, model.pk)


# Seconds a process keeps its catalogue snapshot even when the stamp has not changed.
CATALOG_MAX_AGE = 60.0


@dataclass(eq=False)
class Catalog:
    """One process's snapshot of the catalogue. Shared between threads: never changed once built, except
    `routes`, a cache filled on first use (two threads building the same entry build the same value)."""

    token: str | None  # the CatalogStamp it was read under (None: no stamp row yet)
    loaded_at: float
    models: list[ChatModel]  # available, in route order (select_related provider)
    by_pk: dict[int, ChatModel]
    copies: dict[str, list[ChatModel]]  # canonical id -> copies in fallback order, retired last
    restricted: dict[int, set[int]]  # model pk -> the groups it is restricted to
    stored_default: str  # SiteSettings.default_model ("" when unset)
    routes: dict[tuple[int, bool], list[Route]] = field(default_factory=dict)

    _current: Catalog | None = None
    _loading = threading.Lock()

    @classmethod
    def current(cls) -> Catalog:
        """The snapshot, re-read if the catalogue changed since (one single-row read)."""
        token = _stamp()
        snapshot = cls._current
        if (
            snapshot is None
            or snapshot.token != token
            or time.monotonic() - snapshot.loaded_at > CATALOG_MAX_AGE
        ):
            with cls._loading:  # one thread reads it; the others take what it read
                snapshot = cls._current
                if (
                    snapshot is None
                    or snapshot.token != token
                    or (time.monotonic() - snapshot.loaded_at > CATALOG_MAX_AGE)
                ):
                    snapshot = cls._current = cls._load(token)
        return snapshot

    @classmethod
    def _load(cls, token: str | None) -> Catalog:
        # The stamp was read first: a change committed meanwhile makes the next use read again, never the
        # other way round (a new stamp kept with old rows).
        models = sorted(ChatModel.objects.available().select_related("provider"), key=route_order)
        copies: dict[str, list[ChatModel]] = {}
        for model in order_candidates(models[0], models) if models else []:
            copies.setdefault(model.canonical_id, []).append(model)  # priority order, retired last
        by_pk = {model.pk: model for model in models}
        restricted: dict[int, set[int]] = {}
        through = ChatModel.allowed_groups.through
        for model_id, group_id in through.objects.filter(chatmodel_id__in=by_pk).values_list(
            "chatmodel_id", "group_id"
        ):
            restricted.setdefault(model_id, set()).add(group_id)
        stored = SiteSettings.objects.filter(pk=1).values_list("default_model", flat=True).first() or ""
        return cls(token, time.monotonic(), models, by_pk, copies, restricted, stored)


def _stamp() -> str | None:
    """The current CatalogStamp token: plain SQL, as this runs for every batch of turns and every page."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT token FROM {CatalogStamp._meta.db_table} WHERE id = 1")  # noqa: S608
        row = cursor.fetchone()
    return row[0] if row else None


def catalogue_changed() -> None:
    """Replace the stamp (in the caller's transaction, if any): every process re-reads the catalogue. Call it
    after writes to models, providers, keys or group restrictions that send no signal (QuerySet.update)."""
    CatalogStamp.objects.update_or_create(pk=1, defaults={"token": uuid.uuid4().hex})


class ModelChoices:
    def __init__(self) -> None:
        catalog = Catalog.current()
        self.models = catalog.models
        self._by_pk = catalog.by_pk
        self._copies = catalog.copies
        self._restricted = catalog.restricted
        self._routes = catalog.routes
        self._stored_default = catalog.stored_default
        self._groups_of: dict[int, set[int]] = {}

    # --- who may use what ---------------------------------------------------------------------------------

    def open_to(self, user, model: ChatModel) -> bool:
        groups = self._restricted.get(model.pk)
        if not groups or getattr(user, "is_superuser", False):
            return True
        if user is None:
            return False
        if user.pk not in self._groups_of:
            self._groups_of[user.pk] = set(user.groups.values_list("pk", flat=True))
        return bool(groups & self._groups_of[user.pk])

    def copies(self, canonical_id: str, user) -> list[ChatModel]:
        """The available copies of `canonical_id` open to `user`, in the order they are tried."""
        return [m for m in self._copies.get(canonical_id, []) if self.open_to(user, m)]

    def menu(self, user) -> list[tuple[str, list[ChatModel]]]:
        """Each canonical model `user` may pick, once, with its copies in route order; by display name."""
        entries = [(cid, self.copies(cid, user)) for cid in self._copies]
        entries = [(cid, copies) for cid, copies in entries if copies]
        return sorted(entries, key=lambda e: (e[1][0].display_name.casefold(), e[0]))

    @property
    def default_model(self) -> str:
        """The site default's canonical id (as SiteSettings.default_model_id, from the snapshot)."""
        return self._stored_default or settings.CHAT_DEFAULT_MODEL or "gpt-4o"

    # --- a turn's model -----------------------------------------------------------------------------------

    def resolve(self, requested: int | str | None, conversation: Conversation | None, user) -> ChatModel:
        """The copy a turn starts on: the model asked for (a canonical id, or a copy's pk meaning its canonical
        model), else the conversation's, else the site default; each the first route open to `user`."""
        if requested is not None:
            canonical = self._canonical_of(requested)
            pinned = self._pinned(conversation, user)
            if pinned is not None and pinned.canonical_id == canonical:
                return pinned
            chosen = self._first(canonical, user)
            if chosen is None:
                raise InvalidInput(UNAVAILABLE, code="model_unavailable")
            return chosen
        if conversation is not None and (conversation.canonical_model or conversation.model_id):
            if conversation.model_pinned and conversation.model_id is not None:
                pinned = self._pinned(conversation, user)
                if pinned is None:
                    raise InvalidInput(
                        "This conversation is pinned to one provider's copy of its model, which is switched "
                        "off. Pick another model, or ask an administrator to unpin it.",
                        code="model_unavailable",
                    )
                return pinned
            canonical = conversation.canonical_model or self._canonical_of(conversation.model_id)
            chosen = self._first(canonical, user)
            if chosen is None:
                raise InvalidInput(CONVERSATION_UNAVAILABLE, code="model_unavailable")
            return chosen
        return self.default_for(user)

    def default_for(self, user) -> ChatModel:
        """The site default's first route open to `user`; when nothing serves it, the log says so and the
        first model they may use stands in."""
        chosen = self._first(self.default_model, user)
        if chosen is not None:
            return chosen
        usable = [model for model in self.models if self.open_to(user, model)]
        if not usable:
            raise InvalidInput(NONE_AVAILABLE, code="model_unavailable")
        stand_in = min(usable, key=lambda m: (m.display_name.casefold(), route_order(m)))
        logger.warning(
            "the default model %s is served by no enabled provider; new chats start on %s",
            self.default_model,
            stand_in.canonical_id,
        )
        return stand_in

    def _first(self, canonical_id: str, user) -> ChatModel | None:
        copies = self.copies(canonical_id, user)
        return copies[0] if copies else None

    def _pinned(self, conversation: Conversation | None, user) -> ChatModel | None:
        if conversation is None or not conversation.model_pinned or conversation.model_id is None:
            return None
        model = self._by_pk.get(conversation.model_id)
        return model if model is not None and self.open_to(user, model) else None

    def _canonical_of(self, requested: int | str) -> str:
        if isinstance(requested, str):
            return requested
        model = self._by_pk.get(requested)
        if model is not None:
            return model.canonical_id
        # A copy that is switched off (or on a provider that is): its canonical model may be served elsewhere.
        return ChatModel.objects.filter(pk=requested).values_list("canonical_id", flat=True).first() or ""

    # --- routes -------------------------------------------------------------------------------------------

    def candidates(self, chat_model: ChatModel, pinned: bool = False) -> list[Route]:
        """Routes for a turn that resolved to `chat_model`: it first, then the other copies of its canonical
        model by priority (retired last), as routes.candidates_for; only itself when `pinned`. Keys are
        decrypted once per batch."""
        key = (chat_model.pk, pinned)
        if key not in self._routes:
            if pinned:
                ordered = [chat_model]
            else:
                found = self._copies.get(chat_model.canonical_id, [])
                chosen = self._by_pk.get(chat_model.pk)
                if chosen is None:
                    ordered = order_candidates(found[0], found) if found else []
                else:
                    ordered = order_candidates(chosen, found)
            self._routes[key] = [route_for_model(m) for m in ordered]
        return self._routes[key]

    def open_twins(self, user, routes: list[Route], checked_model_pk: int | None) -> list[Route]:
        """`routes` without twins restricted to groups `user` is not in (as personal_keys.routes_for_user)."""
        return [
            r
            for r in routes
            if r.chat_model_id is None
            or r.chat_model_id == checked_model_pk
            or (r.chat_model_id in self._by_pk and self.open_to(user, self._by_pk[r.chat_model_id]))
        ]


# --- what changes the catalogue --------------------------------------------------------------------------------


@receiver(post_save, sender=ChatModel, dispatch_uid="catalogue_model_saved")
@receiver(post_delete, sender=ChatModel, dispatch_uid="catalogue_model_deleted")
@receiver(post_save, sender=Provider, dispatch_uid="catalogue_provider_saved")
@receiver(post_delete, sender=Provider, dispatch_uid="catalogue_provider_deleted")
@receiver(post_save, sender=SiteSettings, dispatch_uid="catalogue_settings_saved")
@receiver(post_delete, sender=Group, dispatch_uid="catalogue_group_deleted")
@receiver(m2m_changed, sender=ChatModel.allowed_groups.through, dispatch_uid="catalogue_restrictions_changed")
def _changed(sender, **kwargs) -> None:
    if kwargs.get("raw"):  # loaddata: the stamp may not be migrated yet; loading fixtures changes it anyway
        return
    if kwargs.get("action", "post_").startswith("post_"):  # m2m_changed: once, after the change
        catalogue_changed()
