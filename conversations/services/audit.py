"""The audit log: who did what to provider keys, users, quotas and models, and when.

Entries never hold a secret. Changes are recorded as field names; values only for fields in `SAFE_VALUES`
(quotas and flags). Anything that may hold a key (api_key, extra_headers, passwords) is named, never copied.

Admin pages record through `record()` (see conversations/admin/audit.py). Account activation is recorded by
a signal wherever it happens; the admin sets the acting user for the signal with `acting_as()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from conversations.models import AuditEntry

logger = logging.getLogger(__name__)

# Fields whose values may be written into an entry: limits, flags, priorities. Nothing else.
SAFE_VALUES = frozenset(
    {
        "daily_budget", "monthly_budget", "daily_tokens", "monthly_tokens", "turns_per_minute",
        "is_active", "is_staff", "is_superuser", "enabled", "is_default", "priority",
    }
)  # fmt: skip

_actor: contextvars.ContextVar = contextvars.ContextVar("audit_actor", default=None)


@contextlib.contextmanager
def acting_as(user) -> Iterator[None]:
    """Attribute entries recorded by signals inside this block to `user` (an admin request's user)."""
    token = _actor.set(user)
    try:
        yield
    finally:
        _actor.reset(token)


def _kind(target) -> str:
    return target._meta.model_name if hasattr(target, "_meta") else type(target).__name__.lower()


def record(actor, action: str, target=None, summary: str = "", **details) -> AuditEntry:
    """Write one entry. `target` is a model instance (or None); `details` must be JSON-able and secret-free."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    entry = AuditEntry.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        target_type=_kind(target) if target is not None else "",
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        summary=summary,
        details=details,
    )
    logger.info(
        "audit: %s %s %s by %s", action, entry.target_type, entry.target_id, entry.actor_name or "system"
    )
    return entry


def value_changes(before: dict, after: dict) -> dict[str, list]:
    """{field: [old, new]} for safe fields that changed; others as {field: "changed"}."""
    changes: dict[str, list | str] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        changes[name] = [_plain(old), _plain(new)] if name in SAFE_VALUES else "changed"
    return changes


def _plain(value):
    return value if value is None or isinstance(value, bool | int | str) else str(value)


# --- Account activation, wherever it happens ----------------------------------------------------------------

User = get_user_model()


@receiver(pre_save, sender=User, dispatch_uid="audit_user_active_before")
def _remember_active(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or (update_fields is not None and "is_active" not in update_fields):
        instance._audit_was_active = None
        return
    instance._audit_was_active = (
        sender._default_manager.filter(pk=instance.pk).values_list("is_active", flat=True).first()
    )


@receiver(post_save, sender=User, dispatch_uid="audit_user_active_after")
def _record_activation(sender, instance, created, **kwargs) -> None:
    was = getattr(instance, "_audit_was_active", None)
    if created or was is None or was == instance.is_active:
        return
    if instance.is_active:
        # Never logged in and inactive until now: a sign-up waiting for approval.
        action = "user.approved" if instance.last_login is None else "user.activated"
    else:
        action = "user.deactivated"
    record(_actor.get(), action, instance, is_active=[was, instance.is_active])
