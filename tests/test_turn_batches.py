"""Turns started in batches (services/turns.TurnBatch, engine/admission.py): the same rules as one at a time,
each turn refused alone, and the shared rows read once whatever the batch's size."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation, Message
from conversations.services import errors
from conversations.services.turns import TurnBatch, TurnRequest, do_send_turn
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db


def send(session_key, conversation=None, text="Hello", model=None, attachments=None):
    return TurnRequest(
        session_key,
        "send",
        {"conversation": conversation, "text": text, "model": model, "params": None, "system_prompt": None,
         "attachments": attachments},
    )  # fmt: skip


def run(requests):
    """Each request's StartedTurn, or the exception that refused it."""
    with TurnBatch(requests) as batch:
        outcomes = batch.start_all()
    for outcome in outcomes:
        if isinstance(outcome, Exception) and not isinstance(outcome, errors.ServiceError):
            raise outcome
    return outcomes


@pytest.fixture
def keys(alice, charlie):
    return session_cookie_for(Client(), alice), session_cookie_for(Client(), charlie)


def idle(conversation):
    Message.objects.filter(conversation=conversation, status__in=Message.ACTIVE_STATUSES).update(
        status="complete"
    )


def test_a_batch_refuses_each_bad_turn_alone(keys, alice, charlie, sim_model):
    alice_key, charlie_key = keys
    mine = do_send_turn(alice, conversation_id=None, text="First").conversation
    idle(mine)
    outcomes = run(
        [
            send(alice_key, str(mine.public_id), "Second"),
            send(
                alice_key, str(mine.public_id), "Double click"
            ),  # the first of this batch is still answering
            send(charlie_key, str(mine.public_id), "Not mine"),  # someone else's conversation
            send("no-such-session", None, "Who?"),
            send(charlie_key, None, "My own new chat"),
            send(alice_key, None, "", attachments=[]),  # nothing to send
        ]
    )
    second, double, not_mine, nobody, new_chat, empty = outcomes
    assert second.turn.conversation.pk == mine.pk and second.prepared is not None
    assert isinstance(double, errors.Busy)
    assert isinstance(not_mine, errors.NotFound)
    assert isinstance(nobody, errors.Unauthenticated)
    assert new_chat.turn.created_conversation and new_chat.turn.conversation.owner == charlie
    assert isinstance(empty, errors.InvalidInput) and empty.code == "empty_message"
    # Refused turns wrote nothing: alice's chat holds two questions and two answers; charlie has one chat.
    assert Message.objects.filter(conversation=mine).count() == 4
    assert Conversation.objects.filter(owner=charlie).count() == 1
    # The prompt of the second turn carries the first exchange and its new question, read with the batch.
    texts = [m.text for m in second.prepared.request.messages]
    assert texts[0] == "First" and texts[-1] == "Second"


def test_a_batch_counts_each_users_turns_per_minute_with_its_own_sends(
    keys, alice, charlie, sim_model, settings
):
    """The rate limit, read once for the whole batch (limits.recent_answers): answers asked for in the last
    minute count, older ones and imported ones don't, and a user's earlier sends in the same batch count
    against the later ones; another user's turns are not held to it."""
    import datetime as dt

    from django.utils import timezone

    from conversations.models import ImportJob, UserQuota

    UserQuota.objects.create(user=alice, turns_per_minute=3)
    alice_key, charlie_key = keys
    recent = do_send_turn(alice, conversation_id=None, text="A minute ago").conversation
    idle(recent)
    old = do_send_turn(alice, conversation_id=None, text="An hour ago").conversation
    idle(old)
    Message.objects.filter(conversation=old).update(created_at=timezone.now() - dt.timedelta(hours=1))
    imported = do_send_turn(alice, conversation_id=None, text="Imported").conversation
    idle(imported)
    job = ImportJob.objects.create(owner=alice, status=ImportJob.Status.DONE)
    Message.objects.filter(conversation=imported).update(imported_by=job)
    outcomes = run([send(alice_key, None, f"Now {i}") for i in range(3)] + [send(charlie_key, None, "Mine")])
    first, second, third, charlies = outcomes
    assert first.prepared is not None and second.prepared is not None  # 1 recent + 1, + 2: within 3
    assert isinstance(third, errors.RateLimited) and "3 messages a minute" in str(third)
    assert charlies.prepared is not None
    # Refused, it wrote nothing: alice has her three earlier chats and the batch's two.
    assert Conversation.objects.filter(owner=alice).count() == 5
    # One counting query for the batch, whatever its size.
    with CaptureQueriesContext(connection) as queries:
        run([send(charlie_key, None, f"More {i}") for i in range(4)])
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 2, counts  # answers running, answers in the last minute
    settings.CHAT_TURNS_PER_MINUTE = 0  # no limit for charlie: nothing to count
    with CaptureQueriesContext(connection) as queries:
        run([send(charlie_key, None, "Unlimited")])
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1, counts  # answers running


