"""When a user's access ends, what is running for them must stop at once, in every process.

Access ends when an account is deactivated (the admin's action, or the Active box of its change form),
deleted, or its password changed (every other session's hash no longer matches), and when a session ends
(log out, flush, an admin deleting it). Each of those changes sends `access_revoked(user_id)` once its
transaction commits. The engine (conversations/engine/revocation.py) listens: it asks every process to
cancel that user's running answers whose session is no longer valid and to close those sockets with 4401
(the same check as every websocket command: services/access.SessionUsers).

Model signals rather than calls in each view, so the shell, `manage.py changepassword` and anything added
later are covered too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from conversations.services.access import SessionUsers
from conversations.services.errors import Unauthenticated

logger = logging.getLogger(__name__)

# Sent after the commit, with `user_id`: that user's sessions may have ended.
access_revoked = Signal()


def revoke(user_id) -> None:
    """Announce, once the current transaction commits, that `user_id`'s access may have ended."""
    if user_id is None:
        return
    try:
        user_id = get_user_model()._meta.pk.to_python(user_id)  # a session holds it as a string
    except ValidationError:
        return
    transaction.on_commit(lambda: access_revoked.send(sender=None, user_id=user_id))


def ended_sessions(session_keys: Iterable[str | None]) -> set[str | None]:
    """The keys among `session_keys` that no longer authenticate an active user (two queries)."""
    keys = list(session_keys)
    users = SessionUsers(keys)
    ended = set()
    for key in keys:
        try:
            users.user(key)
        except Unauthenticated:
            ended.add(key)
    return ended


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="revocation_user_saved")
def _user_saved(sender, instance, created: bool, **kwargs) -> None:
    if created:
        return
    # AbstractBaseUser keeps the new raw password in `_password` from set_password() until save() returns:
    # a password change. set_unusable_password() (the admin's "password-based authentication: disabled")
    # leaves no such trace, but its hash starts with "!". Deactivation: the account is saved inactive
    # (whatever it was before). Saving such an account again announces it again: harmless.
    if (
        not instance.is_active
        or getattr(instance, "_password", None) is not None
        or (instance.password or "").startswith(UNUSABLE_PASSWORD_PREFIX)
    ):
        revoke(instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="revocation_user_deleted")
def _user_deleted(sender, instance, **kwargs) -> None:
    revoke(instance.pk)


@receiver(post_delete, sender=Session, dispatch_uid="revocation_session_deleted")
def _session_deleted(sender, instance: Session, **kwargs) -> None:
    """Log out, session flush, cycle_key after a password change, an admin deleting a session."""
    user_id = None
    with contextlib.suppress(Exception):  # a session that can't be decoded authenticated nobody
        user_id = instance.get_decoded().get(SESSION_KEY)
    revoke(user_id)
