"""Account creation under the site's sign-up policy (settings.CHAT_SIGNUP: open, approval or closed).

The first account on a site with no users becomes an active superuser (open and approval modes), so a fresh
install can be administered without a shell. Closed means closed, even on an empty site: an operator who
closed sign-ups creates the first admin with `manage.py createsuperuser`, and nobody can claim the site.
"""

from __future__ import annotations

import enum

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables


class AccountStatus(enum.StrEnum):
    """What create_account made, which decides what the sign-up page does next."""

    ADMIN = "admin"  # the site's first user: active superuser and staff
    ACTIVE = "active"  # open sign-up: may log in now
    PENDING = "pending"  # approval sign-up: inactive until an admin ticks "active"


class SignupClosed(Exception):
    """Sign-ups are closed."""


class UsernameTaken(Exception):
    """Another sign-up took the username between the form's check and the insert."""


def signup_mode() -> str:
    return settings.CHAT_SIGNUP


def signup_open() -> bool:
    """Whether the sign-up form should be offered."""
    return signup_mode() != "closed"


@sensitive_variables("password")
def create_account(username: str, password: str, email: str = "") -> tuple[AbstractUser, AccountStatus]:
    """Create a user as the sign-up policy says. Raises SignupClosed or UsernameTaken.

    The password must already have passed the password validators (the sign-up form does that).
    Checking for existing users and inserting happen in one transaction: on SQLite our IMMEDIATE transactions
    serialise this completely; on PostgreSQL two simultaneous first sign-ups could both become admins, which
    is acceptable for the first minutes of an install.
    """
    User = get_user_model()
    mode = signup_mode()
    try:
        with transaction.atomic():
            first = not User.objects.exists()
            if mode == "closed":
                raise SignupClosed
            user = User(username=username, email=User.objects.normalize_email(email))
            user.set_password(password)
            if first:
                user.is_active = user.is_staff = user.is_superuser = True
                status = AccountStatus.ADMIN
            elif mode == "open":
                user.is_active = True
                status = AccountStatus.ACTIVE
            else:
                user.is_active = False
                status = AccountStatus.PENDING
            user.save()
    except IntegrityError as exc:
        raise UsernameTaken(username) from exc
    return user, status
