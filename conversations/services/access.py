"""Access helpers that return the object or refuse. Nothing else in the code looks rows up by id alone."""

from __future__ import annotations

import uuid
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.crypto import constant_time_compare

from conversations.models import Conversation, Message
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
    active = Message.objects.filter(conversation_id=OuterRef("pk"), status__in=Message.ACTIVE_STATUSES)
    rows = Conversation.objects.select_related("model__provider", "current_leaf")
    return _owned_conversation(rows.annotate(busy=Exists(active)), user, public_id)


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
    longer act through a socket that is already open. One or two queries.
    """
    if not session_key:
        raise Unauthenticated("Your session has ended. Log in again.")
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    user_id = session.get(SESSION_KEY)
    if user_id is None or session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        raise Unauthenticated("Your session has ended. Log in again.")
    User = get_user_model()
    try:
        # With the user's quota row (if any), which every turn reads: one query instead of two.
        user = User._default_manager.select_related("quota").get(pk=User._meta.pk.to_python(user_id))
    except User.DoesNotExist as exc:
        raise Unauthenticated("Your account no longer exists.") from exc
    if not user.is_active:
        raise Unauthenticated("Your account is disabled.")
    stored_hash = session.get(HASH_SESSION_KEY) or ""
    if not constant_time_compare(stored_hash, user.get_session_auth_hash()):
        raise Unauthenticated("Your session has ended. Log in again.")
    return user
