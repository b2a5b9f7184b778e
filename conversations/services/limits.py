"""Per-user limits: turns per minute, and a monthly budget that running answers reserve against.

A turn reserves the most its answer could cost (prompt estimate plus the full output allowance) before the
call, and the reservation is replaced by the real cost when the answer ends. Reservations are made while the
user's row is locked, so concurrent turns from several tabs or processes can't overspend together.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.utils import timezone

from conversations.models import ChatModel, Message
from conversations.services.errors import BudgetExceeded, RateLimited

# Prompt tokens assumed when reserving, before the prompt is built (the real count settles it).
RESERVE_PROMPT_TOKENS = 4_000


def lock_user(user) -> None:
    """Serialise this user's turns: a row lock on PostgreSQL; SQLite already serialises write transactions."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def check_rate(user) -> None:
    limit = settings.CHAT_TURNS_PER_MINUTE
    if not limit:
        return
    since = timezone.now() - dt.timedelta(minutes=1)
    recent = Message.objects.filter(
        conversation__owner=user, role=Message.Role.ASSISTANT, created_at__gte=since
    ).count()
    if recent >= limit:
        raise RateLimited(f"You can send {limit} messages a minute. Wait a moment and try again.")


def month_start() -> dt.datetime:
    now = timezone.localtime()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def spent_this_month(user) -> Decimal:
    """Settled cost plus what running answers have reserved."""
    rows = Message.objects.filter(conversation__owner=user, created_at__gte=month_start())
    totals = rows.aggregate(cost=Sum("cost"), reserved=Sum("reserved_cost"))
    return (totals["cost"] or Decimal(0)) + (totals["reserved"] or Decimal(0))


def reserve_budget(user, chat_model: ChatModel, max_output: int | None) -> Decimal:
    """The amount to hold for one answer; raises BudgetExceeded if it doesn't fit. Call inside lock_user."""
    output = min(max_output or chat_model.max_output_tokens, chat_model.max_output_tokens)
    estimate = chat_model.cost(RESERVE_PROMPT_TOKENS, output)
    budget = Decimal(str(settings.CHAT_USER_MONTHLY_BUDGET))
    if budget and spent_this_month(user) + estimate > budget:
        raise BudgetExceeded(
            f"This answer could exceed your monthly budget of ${budget:.2f}. Ask an administrator to raise it."
        )
    return estimate
