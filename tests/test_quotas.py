"""Per-user quotas: money and tokens per day and month, turns per minute, site defaults and overrides, clear
refusals that say which limit and when it resets, and reservations that concurrent turns can't overspend."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from conversations.models import DeletedUsage, Message, UserQuota
from conversations.services import errors, limits, quotas, sidebar, turns
from tests.conftest import session_cookie_for
from tests.usage_seed import answer
from tests.wsclient import ChatSocket

# One reservation on sim_model: 4,000 prompt tokens at $2.50/M plus 16,384 output tokens at $10/M.
RESERVATION = Decimal("0.173840")
RESERVED_TOKENS = 4_000 + 16_384


def next_month_phrase() -> str:
    today = timezone.localdate()
    first = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return f"{first.day} {first:%B}" + (f" {first.year}" if first.year != today.year else "")


def set_quota(user, **fields) -> UserQuota:
    quota, _ = UserQuota.objects.update_or_create(user=user, defaults=fields)
    return quota


def refusal(user, **kwargs) -> str:
    # As each websocket command does, load the user afresh: a turn reads the quota row loaded with them.
    user = type(user).objects.get(pk=user.pk)
    with pytest.raises(errors.BudgetExceeded) as excinfo:
        turns.do_send_turn(user, conversation_id=None, text="one more", **kwargs)
    return excinfo.value.message


# --- Which limits apply ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_uses_the_site_defaults_until_an_admin_overrides_them(alice, settings):
    settings.CHAT_USER_MONTHLY_BUDGET = 5.0
    settings.CHAT_USER_DAILY_TOKENS = 100_000
    settings.CHAT_TURNS_PER_MINUTE = 20
    assert quotas.limits_for(alice) == quotas.Limits(
        monthly_budget=Decimal("5.00"), daily_tokens=100_000, turns_per_minute=20
    )
    set_quota(alice, monthly_budget=Decimal("12.50"), daily_tokens=0, turns_per_minute=None)
    # A value overrides; 0 lifts the limit; empty keeps the site's.
    assert quotas.limits_for(alice) == quotas.Limits(monthly_budget=Decimal("12.50"), turns_per_minute=20)


def test_it_says_when_each_period_resets():
    november = quotas.periods(dt.datetime(2026, 11, 15, 13, 30, tzinfo=dt.UTC))
    assert quotas.reset_phrase("month", november) == "on 1 December"
    assert quotas.reset_phrase("day", november) == "at midnight (UTC)"
    december = quotas.periods(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC))
    assert quotas.reset_phrase("month", december) == "on 1 January 2027"
    assert december.next_day == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


# --- Refusals a person can act on ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_a_spent_monthly_budget_and_says_when_it_resets(alice, sim_model):
    set_quota(alice, monthly_budget=Decimal("5.00"))
    answer(alice, cost="5.00")
    assert refusal(alice) == f"You've used your $5.00 for this month. It resets on {next_month_phrase()}."
    assert not Message.objects.filter(status="pending").exists(), "a refused turn writes nothing"


@pytest.mark.django_db
def test_it_refuses_a_spent_daily_budget_but_not_for_yesterdays_spending(alice, sim_model, settings):
    settings.CHAT_USER_DAILY_BUDGET = 1.0
    answer(alice, cost="3.00", at=timezone.now() - dt.timedelta(days=1))
    turns.do_send_turn(alice, conversation_id=None, text="fine: yesterday doesn't count")
    Message.objects.filter(status="pending").update(
        status="complete", cost=Decimal("1.00"), reserved_cost=None
    )
    assert refusal(alice) == "You've used your $1.00 for today. It resets at midnight (UTC)."


@pytest.mark.django_db
def test_it_refuses_an_answer_that_could_exceed_what_is_left(alice, sim_model):
    set_quota(alice, monthly_budget=Decimal("0.20"))
    answer(alice, cost="0.05")
    assert refusal(alice) == (
        "This answer could cost up to $0.17, more than the $0.15 left of your $0.20 for this month. Pick a "
        f"cheaper model or a lower maximum answer length, or wait until it resets on {next_month_phrase()}."
    )
    # A lower max_tokens makes the reservation fit.
    turns.do_send_turn(alice, conversation_id=None, text="short, please", params={"max_tokens": 1000})


@pytest.mark.django_db
def test_it_refuses_by_tokens_per_day_and_month(alice, sim_model):
    set_quota(alice, daily_tokens=30_000)
    answer(alice, prompt=20_000, completion=9_000)
    assert refusal(alice) == (
        f"This answer could use up to {RESERVED_TOKENS:,} tokens, more than the 1,000 tokens left of your "
        "30,000 tokens for today. Pick a cheaper model or a lower maximum answer length, or wait until it "
        "resets at midnight (UTC)."
    )
    set_quota(alice, daily_tokens=None, monthly_tokens=29_000)
    assert refusal(alice) == (
        f"You've used your 29,000 tokens for this month. It resets on {next_month_phrase()}."
    )


@pytest.mark.django_db
def test_it_explains_when_running_answers_hold_the_rest(alice, sim_model):
    set_quota(alice, monthly_budget=Decimal("0.20"))
    turns.do_send_turn(alice, conversation_id=None, text="a long answer, still running")
    assert refusal(alice).startswith(
        "This answer could cost up to $0.17, more than the $0.03 left of your $0.20 for this month."
    )
    set_quota(alice, monthly_budget=Decimal("0.17"))
    assert refusal(alice) == (
        "Your answers still being written have reserved the rest of your $0.17 for this month. Wait for them "
        f"to finish, or until it resets on {next_month_phrase()}."
    )


@pytest.mark.django_db
def test_a_zero_quota_lifts_the_site_limit_for_one_user(alice, charlie, sim_model, settings):
    settings.CHAT_USER_MONTHLY_BUDGET = 0.10
    set_quota(alice, monthly_budget=Decimal("0"))
    turns.do_send_turn(alice, conversation_id=None, text="no limit for alice")
    assert "$0.10" in refusal(charlie)


@pytest.mark.django_db
def test_deleting_conversations_does_not_refill_a_budget(alice, sim_model):
    set_quota(alice, monthly_budget=Decimal("1.00"))
    spent = answer(alice, cost="0.90", prompt=1000, completion=500)
    sidebar.delete_conversation(alice, str(spent.conversation.public_id))  # hidden, its answers kept a while
    assert quotas.usage_for(alice).month_cost == Decimal("0.90")
    spent.conversation.delete()  # purged for good: the usage is folded into DeletedUsage first
    assert not Message.objects.exists()
    kept = DeletedUsage.objects.get()
    assert (kept.user_id, kept.cost, kept.turns, kept.prompt_tokens) == (alice.pk, Decimal("0.9"), 1, 1000)
    assert quotas.usage_for(alice).month_cost == Decimal("0.90")
    assert "more than the $0.10 left of your $1.00" in refusal(alice)


@pytest.mark.django_db
def test_it_limits_turns_per_minute_per_user(alice, charlie, sim_model, settings):
    settings.CHAT_TURNS_PER_MINUTE = 20
    set_quota(alice, turns_per_minute=1)
    turns.do_send_turn(alice, conversation_id=None, text="first")
    Message.objects.filter(status="pending").update(status="complete")
    with pytest.raises(errors.RateLimited) as excinfo:
        turns.do_send_turn(alice, conversation_id=None, text="second")
    assert excinfo.value.message == "You can send 1 messages a minute. Wait a moment and try again."
    for _ in range(2):  # charlie has the site's 20
        turns.do_send_turn(charlie, conversation_id=None, text="fine")
        Message.objects.filter(status="pending").update(status="complete")


@pytest.mark.django_db
def test_it_settles_reservations_into_tokens_too(alice, sim_model):
    turn = turns.do_send_turn(alice, conversation_id=None, text="hi")
    assert (turn.assistant.reserved_cost, turn.assistant.reserved_tokens) == (RESERVATION, RESERVED_TOKENS)
    usage = quotas.usage_for(alice)
    assert (usage.month_tokens, usage.month_reserved_tokens) == (RESERVED_TOKENS, RESERVED_TOKENS)
    # The engine ends an answer by clearing reserved_cost: from then on only the real figures count.
    Message.objects.filter(pk=turn.assistant.pk).update(
        status="complete", reserved_cost=None, prompt_tokens=10, completion_tokens=5, cost=Decimal("0.0001")
    )
    usage = quotas.usage_for(alice)
    assert (usage.month_tokens, usage.month_cost) == (15, Decimal("0.0001"))


@pytest.mark.django_db
def test_it_does_not_query_usage_for_users_without_limits(alice, sim_model, django_assert_num_queries):
    with django_assert_num_queries(1):  # the quota row; no usage sums
        limits.reserve(alice, sim_model, None)


# --- Concurrency: reservations are made under the user's lock ------------------------------------------------------


def _fire(count: int, send) -> list[object]:
    """Run `send` in `count` threads released at once; each result or exception, in no particular order."""
    barrier = threading.Barrier(count)
    results: list[object] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(send())
        except Exception as exc:
            results.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_turns_cannot_overspend_a_money_quota(alice, sim_model):
    set_quota(alice, monthly_budget=Decimal("0.40"))  # room for two reservations of $0.17, not three
    results = _fire(6, lambda: turns.do_send_turn(alice, conversation_id=None, text="at once"))
    started = [r for r in results if isinstance(r, turns.TurnStarted)]
    refused = [r for r in results if isinstance(r, errors.BudgetExceeded)]
    assert (len(started), len(refused)) == (2, 4), results
    assert quotas.usage_for(alice).month_cost == 2 * RESERVATION <= Decimal("0.40")


@pytest.mark.django_db(transaction=True)
def test_concurrent_turns_cannot_overspend_a_token_quota(alice, sim_model):
    set_quota(alice, daily_tokens=50_000)  # two reservations of 20,384 tokens
    results = _fire(5, lambda: turns.do_send_turn(alice, conversation_id=None, text="at once"))
    assert sum(isinstance(r, turns.TurnStarted) for r in results) == 2, results
    assert quotas.usage_for(alice).day_tokens == 2 * RESERVED_TOKENS


# --- End to end: the chat says so ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_chat_says_plainly_that_the_budget_is_spent(
    live_server_daphne, client, alice, sim_model, upstream
):
    set_quota(alice, monthly_budget=Decimal("0.20"))
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Hello", ref="first", params={"max_tokens": 500})
        ack = sock.wait_type("ack")
        end = sock.wait_end(ack["assistant_message"]["id"])
        assert end["status"] == "complete"
        Message.objects.filter(pk=Message.objects.get(public_id=end["id"]).pk).update(cost=Decimal("0.20"))

        sock.send(type="send", text="And again", ref="second", params={"max_tokens": 500})
        error = sock.wait_type("error")
    assert error == {
        "type": "error",
        "code": "budget_exceeded",
        "ref": "second",
        "message": f"You've used your $0.20 for this month. It resets on {next_month_phrase()}.",
    }
