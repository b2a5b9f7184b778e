"""Login throttling (django-axes, configured in settings.py): how long a lock-out lasts, whether a user is
locked out, and unlocking one from the admin.

axes counts failed logins per username and, separately, per client address. Either reaching
CHAT_LOGIN_FAILURE_LIMIT within the cool-off locks it until CHAT_LOGIN_COOLOFF_MINUTES after its latest
failure (an attempt while locked counts as one, so guessing on keeps it locked).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from axes.models import AccessAttempt
from axes.utils import reset
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db.models import Max, Q, QuerySet, Sum
from django.dispatch import receiver
from django.utils import timezone


def cool_off() -> dt.timedelta:
    return dt.timedelta(minutes=settings.CHAT_LOGIN_COOLOFF_MINUTES)


@dataclass(frozen=True)
class LockStatus:
    failures: int  # within the cool-off
    locked_until: dt.datetime | None  # None: not locked

    @property
    def locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()


def _status(attempts: QuerySet[AccessAttempt]) -> LockStatus:
    recent = attempts.filter(attempt_time__gte=timezone.now() - cool_off())
    figures = recent.aggregate(failures=Sum("failures_since_start"), latest=Max("attempt_time"))
    failures = figures["failures"] or 0
    if failures < settings.CHAT_LOGIN_FAILURE_LIMIT or figures["latest"] is None:
        return LockStatus(failures, None)
    return LockStatus(failures, figures["latest"] + cool_off())


def status_for_username(username: str) -> LockStatus:
    return _status(AccessAttempt.objects.filter(username=username))


def minutes_until_unlocked(username: str | None, ip_address: str | None) -> int:
    """Whole minutes (at least 1) until neither the username nor the address is locked out."""
    statuses = [_status(AccessAttempt.objects.filter(Q(username=username)))] if username else []
    if ip_address:
        statuses.append(_status(AccessAttempt.objects.filter(ip_address=ip_address)))
    until = max((s.locked_until for s in statuses if s.locked_until), default=None)
    if until is None:
        return max(1, math.ceil(cool_off().total_seconds() / 60))
    return max(1, math.ceil((until - timezone.now()).total_seconds() / 60))


@receiver(user_logged_in, dispatch_uid="login_limits_forget_on_success")
def _forget_on_success(sender, user, **kwargs) -> None:
    """A successful login forgets that username's failures, from any address, and nobody else's (axes' own
    reset would forget the address's failures at other usernames too: see settings.AXES_RESET_ON_SUCCESS)."""
    if settings.AXES_ENABLED:
        AccessAttempt.objects.filter(username=user.get_username()).delete()


def unlock(user) -> int:
    """Forget the user's failed logins (their username's lock-out). The number of records removed."""
    return reset(username=user.get_username())
