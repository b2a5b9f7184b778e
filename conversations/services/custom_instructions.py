"""Custom instructions, as in ChatGPT: what a person tells the assistant about themselves and how it should
respond, sent with every chat as the first system message (before a chat's own system prompt) while they are
on. Saved from the settings page, exported with all chats (the zip's conversations.json) and imported back.
"""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist

from conversations.models import CustomInstructions
from conversations.services.errors import InvalidInput

MAX_CHARS = 1500  # each field, as ChatGPT allows


def get(user) -> CustomInstructions | None:
    """The user's instructions, or None. No query when the user was read with select_related."""
    try:
        return user.custom_instructions
    except ObjectDoesNotExist:
        return None


def system_text(user) -> str:
    """The system message the instructions make, or "" when there are none or they are off."""
    instructions = get(user)
    if instructions is None or not instructions.enabled:
        return ""
    parts = []
    if instructions.about_user.strip():
        parts.append(f"What the user wants you to know about them:\n{instructions.about_user.strip()}")
    if instructions.response_style.strip():
        parts.append(f"How the user wants you to respond:\n{instructions.response_style.strip()}")
    if not parts:
        return ""
    return "The user gave these instructions for every conversation.\n\n" + "\n\n".join(parts)


def save(user, about_user: str, response_style: str, enabled: bool) -> CustomInstructions:
    for label, text in (("About you", about_user), ("How to respond", response_style)):
        if len(text) > MAX_CHARS:
            raise InvalidInput(f"{label} is {len(text)} characters long; at most {MAX_CHARS} fit.")
    instructions, _ = CustomInstructions.objects.update_or_create(
        user=user,
        defaults={
            "about_user": about_user.strip(),
            "response_style": response_style.strip(),
            "enabled": bool(enabled),
        },
    )
    user.custom_instructions = instructions
    return instructions


def export_dict(user) -> dict | None:
    instructions = get(user)
    if instructions is None:
        return None
    return {
        "about_user": instructions.about_user,
        "response_style": instructions.response_style,
        "enabled": instructions.enabled,
    }


def parse_export(data) -> dict | None:
    """The instructions of an export, checked; None when it has none. InvalidInput when they are malformed."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InvalidInput("its custom instructions are not an object.")
    about, style, enabled = (
        data.get("about_user", ""),
        data.get("response_style", ""),
        data.get("enabled", True),
    )
    if not isinstance(about, str) or not isinstance(style, str) or not isinstance(enabled, bool):
        raise InvalidInput("its custom instructions have a field of the wrong type.")
    if len(about) > MAX_CHARS or len(style) > MAX_CHARS:
        raise InvalidInput(f"its custom instructions are longer than {MAX_CHARS} characters.")
    return {"about_user": about, "response_style": style, "enabled": enabled}


def import_instructions(user, data: dict | None) -> bool:
    """Apply imported instructions unless the user already wrote their own (never overwritten). True: applied."""
    if not data or not (data["about_user"].strip() or data["response_style"].strip()):
        return False
    current = get(user)
    if current is not None and (current.about_user.strip() or current.response_style.strip()):
        return False
    save(user, data["about_user"], data["response_style"], data["enabled"])
    return True
