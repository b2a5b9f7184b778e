"""Per-user limits: turns per minute, answers running at once, and money and token quotas per day and per month that running answers
reserve against. The limits themselves and usage sums live in quotas.py.

A turn reserves the most its answer could cost and use (prompt estimate plus the full output allowance) before
the call, and the reservation is replaced by the real figures when the answer ends. Reservations are made while
the user's row is locked, so concurrent turns from several tabs or processes can't overspend together.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from conversations.models import ChatModel, Message
from conversations.services import plain_reads, quotas
from conversations.services.errors import BudgetExceeded, RateLimited, TooManyRunning

# Prompt tokens assumed when reserving, before the prompt is built (the real count settles it).
RESERVE_PROMPT_TOKENS = 4_000


@dataclass(frozen=True)
class Reservation:
    cost: Decimal
    tokens: int


def lock_user(user) -> None:
    """Serialise this user's turns: a row lock on PostgreSQL. SQLite needs none: its write transactions
    (BEGIN IMMEDIATE, see settings) already run one at a time, so the query would only cost time."""
    if not connection.features.has_select_for_update:
        return
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def lock_users(user_ids: list) -> None:
    """lock_user for several users at once (a batch of turns), in one query."""
    if not connection.features.has_select_for_update or not user_ids:
        return
    list(
        get_user_model()
        .objects.select_for_update()
        .filter(pk__in=user_ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


RATE_WINDOW = dt.timedelta(minutes=1)  # turns_per_minute counts the answers asked for in this window


def check_rate(user, limits: quotas.Limits | None = None, recent: int | None = None) -> None:
    """Refuse a turn past the user's turns_per_minute. `recent`: the answers they asked for in the last
    minute, when the caller has counted them (a batch of turns: `recent_answers`); else one query."""
    limit = (limits or quotas.limits_for(user)).turns_per_minute
    if not limit:
        return
    if recent is None:
        recent = Message.objects.filter(
            conversation__owner=user,
            role=Message.Role.ASSISTANT,
            created_at__gte=timezone.now() - RATE_WINDOW,
            imported_by__isnull=True,
        ).count()
    if recent >= limit:
        raise RateLimited(f"You can send {limit} messages a minute. Wait a moment and try again.")


def reserve(
    user,
    chat_model: ChatModel,
    max_output: int | None,
    limits: quotas.Limits | None = None,
    image_tokens: int = 0,
) -> Reservation:
    """What to hold for one answer; raises BudgetExceeded, saying which limit and when it resets, if it
    doesn't fit. Call inside lock_user. No usage query when the user has no money or token limit.
    `image_tokens`: the estimate for the images the prompt will carry, on top of RESERVE_PROMPT_TOKENS."""
    output = min(max_output or chat_model.max_output_tokens, chat_model.max_output_tokens)
    prompt = RESERVE_PROMPT_TOKENS + max(image_tokens, 0)
    reservation = Reservation(cost=chat_model.cost(prompt, output), tokens=prompt + output)
    limits = limits or quotas.limits_for(user)
    if not limits.meters_usage:
        return reservation
    when = quotas.periods()
    usage = quotas.usage_for(user, when)
    # Longest wait first: when the month is spent, "it resets at midnight" would be wrong.
    checks = (
        ("month", limits.monthly_budget, usage.month_cost, usage.month_reserved_cost, reservation.cost, quotas.money),
        ("month", limits.monthly_tokens, usage.month_tokens, usage.month_reserved_tokens, reservation.tokens, quotas.tokens),
        ("day", limits.daily_budget, usage.day_cost, usage.day_reserved_cost, reservation.cost, quotas.money),
        ("day", limits.daily_tokens, usage.day_tokens, usage.day_reserved_tokens, reservation.tokens, quotas.tokens),
    )  # fmt: skip
    for period, limit, used, held, need, fmt in checks:
        if limit is not None and used + need > limit:
            raise BudgetExceeded(_refusal(period, limit, used, held, need, fmt, when))
    return reservation


def _refusal(period: str, limit, used, held, need, fmt, when: quotas.Periods) -> str:
    which = "this month" if period == "month" else "today"
    resets = quotas.reset_phrase(period, when)
    settled = used - held
    if settled >= limit:
        return f"You've used your {fmt(limit)} for {which}. It resets {resets}."
    if used >= limit:
        return (
            f"Your answers still being written have reserved the rest of your {fmt(limit)} for {which}. "
            f"Wait for them to finish, or until it resets {resets}."
        )
    could = "cost" if fmt is quotas.money else "use"
    return (
        f"This answer could {could} up to {fmt(need)}, more than the {fmt(limit - used)} left of your "
        f"{fmt(limit)} for {which}. Pick a cheaper model or a lower maximum answer length, or wait until it "
        f"resets {resets}."
    )


# --- Answers running at once ------------------------------------------------------------------------------


def recent_answers(user_ids) -> dict:
    """check_rate's count for several users at once (a batch of turns), in one query: user pk -> answers asked
    for in the last minute (absent: none)."""
    return plain_reads.recent_answers(sorted(user_ids), timezone.now() - RATE_WINDOW)


def running_answers(user_ids) -> dict:
    """How many answers each user has being written now (pending or streaming), in any process. One query."""
    return plain_reads.running_answers(sorted(user_ids))


def check_running(user, running: int) -> None:
    """Refuse a new answer when `running` of the user's are already being written (CHAT_MAX_RUNNING_PER_USER)."""
    cap = settings.CHAT_MAX_RUNNING_PER_USER
    if cap and running >= cap:
        raise TooManyRunning(
            f"You already have {running} answers being written. Wait for one to finish, or stop one, "
            "before asking for another."
        )
