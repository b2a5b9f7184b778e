"""services/plain_reads.py gives what the ORM gives: the same rows, every field's value converted the same way
(aware datetimes, UUIDs, JSON, decimals, booleans), the same order and the same related rows attached, with no
query left for the callers to make. Runs on SQLite and, in the backends lane, PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.sessions.models import Session
from django.db.models import Count, Exists, OuterRef
from django.test import Client
from django.utils import timezone

from conversations.models import (
    Attachment,
    Conversation,
    CustomInstructions,
    Message,
    UserQuota,
)
from conversations.services import plain_reads
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db


def values(instance) -> dict:
    """Every concrete field's value, as the instance holds it."""
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def assert_same(plain, orm) -> None:
    assert type(plain) is type(orm)
    got, want = values(plain), values(orm)
    assert got == want
    for name, value in want.items():  # == lets 1 equal True and naive equal nothing: check the types too
        assert type(got[name]) is type(value), name
    assert plain._state.adding is False and plain._state.db == orm._state.db


@pytest.fixture
def library(alice, charlie):
    """Two users' conversations: one with a branch, a running answer, an image and params; one deleted;
    one whose leaf is unset."""
    now = timezone.now()
    busy = Conversation.objects.create(
        owner=alice,
        title="Busy ✓",
        params={"temperature": 0.3, "nested": {"a": [1, 2]}},
        system_prompt="Be brief",
    )
    question = Message.objects.create(conversation=busy, role="user", content="Hi", status="complete")
    done = Message.objects.create(
        conversation=busy, role="assistant", parent=question, content="Hello", status="complete",
        cost=Decimal("0.001250"), prompt_tokens=3, completion_tokens=2,
    )  # fmt: skip
    running = Message.objects.create(conversation=busy, role="assistant", parent=question, status="streaming")
    Message.objects.filter(pk=done.pk).update(created_at=now - dt.timedelta(seconds=5))  # out of id order
    busy.current_leaf = running
    busy.save()
    image = Attachment.objects.create(
        owner=alice,
        message=question,
        file="a/b.png",
        mime="image/png",
        width=2,
        height=3,
        bytes=10,
        sha256="0" * 64,
    )
    Attachment.objects.create(
        owner=alice, message=question, file="a/c.png", mime="image/png", width=2, height=3, bytes=10, sha256="1" * 64,
        position=1,
    )  # fmt: skip
    idle = Conversation.objects.create(owner=charlie, title="Idle")
    Message.objects.create(conversation=idle, role="user", content="Hey", status="complete")
    gone = Conversation.objects.create(owner=alice, title="Deleted", deleted_at=now)
    UserQuota.objects.create(user=alice, daily_budget=Decimal("1.50"), turns_per_minute=5)
    CustomInstructions.objects.create(user=charlie, about_user="I like maps", enabled=True)
    return {"busy": busy, "idle": idle, "gone": gone, "image": image}


def test_conversations_for_turns_match_the_orm(library, django_assert_num_queries):
    ids = [c.public_id for c in library.values() if isinstance(c, Conversation)]
    active = Message.objects.filter(conversation_id=OuterRef("pk"), status__in=Message.ACTIVE_STATUSES)
    orm = {
        c.public_id: c
        for c in Conversation.objects.select_related("current_leaf")
        .annotate(busy=Exists(active))
        .filter(public_id__in=ids, deleted_at__isnull=True)
    }
    with django_assert_num_queries(1):
        plain = {c.public_id: c for c in plain_reads.conversations_for_turns(ids)}
    assert set(plain) == set(orm) == {library["busy"].public_id, library["idle"].public_id}  # not the deleted
    for public_id, conversation in plain.items():
        assert_same(conversation, orm[public_id])
        assert conversation.busy is orm[public_id].busy
    with django_assert_num_queries(0):  # the leaf came with its conversation, or is known to be absent
        assert_same(
            plain[library["busy"].public_id].current_leaf, orm[library["busy"].public_id].current_leaf
        )
        assert plain[library["idle"].public_id].current_leaf is None
    assert plain[library["busy"].public_id].busy is True and plain[library["idle"].public_id].busy is False


