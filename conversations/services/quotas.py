"""What each user may use, and how much they have used: the numbers quota enforcement (limits.py), the user
admin and the settings page share.

A limit comes from the user's `UserQuota` row when that field is filled in, else from the site setting
(CHAT_USER_DAILY_BUDGET, CHAT_USER_MONTHLY_BUDGET, CHAT_USER_DAILY_TOKENS, CHAT_USER_MONTHLY_TOKENS,
CHAT_TURNS_PER_MINUTE); 0 means no limit either way. Days and months are calendar periods in TIME_ZONE.
Usage is settled cost and tokens of answers, plus what running answers have reserved, plus the usage of
conversations the user deleted (DeletedUsage), so deleting chats never refills a quota. Answers served through
the user's own key (`own_key`, see personal_keys.py) are their spend, not the site's: they are left out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations.models import DeletedUsage, Message, UserQuota

ZERO = Decimal(0)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Limits:
    """Effective limits; None means no limit."""

    daily_budget: Decimal | None = None
    monthly_budget: Decimal | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    turns_per_minute: int | None = None

    @property
    def meters_usage(self) -> bool:
        return any(
            v is not None
            for v in (self.daily_budget, self.monthly_budget, self.daily_tokens, self.monthly_tokens)
        )


@dataclass(frozen=True)
class Usage:
    """Since the start of today and of this month: settled plus reserved, and how much of it is reserved."""

    day_cost: Decimal = ZERO
    month_cost: Decimal = ZERO
    day_tokens: int = 0
    month_tokens: int = 0
    day_reserved_cost: Decimal = ZERO
    month_reserved_cost: Decimal = ZERO
    day_reserved_tokens: int = 0
    month_reserved_tokens: int = 0


@dataclass(frozen=True)
class Periods:
    now: dt.datetime
    day_start: dt.datetime
    month_start: dt.datetime
    next_day: dt.datetime
    next_month: dt.datetime


def periods(now: dt.datetime | None = None) -> Periods:
    """Today's and this month's bounds in the site's time zone (aware datetimes)."""
    now = timezone.localtime(now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    tz = now.tzinfo
    # Through naive dates, so a daylight-saving change in between can't shift midnight.
    next_day = dt.datetime.combine(day_start.date() + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    first_next = (month_start.date() + dt.timedelta(days=32)).replace(day=1)
    next_month = dt.datetime.combine(first_next, dt.time(), tzinfo=tz)
    return Periods(now, day_start, month_start, next_day, next_month)


def _setting_money(name: str) -> Decimal | None:
    value = Decimal(str(getattr(settings, name))).quantize(CENT)
    return value or None


def _setting_int(name: str) -> int | None:
    return int(getattr(settings, name)) or None


def site_limits() -> Limits:
    return Limits(
        daily_budget=_setting_money("CHAT_USER_DAILY_BUDGET"),
        monthly_budget=_setting_money("CHAT_USER_MONTHLY_BUDGET"),
        daily_tokens=_setting_int("CHAT_USER_DAILY_TOKENS"),
        monthly_tokens=_setting_int("CHAT_USER_MONTHLY_TOKENS"),
        turns_per_minute=_setting_int("CHAT_TURNS_PER_MINUTE"),
    )


def _override(own, default):
    """The user's value if filled in (0 meaning no limit), else the site's."""
    if own is None:
        return default
    return own or None


def limits_for(user, quota: UserQuota | None = None) -> Limits:
    """One query unless `quota` is given (or known to be absent: pass the user's row or nothing)."""
    site = site_limits()
    if quota is None:
        quota = UserQuota.objects.filter(user_id=user.pk).first()
    if quota is None:
        return site
    return Limits(
        daily_budget=_override(quota.daily_budget, site.daily_budget),
        monthly_budget=_override(quota.monthly_budget, site.monthly_budget),
        daily_tokens=_override(quota.daily_tokens, site.daily_tokens),
        monthly_tokens=_override(quota.monthly_tokens, site.monthly_tokens),
        turns_per_minute=_override(quota.turns_per_minute, site.turns_per_minute),
    )


def _tokens():
    return Coalesce(F("prompt_tokens"), Value(0)) + Coalesce(F("completion_tokens"), Value(0))


def usage_for(user, when: Periods | None = None) -> Usage:
    """This user's usage today and this month. Two queries (answers, then deleted conversations)."""
    when = when or periods()
    today = Q(created_at__gte=when.day_start)
    reserved = Q(reserved_cost__isnull=False)  # a reservation lives exactly as long as reserved_cost is set
    answers = Message.objects.filter(
        conversation__owner_id=user.pk,
        role=Message.Role.ASSISTANT,
        own_key=False,
        imported_by__isnull=True,  # served elsewhere: never counts toward this site's quotas
        created_at__gte=when.month_start,
    ).aggregate(
        month_cost=Sum("cost"),
        day_cost=Sum("cost", filter=today),
        month_tokens=Sum(_tokens()),
        day_tokens=Sum(_tokens(), filter=today),
        month_reserved_cost=Sum("reserved_cost"),
        day_reserved_cost=Sum("reserved_cost", filter=today),
        month_reserved_tokens=Sum("reserved_tokens", filter=reserved),
        day_reserved_tokens=Sum("reserved_tokens", filter=reserved & today),
    )
    on_today = Q(day=when.day_start.date())
    deleted = DeletedUsage.objects.filter(
        user_id=user.pk, own_key=False, day__gte=when.month_start.date()
    ).aggregate(
        month_cost=Sum("cost"),
        day_cost=Sum("cost", filter=on_today),
        month_tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
        day_tokens=Sum(F("prompt_tokens") + F("completion_tokens"), filter=on_today),
    )

    def total(key: str, zero):
        return (answers.get(key) or zero) + (deleted.get(key) or zero)

    def held(key: str, zero):
        return answers.get(key) or zero

    return Usage(
        day_cost=total("day_cost", ZERO) + held("day_reserved_cost", ZERO),
        month_cost=total("month_cost", ZERO) + held("month_reserved_cost", ZERO),
        day_tokens=total("day_tokens", 0) + held("day_reserved_tokens", 0),
        month_tokens=total("month_tokens", 0) + held("month_reserved_tokens", 0),
        day_reserved_cost=held("day_reserved_cost", ZERO),
        month_reserved_cost=held("month_reserved_cost", ZERO),
        day_reserved_tokens=held("day_reserved_tokens", 0),
        month_reserved_tokens=held("month_reserved_tokens", 0),
    )


# --- Words for people ---------------------------------------------------------------------------------------


def money(value: Decimal) -> str:
    return f"${value.quantize(CENT):,}"


def tokens(value: int) -> str:
    return f"{value:,} tokens"


def reset_phrase(period: str, when: Periods) -> str:
    """ "at midnight (UTC)" or "on 1 December" (with the year when it is not this year's)."""
    if period == "day":
        return f"at midnight ({timezone.get_current_timezone_name()})"
    first = when.next_month
    year = f" {first.year}" if first.year != when.now.year else ""
    return f"on {first.day} {first:%B}{year}"


@dataclass(frozen=True)
class QuotaLine:
    """One limit as the settings page shows it."""

    label: str
    used: str
    limit: str
    resets: str
    percent: int


def summary(user) -> list[QuotaLine]:
    """The user's limits and how much of each is used, for their settings page. Three queries at most."""
    limits = limits_for(user)
    if not limits.meters_usage:
        return []
    when = periods()
    usage = usage_for(user, when)
    lines = []
    for label, limit, used, fmt, period in (
        ("This month", limits.monthly_budget, usage.month_cost, money, "month"),
        ("Today", limits.daily_budget, usage.day_cost, money, "day"),
        ("This month", limits.monthly_tokens, usage.month_tokens, tokens, "month"),
        ("Today", limits.daily_tokens, usage.day_tokens, tokens, "day"),
    ):
        if limit is None:
            continue
        percent = min(100, int(used * 100 / limit)) if limit else 100
        lines.append(QuotaLine(label, fmt(used), fmt(limit), reset_phrase(period, when), percent))
    return lines
