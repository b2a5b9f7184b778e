"""The models a batch of turns may pick, read once for all of them.

A turn resolves its model (the one asked for, else the conversation's, else the default) among the models
open to its user, then the routes that can serve it (itself and its twins on other providers). Read per turn
that is two or three queries; a batch of turns (services/turns.TurnBatch) reads the catalogue once here: the
available models with their providers, and which are restricted to groups. A user's groups are read only when
a restricted model is involved. The same rules as ChatModelQuerySet.open_to and routes.candidates_for.
"""

from __future__ import annotations

from conversations.llm.routes import Route
from conversations.models import ChatModel
from conversations.services.errors import InvalidInput
from conversations.services.routes import order_candidates, route_for_model


class ModelChoices:
    def __init__(self) -> None:
        self.models = list(ChatModel.objects.available().select_related("provider"))  # by display name
        self._by_pk = {model.pk: model for model in self.models}
        self._restricted: dict[int, set[int]] = {}
        through = ChatModel.allowed_groups.through
        for model_id, group_id in through.objects.filter(chatmodel_id__in=self._by_pk).values_list(
            "chatmodel_id", "group_id"
        ):
            self._restricted.setdefault(model_id, set()).add(group_id)
        self._groups_of: dict[int, set[int]] = {}
        self._routes: dict[int, list[Route]] = {}

    def open_to(self, user, model: ChatModel) -> bool:
        groups = self._restricted.get(model.pk)
        if not groups or getattr(user, "is_superuser", False):
            return True
        if user is None:
            return False
        if user.pk not in self._groups_of:
            self._groups_of[user.pk] = set(user.groups.values_list("pk", flat=True))
        return bool(groups & self._groups_of[user.pk])

    def resolve(self, model_pk: int | None, conversation_model_id: int | None, user) -> ChatModel:
        """As turns.resolve_model: the model asked for, else the conversation's, else the site default."""
        if model_pk is not None:
            chosen = self._open(model_pk, user)
            if chosen is None:
                raise InvalidInput("That model isn't available. Pick another one.", code="model_unavailable")
            return chosen
        if conversation_model_id is not None:
            chosen = self._open(conversation_model_id, user)
            if chosen is None:
                raise InvalidInput(
                    "This conversation's model is no longer available. Pick another one.",
                    code="model_unavailable",
                )
            return chosen
        usable = [model for model in self.models if self.open_to(user, model)]
        chosen = next((model for model in usable if model.is_default), None) or (
            usable[0] if usable else None
        )
        if chosen is None:
            raise InvalidInput(
                "No model is available yet. An administrator needs to add a provider key.",
                code="model_unavailable",
            )
        return chosen

    def _open(self, pk: int, user) -> ChatModel | None:
        model = self._by_pk.get(pk)
        return model if model is not None and self.open_to(user, model) else None

    def candidates(self, chat_model: ChatModel) -> list[Route]:
        """As routes.candidates_for(chat_model), from the models read here; keys decrypted once per batch."""
        if chat_model.pk not in self._routes:
            found = sorted(
                (
                    m
                    for m in self.models
                    if m.pk == chat_model.pk
                    or (chat_model.canonical_id and m.canonical_id == chat_model.canonical_id)
                ),
                key=lambda m: (m.provider.priority, m.provider.name, m.pk),
            )
            chosen = self._by_pk.get(chat_model.pk)
            if chosen is None:
                ordered = order_candidates(found[0], found) if found else []
            else:
                ordered = order_candidates(chosen, found)
            self._routes[chat_model.pk] = [route_for_model(m) for m in ordered]
        return self._routes[chat_model.pk]

    def open_twins(self, user, routes: list[Route], checked_model_pk: int | None) -> list[Route]:
        """`routes` without twins restricted to groups `user` is not in (as personal_keys.routes_for_user)."""
        return [
            r
            for r in routes
            if r.chat_model_id is None
            or r.chat_model_id == checked_model_pk
            or (r.chat_model_id in self._by_pk and self.open_to(user, self._by_pk[r.chat_model_id]))
        ]
