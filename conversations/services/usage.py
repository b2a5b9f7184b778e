"""Usage figures for the admin: the dashboard, its CSV export, and the user list's "this month" columns.

The source is the answers themselves (assistant `Message` rows: model_name, provider_name, tokens, cost,
ttft_ms, duration_ms, status, created_at), plus `DeletedUsage`, into which a conversation's usage is folded
when it is deleted, so totals (and quotas) survive deleted chats. Sums and counts are computed by the database,
grouped by day in TIME_ZONE; only time-to-first-token percentiles are computed here, over one sorted column.
`cost` is the site's spend; answers served through users' own keys (`own_key`) count as answers and tokens
but their cost is kept apart, in `own_key_cost`.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import (
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from conversations.models import Conversation, DeletedUsage, Message
from conversations.services import charts, quotas

ZERO = Decimal(0)
MONEY = DecimalField(max_digits=16, decimal_places=6)
MAX_RANGE_DAYS = 366
NO_PROVIDER = "(no provider)"
NO_MODEL = "(unknown model)"


@dataclass
class Figures:
    """Additive usage: what every grouping of the dashboard shows."""

    turns: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = ZERO  # the site's spend
    own_key_cost: Decimal = ZERO  # spent through users' own keys: theirs, not the site's

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def error_rate(self) -> float:
        return self.errors / self.turns if self.turns else 0.0

    def add(self, row: dict) -> None:
        self.turns += row.get("turns") or 0
        self.errors += row.get("errors") or 0
        self.prompt_tokens += row.get("prompt_tokens") or 0
        self.completion_tokens += row.get("completion_tokens") or 0
        self.cached_tokens += row.get("cached_tokens") or 0
        self.cost += row.get("cost") or ZERO
        self.own_key_cost += row.get("own_key_cost") or ZERO


@dataclass
class ModelStats:
    name: str
    figures: Figures = field(default_factory=Figures)
    ttft_p50: int | None = None
    ttft_p95: int | None = None
    tokens_per_second: float | None = None


@dataclass
class UptimeDay:
    day: dt.date
    answers: int
    errors: int

    @property
    def uptime(self) -> float | None:
        return None if not self.answers else 1 - self.errors / self.answers


@dataclass
class ProviderUptime:
    name: str
    days: list[UptimeDay]
    answers: int = 0
    errors: int = 0

    @property
    def uptime(self) -> float | None:
        return None if not self.answers else 1 - self.errors / self.answers


@dataclass
class Dashboard:
    start: dt.date
    end: dt.date  # inclusive
    days: list[dt.date]
    totals: Figures
    by_day: dict[dt.date, Figures]
    by_day_model: dict[tuple[dt.date, str], Figures]
    by_user: list[tuple[str, Figures]]  # username, largest cost first
    by_model: list[ModelStats]
    providers: list[ProviderUptime]
    deleted_turns: int  # answers of deleted conversations included in the sums
    cost_chart: str = ""
    tokens_chart: str = ""


# --- Queries ---------------------------------------------------------------------------------------------------


def bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, the day after end 00:00) in the site's time zone."""
    tz = timezone.get_current_timezone()
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=tz),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz),
    )


def answers(start: dt.date, end: dt.date) -> QuerySet[Message]:
    since, until = bounds(start, end)
    # Imported answers keep their figures for display, but were served elsewhere: they never count here.
    return Message.objects.filter(
        role=Message.Role.ASSISTANT, created_at__gte=since, created_at__lt=until, imported_by__isnull=True
    )


def _figures() -> dict:
    """Aggregates over Message rows, named like Figures' fields."""
    return {
        "turns": Count("id"),
        "errors": Count("id", filter=Q(status=Message.Status.ERROR)),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        # own_key_cost first: once "cost" names an aggregate, a later Sum("cost") would refer to it.
        "own_key_cost": Sum("cost", filter=Q(own_key=True)),
        "cost": Sum("cost", filter=Q(own_key=False)),
    }