def test_messages_and_images_match_the_orm(library):
    pks = [library["busy"].pk, library["idle"].pk]
    orm = list(Message.objects.filter(conversation_id__in=pks).order_by("created_at", "id"))
    plain = plain_reads.messages_of(pks)
    assert [m.pk for m in plain] == [m.pk for m in orm]
    for got, want in zip(plain, orm, strict=True):
        assert_same(got, want)
    orm_images = list(Attachment.objects.filter(message__conversation_id__in=pks))
    plain_images = plain_reads.images_of(pks)
    assert [a.pk for a, _ in plain_images] == [a.pk for a in orm_images]
    for (got, conversation_pk), want in zip(plain_images, orm_images, strict=True):
        assert_same(got, want)
        assert conversation_pk == library["busy"].pk
    assert plain_reads.messages_of([]) == [] and plain_reads.images_of([]) == []


def test_users_come_with_their_quota_and_instructions(library, alice, charlie, django_assert_num_queries):
    orm = {u.pk: u for u in type(alice).objects.select_related("quota", "custom_instructions")}
    with django_assert_num_queries(1):
        plain = plain_reads.users_with_limits([alice.pk, charlie.pk, 10**9])
    assert set(plain) == {alice.pk, charlie.pk}
    for pk, user in plain.items():
        assert_same(user, orm[pk])
    with django_assert_num_queries(0):  # present or known absent, as select_related leaves them
        assert_same(plain[alice.pk].quota, orm[alice.pk].quota)
        assert plain[alice.pk].quota.user is plain[alice.pk]
        assert_same(plain[charlie.pk].custom_instructions, orm[charlie.pk].custom_instructions)
        with pytest.raises(UserQuota.DoesNotExist):
            plain[charlie.pk].quota  # noqa: B018
        with pytest.raises(CustomInstructions.DoesNotExist):
            plain[alice.pk].custom_instructions  # noqa: B018


def test_running_answers_and_sessions_match_the_orm(library, alice, charlie):
    orm = dict(
        Message.objects.filter(
            conversation__owner_id__in=[alice.pk, charlie.pk], status__in=Message.ACTIVE_STATUSES
        )
        .values_list("conversation__owner_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    assert plain_reads.running_answers([alice.pk, charlie.pk]) == orm == {alice.pk: 1}
    live = session_cookie_for(Client(), alice)
    expired = session_cookie_for(Client(), charlie)
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    found = plain_reads.session_data([live, expired, "no-such-key"], timezone.now())
    assert found == {live: Session.objects.get(session_key=live).session_data}


def test_recent_answers_count_what_the_last_minute_asked_for(alice, charlie):
    """The turns-per-minute count looks only at conversations updated since (conv_owner_updated_idx): an answer
    written a moment ago is counted whichever conversation it is in; older ones are not."""
    now = timezone.now()
    since = now - dt.timedelta(minutes=1)

    def answer(owner, *, age: dt.timedelta) -> None:
        conversation = Conversation.objects.create(owner=owner, title="t")
        question = Message.objects.create(
            conversation=conversation, role="user", content="q", status="complete"
        )
        reply = Message.objects.create(
            conversation=conversation, role="assistant", parent=question, content="a", status="complete"
        )
        Message.objects.filter(pk__in=[question.pk, reply.pk]).update(created_at=now - age)
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - age)

    answer(alice, age=dt.timedelta(seconds=5))
    answer(alice, age=dt.timedelta(seconds=50))
    for _ in range(3):  # history: touched long ago
        answer(alice, age=dt.timedelta(days=30))
    answer(charlie, age=dt.timedelta(seconds=10))
    answer(charlie, age=dt.timedelta(minutes=3))
    assert plain_reads.recent_answers([alice.pk, charlie.pk], since) == {alice.pk: 2, charlie.pk: 1}


def test_turn_checks_read_the_answers_being_written_not_the_history(alice, library):
    """What a turn reads about its user and conversation goes through the indexes made for it, so it stays as
    fast for a user with years of history as for a new one (bench/large_account.py, "turn checks"). The
    statuses are literals in the SQL: with parameters, neither database may use a partial index."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip(
            "the plans checked are SQLite's (PostgreSQL chooses by table size; its figures are in the bench)"
        )
    since = timezone.now() - dt.timedelta(minutes=1)
    queries = []

    def record(execute, sql, params, many, context):
        queries.append((sql, params))  # as sent: with its parameters still parameters
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        plain_reads.running_answers([alice.pk])
        plain_reads.recent_answers([alice.pk], since)
        plain_reads.conversations_for_turns([library["busy"].public_id])
    plans = []
    with connection.cursor() as cursor:
        for sql, params in queries:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plans.append(" | ".join(row[-1] for row in cursor.fetchall()))
    running, recent, for_turns = plans
    assert "msg_conv_active_idx" in running, running
    assert "conv_owner_updated_idx" in recent, recent
    assert "msg_conv_active_idx" in for_turns, for_turns
