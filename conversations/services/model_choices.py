"""The models people pick, and the routes that serve them, read once for a batch of turns.

A person picks a canonical model (GPT-4o: `gpt-4o`); each enabled provider's enabled copy of it is a route,
tried in the providers' priority order (the admin's *Priority*), copies past their retirement date last. A
turn's model is the one asked for, else the conversation's, else the site default (SiteSettings), each
resolved to the first route open to the user; the routes after it are the fallback before the first token.
So a chat, or the default, survives its provider being switched off while another provider serves the model.
A conversation an admin pinned (`Conversation.model_pinned`) answers through its own copy only.

Read per turn that is several queries; a batch of turns (services/turns.TurnBatch) reads the catalogue once
here: the available models with their providers, and which are restricted to groups. A user's groups are
read only when a restricted model is involved; the site default only when a turn needs it.
"""

from __future__ import annotations

import logging

from conversations.llm.routes import Route
from conversations.models import ChatModel, Conversation, SiteSettings
from conversations.services.errors import InvalidInput
from conversations.services.routes import order_candidates, route_for_model

logger = logging.getLogger(__name__)

UNAVAILABLE = "That model isn't available. Pick another one."
CONVERSATION_UNAVAILABLE = "This conversation's model is no longer available. Pick another one."
NONE_AVAILABLE = "No model is available yet. An administrator needs to add a provider key."


def route_order(model: ChatModel) -> tuple:
    """Copies of one model in the order they are tried (reads model.provider: select_related it)."""
    return (model.provider.priority, model.provider.name, model.pk)


class ModelChoices:
    def __init__(self) -> None:
        models = ChatModel.objects.available().select_related("provider")
        self.models = sorted(models, key=route_order)
        self._by_pk = {model.pk: model for model in self.models}
        self._copies: dict[str, list[ChatModel]] = {}
        for model in order_candidates(self.models[0], self.models) if self.models else []:
            self._copies.setdefault(model.canonical_id, []).append(model)  # priority order, retired last
        self._restricted: dict[int, set[int]] = {}
        through = ChatModel.allowed_groups.through
        for model_id, group_id in through.objects.filter(chatmodel_id__in=self._by_pk).values_list(
            "chatmodel_id", "group_id"
        ):
            self._restricted.setdefault(model_id, set()).add(group_id)
        self._groups_of: dict[int, set[int]] = {}
        self._routes: dict[tuple[int, bool], list[Route]] = {}
        self._default: str | None = None

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
        """The site default's canonical id (one query, the first time)."""
        if self._default is None:
            self._default = SiteSettings.default_model_id()
        return self._default

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