def test_a_batch_keeps_group_restricted_models_to_their_groups(keys, alice, charlie, sim_model, gpt4):
    alice_key, charlie_key = keys
    premium = Group.objects.create(name="premium")
    gpt4.allowed_groups.add(premium)
    alice.groups.add(premium)
    allowed, refused = run([send(alice_key, model=gpt4.pk), send(charlie_key, model=gpt4.pk)])
    assert allowed.turn.assistant.model == gpt4
    assert [r.model_id for r in allowed.prepared.routes] == ["gpt-4"]
    assert isinstance(refused, errors.InvalidInput) and refused.code == "model_unavailable"


def test_a_batch_reads_the_shared_rows_once(django_user_model, sim_model):
    people = [django_user_model.objects.create_user(f"user{i}", password="pw") for i in range(20)]
    requests = []
    for person in people:
        conversation = do_send_turn(person, conversation_id=None, text="Earlier").conversation
        idle(conversation)
        requests.append(send(session_cookie_for(Client(), person), str(conversation.public_id), "Now"))
    with CaptureQueriesContext(connection) as one:
        run(requests[:1])
    with CaptureQueriesContext(connection) as twenty:
        outcomes = run(requests[1:])
    assert all(o.prepared is not None for o in outcomes)
    shared = len(one) - 6  # what one turn reads that a batch reads once
    # Each further turn costs only its own writes and checks (about six statements), not the shared reads.
    assert len(twenty) <= shared + 19 * 6, [q["sql"][:80] for q in twenty.captured_queries]
    assert len(twenty) < 19 * len(one) / 1.5


def test_a_batch_saves_each_conversations_new_state(keys, alice, charlie, sim_model, gpt4):
    """The batch's one UPDATE of the conversations (services/row_updates.update_rows) leaves each row as a turn on its own
    would: pointing at its new answer, on the model asked for, with its settings, bumped in the sidebar."""
    alice_key, charlie_key = keys
    mine = do_send_turn(alice, conversation_id=None, text="First").conversation
    idle(mine)
    before = Conversation.objects.get(pk=mine.pk).updated_at
    with_settings = send(alice_key, str(mine.public_id), "Second", model="gpt-4")
    with_settings.data["params"] = {"temperature": 0.2}
    with_settings.data["system_prompt"] = "Answer in French."
    mine_again, theirs = run([with_settings, send(charlie_key, None, "Hello from Charlie")])
    mine.refresh_from_db()
    assert mine.current_leaf_id == mine_again.turn.assistant.pk
    assert (mine.canonical_model, mine.model_id) == ("gpt-4", gpt4.pk)
    assert (mine.params, mine.system_prompt) == ({"temperature": 0.2}, "Answer in French.")
    assert mine.updated_at > before
    new = Conversation.objects.get(pk=theirs.turn.conversation.pk)
    assert (new.owner, new.current_leaf_id) == (charlie, theirs.turn.assistant.pk)
    assert new.canonical_model == sim_model.canonical_id


def test_a_big_batchs_requests_are_handed_over_as_they_are_prepared(
    django_user_model, sim_model, monkeypatch
):
    """SQLite: every HAND_OFF_EVERY prepared sends go to the engine while the rest of the batch is still being
    checked, so a burst's first requests do not wait for its last turn. PostgreSQL: once, after the inserts
    (services/turns.TurnBatch._write says why)."""
    from conversations.services import turns

    people = [django_user_model.objects.create_user(f"user{i}", password="pw") for i in range(40)]
    requests = [
        send(session_cookie_for(Client(), person), None, f"Hello {i}") for i, person in enumerate(people)
    ]
    planned = []
    plan_send = turns.TurnBatch._plan_send

    def counting_plan_send(self, index, user, request):
        planned.append(index)
        return plan_send(self, index, user, request)

    monkeypatch.setattr(turns.TurnBatch, "_plan_send", counting_plan_send)
    handed = []  # per hand-off: the turns in it, and how many turns had been planned by then
    with TurnBatch(requests) as batch:
        outcomes = batch.start_all(lambda ready: handed.append(([i for i, _ in ready], len(planned))))

    assert all(o.prepared is not None for o in outcomes)
    assert sorted(i for turns_, _ in handed for i in turns_) == list(range(40))  # each once
    if connection.vendor == "sqlite":
        assert [len(turns_) for turns_, _ in handed] == [16, 16, 8]
        assert [planned_by_then for _, planned_by_then in handed] == [16, 32, 40]
    else:
        assert [planned_by_then for _, planned_by_then in handed] == [40]
