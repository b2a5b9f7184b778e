"""The model menu: each model a person may pick, once, whichever providers serve it (GET /api/models and the
chat page's boot data).

An entry is a canonical model: its id (what `send` carries), name, a one-line description (the catalog's, or
its family's for a dated snapshot), badges (vision, context window, price per 1M tokens of the route tried
first) and the providers serving it in the order they are tried. The entry marked `default` is the model the
person used last, else the site default.
"""

from __future__ import annotations

from decimal import Decimal

from conversations import catalog
from conversations.models import ChatModel, Conversation
from conversations.services.model_choices import ModelChoices


def _price(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def entry(canonical_id: str, copies: list[ChatModel]) -> dict:
    """One menu entry from a canonical model's copies in route order (their providers loaded)."""
    first = copies[0]
    known, _ = catalog.family_of(canonical_id)
    if known is not None:
        description = known.description
    elif len(copies) == 1:
        description = f"{first.provider.name}'s own model."
    else:
        description = ""
    return {
        "id": canonical_id,
        "name": first.display_name or catalog.display_name_for(canonical_id) or canonical_id,
        "description": description,
        "supports_images": first.supports_images,
        "context_window": first.context_window,
        "max_output_tokens": first.max_output_tokens,
        "input_price": _price(first.input_price),
        "output_price": _price(first.output_price),
        "providers": [copy.provider.name for copy in copies],
        "default": False,
    }


def last_used(user) -> str:
    """The canonical model of the person's most recent chat: their remembered default. One query."""
    if user is None or not getattr(user, "pk", None):
        return ""
    return (
        Conversation.objects.filter(owner=user, deleted_at__isnull=True)
        .exclude(canonical_model="")
        .order_by("-updated_at")
        .values_list("canonical_model", flat=True)
        .first()
        or ""
    )


def menu_for(user, choices: ModelChoices | None = None) -> list[dict]:
    """The menu `user` sees: each canonical model open to them once, by name. Four queries at most."""
    choices = choices or ModelChoices()
    entries = [entry(cid, copies) for cid, copies in choices.menu(user)]
    ids = {e["id"] for e in entries}
    remembered = last_used(user)
    chosen = remembered if remembered in ids else choices.default_model
    for item in entries:
        item["default"] = item["id"] == chosen
    return entries
