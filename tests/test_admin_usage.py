"""The usage dashboard: its figures are the sums of recorded usage (answers, and deleted conversations' usage),
per day, model and user; latency percentiles and speed per model; provider uptime; CSV export; access."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.services import quotas, usage
from tests.usage_seed import answer

pytestmark = pytest.mark.django_db

URL = "/admin/usage/"


def days_ago(n: int) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=n)


@pytest.fixture
def seeded(alice, charlie):
    """Answers over the last days, one outside the default 30-day range, one in a deleted conversation."""
    rows = [
        # user, model, provider, cost, prompt, completion, cached, status, ttft, duration, days ago
        (alice, "gpt-4o", "Simulator", "0.50", 1000, 200, 100, "complete", 300, 2300, 3),
        (alice, "gpt-4o-mini", "Simulator", "0.02", 500, 100, 0, "complete", 100, 1100, 1),
        (charlie, "gpt-4o", "Simulator", "1.25", 3000, 500, 0, "complete", 500, 5500, 0),
        (charlie, "gpt-4o", "Backup", None, None, None, None, "error", None, 900, 0),
    ]
    made = [
        answer(u, model=m, provider=p, cost=c, prompt=pt, completion=ct, cached=ca, status=s, ttft_ms=t,
               duration_ms=d, at=days_ago(n))
        for u, m, p, c, pt, ct, ca, s, t, d, n in rows
    ]  # fmt: skip
    answer(alice, cost="9.99", prompt=9999, completion=9999, at=days_ago(40))  # outside the range
    gone = answer(alice, cost="0.10", prompt=100, completion=50, at=days_ago(1))
    gone.conversation.delete()  # purged: its usage lives on in DeletedUsage
    return made


def test_the_dashboard_figures_are_the_sums_of_recorded_usage(admin_client, seeded):
    response = admin_client.get(URL)
    assert response.status_code == 200
    board = response.context["board"]
    t = board.totals
    # Four answers plus the deleted one; the 40-day-old answer is outside the range.
    assert (t.turns, t.errors) == (5, 1)
    assert (t.prompt_tokens, t.completion_tokens, t.cached_tokens) == (4600, 850, 100)
    assert t.cost == Decimal("1.87")
    assert board.deleted_turns == 1

    by_user = {name: f for name, f in board.by_user}
    assert by_user["alice"].cost == Decimal("0.62") and by_user["alice"].turns == 3
    assert by_user["charlie"].cost == Decimal("1.25") and by_user["charlie"].errors == 1
    assert [name for name, _ in board.by_user] == ["charlie", "alice"], "largest spender first"

    today = timezone.localdate()
    assert board.by_day[today].cost == Decimal("1.25") and board.by_day[today].turns == 2
    yesterday = today - dt.timedelta(days=1)
    assert board.by_day_model[(yesterday, "gpt-4o")].cost == Decimal("0.10")  # the deleted one
    assert board.by_day_model[(yesterday, "gpt-4o-mini")].tokens == 600
    # Every grouping adds up to the same totals.
    for grouping in (board.by_day.values(), board.by_day_model.values(), [f for _, f in board.by_user]):
        assert sum(f.cost for f in grouping) == t.cost
        assert sum(f.tokens for f in grouping) == t.tokens

    models = {m.name: m for m in board.by_model}
    assert (models["gpt-4o"].ttft_p50, models["gpt-4o"].ttft_p95) == (300, 500)
    # (200 + 500) output tokens over (2,000 + 5,000) ms of generating after the first token.
    assert models["gpt-4o"].tokens_per_second == 100.0
    assert models["gpt-4o-mini"].tokens_per_second == 100.0

    html = response.content.decode()
    assert '<span class="usage-stat-value" id="total-cost">$1.87</span>' in html
    assert "Includes 1 answers from conversations their owners have since deleted." in html
    assert html.count('<svg class="usage-chart"') == 2


def test_provider_uptime_counts_error_endings_per_day(admin_client, seeded):
    board = admin_client.get(URL).context["board"]
    uptime = {p.name: p for p in board.providers}
    assert (uptime["Simulator"].answers, uptime["Simulator"].errors, uptime["Simulator"].uptime) == (
        3,
        0,
        1.0,
    )
    assert (uptime["Backup"].answers, uptime["Backup"].errors, uptime["Backup"].uptime) == (1, 1, 0.0)
    backup_today = uptime["Backup"].days[-1]
    assert (backup_today.day, backup_today.answers, backup_today.errors) == (timezone.localdate(), 1, 1)
    assert uptime["Backup"].days[0].uptime is None, "a day without answers is not an outage"


def test_percentiles_are_nearest_rank(admin_client, alice):
    for ms in range(1, 101):
        answer(alice, model="gpt-4o", ttft_ms=ms, duration_ms=ms + 1000, completion=10)
    [stats] = admin_client.get(URL).context["board"].by_model
    assert (stats.ttft_p50, stats.ttft_p95) == (50, 95)
    assert usage.percentile([7], 95) == 7 and usage.percentile([], 50) is None


def test_a_date_range_narrows_every_figure(admin_client, seeded):
    today = timezone.localdate()
    board = admin_client.get(URL, {"start": today.isoformat(), "end": today.isoformat()}).context["board"]
    assert (board.days, board.totals.turns, board.totals.cost) == ([today], 2, Decimal("1.25"))
    old = (today - dt.timedelta(days=40)).isoformat()
    board = admin_client.get(URL, {"start": old, "end": old}).context["board"]
    assert board.totals.cost == Decimal("9.99")


def test_a_backwards_range_is_refused_and_the_default_shown(admin_client, seeded):
    today = timezone.localdate()
    response = admin_client.get(
        URL, {"start": today.isoformat(), "end": (today - dt.timedelta(days=3)).isoformat()}
    )
    assert "The start date must be on or before the end date." in response.content.decode()
    assert len(response.context["board"].days) == 30


def test_the_csv_has_the_same_figures_at_the_finest_grain(admin_client, seeded):
    response = admin_client.get("/admin/usage.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="usage-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("1.87")
    assert sum(int(r["answers"]) for r in rows) == 5
    assert sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in rows) == 5450
    assert {(r["user"], r["provider"]) for r in rows if r["errors"] == "1"} == {("charlie", "Backup")}


def test_spend_on_users_own_keys_is_shown_apart_from_the_sites(admin_client, alice, seeded):
    answer(alice, cost="4.00", prompt=400, completion=100, own_key=True)
    gone = answer(alice, cost="0.30", prompt=10, completion=10, own_key=True, at=days_ago(1))
    gone.conversation.delete()
    response = admin_client.get(URL)
    board = response.context["board"]
    t = board.totals
    assert (t.turns, t.tokens) == (7, 5450 + 520)  # they are answers all the same
    assert (t.cost, t.own_key_cost) == (Decimal("1.87"), Decimal("4.30"))  # but not the site's spend
    by_user = dict(board.by_user)
    assert (by_user["alice"].cost, by_user["alice"].own_key_cost) == (Decimal("0.62"), Decimal("4.30"))
    assert sum(f.cost for f in board.by_day.values()) == t.cost
    html = response.content.decode()
    assert '<span class="usage-stat-value" id="total-cost">$1.87</span>' in html
    assert '<span class="usage-stat-value" id="total-own-key-cost">$4.30</span>' in html

    rows = list(csv.DictReader(io.StringIO(admin_client.get("/admin/usage.csv").content.decode())))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("1.87")
    assert sum(Decimal(r["own_key_cost_usd"]) for r in rows) == Decimal("4.30")

    month = usage.with_month_usage(type(alice).objects.filter(pk=alice.pk)).get()
    assert month.month_cost == quotas.usage_for(alice).month_cost < Decimal("4.00")  # the user list's column


def test_the_dashboard_has_no_own_key_line_when_nobody_used_one(admin_client, seeded):
    assert 'id="total-own-key-cost"' not in admin_client.get(URL).content.decode()


def test_the_csv_defuses_spreadsheet_formulas_in_usernames(admin_client, django_user_model):
    answer(django_user_model.objects.create_user("+cmd"), cost="0.01")
    body = admin_client.get("/admin/usage.csv").content.decode()
    assert ",'+cmd," in body


def test_the_csv_defuses_formulas_behind_a_tab_or_carriage_return(admin_client, alice):
    # Model and provider names are copied onto answers from what an admin typed (issue 16, finding 7).
    answer(alice, cost="0.01", model="\t=HYPERLINK(1)", provider="\r=cmd|' /C calc'!A0")
    rows = list(csv.reader(io.StringIO(admin_client.get("/admin/usage.csv").content.decode())))
    [row] = rows[1:]
    assert row[2] == "'\t=HYPERLINK(1)"
    assert row[3] == "'\r=cmd|' /C calc'!A0"
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)


def test_the_admin_index_links_to_the_dashboard(admin_client):
    assert 'href="/admin/usage/"' in admin_client.get("/admin/").content.decode()


def test_the_dashboard_costs_the_same_queries_for_more_data(admin_client, alice):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL).status_code == 200
        return len(queries)

    answer(alice, cost="0.01", ttft_ms=5, duration_ms=50, completion=3)
    few = count()
    for i in range(40):
        answer(
            alice,
            model=f"model-{i % 4}",
            provider=f"p{i % 3}",
            cost="0.01",
            ttft_ms=i,
            duration_ms=900,
            at=days_ago(i % 20),
        )
    assert count() == few


def test_charlie_and_staff_without_permission_cannot_see_usage(client, charlie, django_user_model):
    client.force_login(charlie)
    for url in (URL, "/admin/usage.csv"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert client.get("/admin/usage.csv").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_message"))
    assert client.get(URL).status_code == 200
