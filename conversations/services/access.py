"""Access helpers that return the object or refuse. Nothing else in the code looks rows up by id alone."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from conversations.models import Conversation, Message
from conversations.services import plain_reads
from conversations.services.errors import NotFound, Unauthenticated


def parse_uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError) as exc:
        raise NotFound("No such conversation or message.") from exc


def _owned_conversation(rows: QuerySet[Conversation], user, public_id: object) -> Conversation:
    """The row of `rows` that is `user`'s conversation `public_id` and not deleted, or NotFound."""
    try:
        return rows.get(public_id=parse_uuid(public_id), owner=user, deleted_at__isnull=True)
    except Conversation.DoesNotExist as exc:
        raise NotFound("No such conversation.") from exc


def get_conversation_for_user(user, public_id: object) -> Conversation:
    return _owned_conversation(Conversation.objects.select_related("model__provider"), user, public_id)


def get_conversation_for_turn(user, public_id: object) -> Conversation:
    """get_conversation_for_user for a new turn, in one query: with its current leaf (the new message's
    parent) and `busy`, whether an answer is still being written in it."""
    return _owned_conversation(_for_turn(), user, public_id)


def _for_turn() -> QuerySet[Conversation]:
    """Conversations with their current leaf (a new message's parent) and `busy`: whether an answer is still
    being written in it."""
    active = Message.objects.filter(conversation_id=OuterRef("pk"), status__in=Message.ACTIVE_STATUSES)
    # Not the model and its provider: a turn takes its model from the catalogue snapshot
    # (services/model_choices.py), and joining them doubled the cost of building this query.
    return Conversation.objects.select_related("current_leaf").annotate(busy=Exists(active))


def conversations_for_turns(public_ids: Iterable[object]) -> dict[uuid.UUID, Conversation]:
    """get_conversation_for_turn's rows for several conversations, in one query, by public id; not deleted,
    whoever owns them: take one with owned_for_turn."""
    wanted = set()
    for public_id in public_ids:
        with contextlib.suppress(NotFound):
            wanted.add(parse_uuid(public_id))
    rows = plain_reads.conversations_for_turns(sorted(wanted))  # _for_turn()'s rows, without building its SQL
    return {row.public_id: row for row in rows}


def owned_for_turn(conversations: dict[uuid.UUID, Conversation], user, public_id: object) -> Conversation:
    """`user`'s conversation `public_id` among rows from conversations_for_turns, or NotFound."""
    conversation = conversations.get(parse_uuid(public_id))
    if conversation is None or conversation.owner_id != user.pk:
        raise NotFound("No such conversation.")
    return conversation


def get_message_for_user(user, public_id: object) -> Message:
    try:
        return Message.objects.select_related("conversation").get(
            public_id=parse_uuid(public_id), conversation__owner=user, conversation__deleted_at__isnull=True
        )
    except Message.DoesNotExist as exc:
        raise NotFound("No such message.") from exc


def user_from_session(session_key: str | None):
    """The active user a session belongs to right now, or Unauthenticated.

    A websocket reads its user once at connect; calling this before every command means a user who was
    deactivated, logged out elsewhere (session deleted) or changed their password (hash mismatch) can no
    longer act through a socket that is already open. Two queries (SessionUsers reads many at once).
    """
    return SessionUsers([session_key]).user(session_key)


class SessionUsers:
    """The users behind several session keys, read together: with the database session backend, two queries
    whatever their number (the sessions, then the users with their quota rows, which every turn reads)."""

    def __init__(self, session_keys: Iterable[str | None]) -> None:
        keys = {key for key in session_keys if key}
        self._sessions: dict[str, dict] = {}
        if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
            store = SessionStore()
            rows = plain_reads.session_data(sorted(keys), timezone.now())
            self._sessions = {key: store.decode(data) for key, data in rows.items()}
        else:  # another backend: ask it, one key at a time
            engine = import_module(settings.SESSION_ENGINE)
            for key in keys:
                if (session := engine.SessionStore(key)).exists(key):
                    self._sessions[key] = dict(session.items())
        User = get_user_model()
        ids = set()
        for session in self._sessions.values():
            with contextlib.suppress(TypeError, ValueError, ValidationError):
                ids.add(User._meta.pk.to_python(session.get(SESSION_KEY)))
        self._users = plain_reads.users_with_limits(sorted(ids))  # with their quota and instructions

    def user_ids(self) -> list:
        return list(self._users)

    def users(self) -> list:
        """Every user found (active or not: `user` refuses the inactive ones)."""
        return list(self._users.values())

    def user(self, session_key: str | None):
        """As user_from_session: the session's active user, or Unauthenticated."""
        session = self._sessions.get(session_key or "")
        if session is None:
            raise Unauthenticated("Your session has ended. Log in again.")
        user_id = session.get(SESSION_KEY)
        if user_id is None or session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
            raise Unauthenticated("Your session has ended. Log in again.")
        try:
            user = self._users.get(get_user_model()._meta.pk.to_python(user_id))
        except (TypeError, ValueError, ValidationError):
            user = None
        if user is None:
            raise Unauthenticated("Your account no longer exists.")
        if not user.is_active:
            raise Unauthenticated("Your account is disabled.")
        stored_hash = session.get(HASH_SESSION_KEY) or ""
        if not constant_time_compare(stored_hash, user.get_session_auth_hash()):
            raise Unauthenticated("Your session has ended. Log in again.")
        return user