def _deleted_figures() -> dict:
    return {
        "turns": Sum("turns"),
        "errors": Sum("errors"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        # own_key_cost first: once "cost" names an aggregate, a later Sum("cost") would refer to it.
        "own_key_cost": Sum("cost", filter=Q(own_key=True)),
        "cost": Sum("cost", filter=Q(own_key=False)),
    }


def _grouped(start: dt.date, end: dt.date, message_keys: dict, deleted_keys: dict) -> Iterator[dict]:
    """Rows of Figures grouped by the given keys, from answers and from deleted usage alike. Two queries."""
    rows = (
        answers(start, end)
        .annotate(day=TruncDate("created_at"))
        .values(**message_keys)
        .annotate(**_figures())
        .order_by()
    )
    yield from rows
    yield from (
        DeletedUsage.objects.filter(day__gte=start, day__lte=end)
        .values(**deleted_keys)
        .annotate(**_deleted_figures())
        .order_by()
    )


def percentile(sorted_values: list[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def _speed_and_latency(start: dt.date, end: dt.date) -> tuple[dict[str, float], dict[str, tuple]]:
    """Output tokens per second (generation time only: after the first token) and TTFT p50/p95 per model."""
    generating = ExpressionWrapper(F("duration_ms") - F("ttft_ms"), output_field=IntegerField())
    timed = Q(status=Message.Status.COMPLETE, ttft_ms__isnull=False, completion_tokens__gt=0) & Q(
        duration_ms__gt=F("ttft_ms")
    )
    speeds = {}
    for row in (
        answers(start, end)
        .filter(timed)
        .values("model_name")
        .annotate(tokens=Sum("completion_tokens"), ms=Sum(generating))
        .order_by()
    ):
        if row["ms"]:
            speeds[row["model_name"]] = round(row["tokens"] / (row["ms"] / 1000), 1)
    latency = {}
    ttfts = (
        answers(start, end)
        .filter(ttft_ms__isnull=False)
        .order_by("model_name", "ttft_ms")
        .values_list("model_name", "ttft_ms")
    )
    for name, group in itertools.groupby(ttfts.iterator(chunk_size=5000), key=lambda r: r[0]):
        values = [ttft for _, ttft in group]
        latency[name] = (percentile(values, 50), percentile(values, 95))
    return speeds, latency


def _uptime(start: dt.date, end: dt.date, days: list[dt.date]) -> list[ProviderUptime]:
    """Per provider and day: finished answers and how many ended in an error."""
    finished = answers(start, end).exclude(status__in=Message.ACTIVE_STATUSES)
    counts: dict[str, dict[dt.date, tuple[int, int]]] = {}
    for row in (
        finished.annotate(day=TruncDate("created_at"))
        .values("provider_name", "day")
        .annotate(answers=Count("id"), errors=Count("id", filter=Q(status=Message.Status.ERROR)))
        .order_by()
    ):
        counts.setdefault(row["provider_name"] or NO_PROVIDER, {})[row["day"]] = (
            row["answers"],
            row["errors"],
        )
    providers = []
    for name in sorted(counts):
        per_day = [UptimeDay(day, *counts[name].get(day, (0, 0))) for day in days]
        providers.append(
            ProviderUptime(name, per_day, sum(d.answers for d in per_day), sum(d.errors for d in per_day))
        )
    return providers


def dashboard(start: dt.date, end: dt.date) -> Dashboard:
    """Every figure of the usage page for [start, end] (dates in TIME_ZONE, inclusive). Ten queries, whatever
    the number of answers; TTFT values are streamed once, sorted by the database, for the percentiles."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    totals = Figures()
    by_day = {day: Figures() for day in days}
    by_day_model: dict[tuple[dt.date, str], Figures] = {}
    deleted_turns = 0
    for row in _grouped(
        start, end, {"d": F("day"), "m": F("model_name")}, {"d": F("day"), "m": F("model_name")}
    ):
        key = (row["d"], row["m"] or NO_MODEL)
        by_day_model.setdefault(key, Figures()).add(row)
        by_day.setdefault(row["d"], Figures()).add(row)
        totals.add(row)
    deleted_turns = (
        DeletedUsage.objects.filter(day__gte=start, day__lte=end).aggregate(n=Sum("turns"))["n"] or 0
    )

    users: dict[object, tuple[str, Figures]] = {}
    for row in _grouped(
        start,
        end,
        {"uid": F("conversation__owner_id"), "name": F("conversation__owner__username")},
        {"uid": F("user_id"), "name": F("username")},
    ):
        _, figures = users.setdefault(row["uid"], (row["name"] or "(deleted user)", Figures()))
        figures.add(row)
    by_user = sorted(users.values(), key=lambda item: (-item[1].cost, -item[1].tokens, item[0]))

    models: dict[str, ModelStats] = {}
    for row in _grouped(start, end, {"m": F("model_name")}, {"m": F("model_name")}):
        name = row["m"] or NO_MODEL
        models.setdefault(name, ModelStats(name)).figures.add(row)
    speeds, latency = _speed_and_latency(start, end)
    for stats in models.values():
        stats.tokens_per_second = speeds.get(stats.name)
        stats.ttft_p50, stats.ttft_p95 = latency.get(stats.name, (None, None))
    by_model = sorted(models.values(), key=lambda s: (-s.figures.cost, -s.figures.turns, s.name))

    board = Dashboard(
        start=start,
        end=end,
        days=days,
        totals=totals,
        by_day=by_day,
        by_day_model=by_day_model,
        by_user=by_user,
        by_model=by_model,
        providers=_uptime(start, end, days),
        deleted_turns=deleted_turns,
    )
    model_names = [s.name for s in by_model]
    board.cost_chart = charts.stacked_bars(
        "Cost per day by model (USD)",
        days,
        {name: [float(by_day_model.get((d, name), Figures()).cost) for d in days] for name in model_names},
        unit="$",
    )
    board.tokens_chart = charts.stacked_bars(
        "Tokens per day by model",
        days,
        {name: [by_day_model.get((d, name), Figures()).tokens for d in days] for name in model_names},
    )
    return board


CSV_HEADER = [
    "day", "user", "model", "provider", "answers", "errors", "prompt_tokens", "completion_tokens",
    "cached_tokens", "cost_usd", "own_key_cost_usd",
]  # fmt: skip


def csv_rows(start: dt.date, end: dt.date) -> Iterable[list]:
    """One row per day, user, model and provider: the dashboard's figures at their finest grain."""
    merged: dict[tuple, Figures] = {}
    for row in _grouped(
        start,
        end,
        {
            "d": F("day"),
            "u": F("conversation__owner__username"),
            "m": F("model_name"),
            "p": F("provider_name"),
        },
        {"d": F("day"), "u": F("username"), "m": F("model_name"), "p": F("provider_name")},
    ):
        key = (row["d"], row["u"] or "(deleted user)", row["m"] or NO_MODEL, row["p"] or NO_PROVIDER)
        merged.setdefault(key, Figures()).add(row)
    yield CSV_HEADER
    for (day, user, model, provider), f in sorted(merged.items()):
        yield [
            day.isoformat(), user, model, provider, f.turns, f.errors, f.prompt_tokens,
            f.completion_tokens, f.cached_tokens, f"{f.cost:.6f}", f"{f.own_key_cost:.6f}",
        ]  # fmt: skip


# --- The user list's "this month" columns -------------------------------------------------------------------


def with_month_usage(users: QuerySet) -> QuerySet:
    """Annotate users with `month_cost` and `month_tokens` (settled, deleted chats included, own-key answers
    left out: what counts toward their quotas) by subqueries: the list page costs the same number of queries
    for 10 users as for 1,000."""
    start = quotas.periods().month_start
    mine = (
        Message.objects.filter(
            conversation__owner=OuterRef("pk"),
            role=Message.Role.ASSISTANT,
            own_key=False,
            imported_by__isnull=True,
            created_at__gte=start,
        )
        .order_by()
        .values("conversation__owner")
    )
    gone = (
        DeletedUsage.objects.filter(user_id=OuterRef("pk"), own_key=False, day__gte=start.date())
        .order_by()
        .values("user_id")
    )
    tokens = Coalesce(F("prompt_tokens"), 0) + Coalesce(F("completion_tokens"), 0)
    return users.annotate(
        month_cost=ExpressionWrapper(
            Coalesce(Subquery(mine.annotate(v=Sum("cost")).values("v")), Value(ZERO), output_field=MONEY)
            + Coalesce(Subquery(gone.annotate(v=Sum("cost")).values("v")), Value(ZERO), output_field=MONEY),
            output_field=MONEY,
        ),
        month_tokens=ExpressionWrapper(
            Coalesce(Subquery(mine.annotate(v=Sum(tokens)).values("v")), 0)
            + Coalesce(
                Subquery(gone.annotate(v=Sum(F("prompt_tokens") + F("completion_tokens"))).values("v")), 0
            ),
            output_field=IntegerField(),
        ),
    )


# --- Keeping the usage of deleted conversations ------------------------------------------------------------


@receiver(pre_delete, sender=Conversation, dispatch_uid="usage_keep_deleted_conversation")
def fold_deleted_conversation(sender, instance: Conversation, **kwargs) -> None:
    """Before a conversation's answers go, add their usage to DeletedUsage (same transaction as the delete;
    the user row still exists even when the whole account is being deleted)."""
    rows = list(
        Message.objects.filter(
            conversation_id=instance.pk, role=Message.Role.ASSISTANT, imported_by__isnull=True
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "model_name", "provider_name", "own_key")
        .annotate(**_figures())
        .order_by()
    )
    if not rows:
        return
    username = (
        get_user_model()
        ._default_manager.filter(pk=instance.owner_id)
        .values_list("username", flat=True)
        .first()
    )
    DeletedUsage.objects.bulk_create(
        DeletedUsage(
            user_id=instance.owner_id,
            username=username or "",
            day=row["day"],
            model_name=row["model_name"],
            provider_name=row["provider_name"],
            own_key=row["own_key"],
            turns=row["turns"],
            errors=row["errors"],
            prompt_tokens=row["prompt_tokens"] or 0,
            completion_tokens=row["completion_tokens"] or 0,
            cached_tokens=row["cached_tokens"] or 0,
            cost=(row["cost"] or ZERO) + (row["own_key_cost"] or ZERO),  # one of the two: grouped by own_key
        )
        for row in rows
    )
