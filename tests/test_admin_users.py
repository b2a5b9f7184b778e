"""The user admin: approving sign-ups, deactivating (open sockets stop at once), quotas inline, this month's
usage at a glance, and groups that decide who may pick which model. Each change lands in the audit log."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import AuditEntry, ChatModel, UserQuota
from conversations.services import errors, model_menu, turns
from tests.conftest import PASSWORD, session_cookie_for
from tests.usage_seed import answer
from tests.wsclient import ChatSocket

USERS = "/admin/auth/user/"


def change_url(user) -> str:
    return f"{USERS}{user.pk}/change/"


def user_form(user, **overrides) -> dict:
    """The user change form as the admin page posts it, with an empty quota inline."""
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": "",
        "last_name": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        # date_joined has a callable default, so the page posts its initial value too (show_hidden_initial).
        "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "quota-TOTAL_FORMS": "1",
        "quota-INITIAL_FORMS": "0",
        "quota-MIN_NUM_FORMS": "0",
        "quota-MAX_NUM_FORMS": "1",
        "quota-0-user": str(user.pk),
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def run_action(admin_client, action: str, *users):
    return admin_client.post(USERS, {"action": action, "_selected_action": [str(u.pk) for u in users]})


# --- Approving sign-ups -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_pending_signup_cannot_log_in_until_an_admin_approves_it(
    client, admin_client, admin_user, settings
):
    settings.CHAT_SIGNUP = "approval"
    response = client.post(
        reverse("signup"), {"username": "bob", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    from django.contrib.auth import get_user_model

    bob = get_user_model().objects.get(username="bob")
    assert not bob.is_active

    login = {"username": "bob", "password": PASSWORD}
    refused = client.post(reverse("login"), login)
    assert "waiting for an administrator" in refused.content.decode()
    assert SESSION_KEY not in client.session

    pending = admin_client.get(USERS, {"status": "pending"}).content.decode()
    assert ">bob<" in pending and "awaiting approval" in pending
    assert ">alice<" not in pending

    response = run_action(admin_client, "approve", bob)
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.is_active
    entry = AuditEntry.objects.get(action="user.approved")
    assert (entry.actor, entry.target_id, entry.details) == (
        admin_user,
        str(bob.pk),
        {"is_active": [False, True]},
    )

    assert client.post(reverse("login"), login).status_code == 302
    assert client.session[SESSION_KEY] == str(bob.pk)


@pytest.mark.django_db
def test_it_tells_pending_signups_from_deactivated_users(admin_client, alice, charlie):
    alice.is_active = False
    alice.save()  # never logged in: waiting for approval
    charlie.is_active = False
    charlie.last_login = charlie.date_joined
    charlie.save()
    pending = admin_client.get(USERS, {"status": "pending"}).content.decode()
    deactivated = admin_client.get(USERS, {"status": "deactivated"}).content.decode()
    assert ">alice<" in pending and ">charlie<" not in pending
    assert ">charlie<" in deactivated and ">alice<" not in deactivated


# --- Deactivating ----------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_users_open_socket_stops_working_at_once(
    live_server_daphne, client, admin_client, admin_user, alice
):
    with ChatSocket(live_server_daphne, session_cookie_for(client, alice)) as sock:
        sock.send(type="ping", id=1)
        assert sock.wait_type("pong")["id"] == 1

        response = run_action(admin_client, "deactivate", alice)
        assert response.status_code == 302

        sock.send(type="open", conversation=str(uuid.uuid4()), ref="after")  # any command but ping
        error = sock.wait_type("error")
        assert (error["code"], error["message"]) == ("unauthenticated", "Your account is disabled.")
        assert sock.wait_closed() == 4401
    entry = AuditEntry.objects.get(action="user.deactivated")
    assert (entry.actor_name, entry.target_repr) == ("admin", "alice")


@pytest.mark.django_db
def test_an_admin_cannot_deactivate_their_own_account(admin_client, admin_user, alice):
    response = run_action(admin_client, "deactivate", admin_user, alice)
    assert response.status_code == 302
    admin_user.refresh_from_db()
    alice.refresh_from_db()
    assert admin_user.is_active and alice.is_active
    assert not AuditEntry.objects.filter(action="user.deactivated").exists()


@pytest.mark.django_db
def test_deactivating_in_the_change_form_is_audited_once(admin_client, admin_user, alice):
    response = admin_client.post(change_url(alice), user_form(alice, is_active=None))
    assert response.status_code == 302, response.context["adminform"].form.errors
    alice.refresh_from_db()
    assert not alice.is_active
    assert list(AuditEntry.objects.values_list("action", "actor_name")) == [("user.deactivated", "admin")]


# --- Quotas -----------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_sets_a_users_quota_inline_and_audits_the_values(admin_client, alice, settings):
    settings.CHAT_USER_MONTHLY_BUDGET = 5.0
    page = admin_client.get(change_url(alice)).content.decode()
    assert "Empty: the site default ($5.00). 0: no limit." in page

    data = user_form(alice, **{"quota-0-monthly_budget": "12.50", "quota-0-turns_per_minute": "3"})
    response = admin_client.post(change_url(alice), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    quota = UserQuota.objects.get(user=alice)
    assert (quota.monthly_budget, quota.turns_per_minute, quota.daily_tokens) == (Decimal("12.50"), 3, None)
    entry = AuditEntry.objects.get(action="quota.changed")
    assert entry.target_repr == "alice"
    assert entry.details == {"changes": {"monthly_budget": [None, "12.50"], "turns_per_minute": [None, 3]}}
    assert not AuditEntry.objects.filter(action="user.changed").exists(), "nothing else changed"


@pytest.mark.django_db
def test_it_audits_other_changes_by_field_name(admin_client, alice):
    response = admin_client.post(change_url(alice), user_form(alice, email="alice@new.example"))
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="user.changed")
    assert entry.details == {"fields": ["Email address"]}
    assert entry.summary == "Changed Email address."


@pytest.mark.django_db
def test_a_password_reset_is_audited_without_the_password(admin_client, alice):
    new = "a brand new passphrase 81"
    response = admin_client.post(
        f"{change_url(alice).removesuffix('change/')}password/", {"password1": new, "password2": new}
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(new)
    entry = AuditEntry.objects.get(action="user.changed")
    assert "password" in entry.summary.lower()
    assert new not in str(entry.details) + entry.summary


# --- Usage at a glance ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_user_list_shows_this_months_cost_and_tokens(admin_client, alice, charlie):
    answer(alice, cost="1.25", prompt=1000, completion=234)
    answer(alice, cost="0.25", prompt=10, completion=5)
    gone = answer(alice, cost="0.50", prompt=100, completion=100)
    gone.conversation.delete()  # purged: still counts
    html = admin_client.get(USERS).content.decode()
    assert "$2.00" in html and "1,449" in html
    assert "$0.00" in html  # charlie


@pytest.mark.django_db
def test_the_user_list_costs_the_same_queries_for_many_users(admin_client, django_user_model):
    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(USERS).status_code == 200
        return len(queries)

    for i in range(3):
        answer(django_user_model.objects.create_user(f"user{i}"), cost="0.10", prompt=5, completion=5)
    few = count_queries()
    for i in range(3, 30):
        answer(django_user_model.objects.create_user(f"user{i}"), cost="0.10", prompt=5, completion=5)
    assert count_queries() == few


# --- Groups limit models ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_groups_limit_who_may_pick_a_model(client, alice, charlie, admin_user, sim_model, sim_provider):
    premium = ChatModel.objects.create(
        provider=sim_provider, model_id="gpt-4-turbo", canonical_id="gpt-4-turbo", display_name="GPT-4 Turbo"
    )
    group = Group.objects.create(name="premium")
    premium.allowed_groups.add(group)
    charlie.groups.add(group)

    with pytest.raises(errors.InvalidInput) as excinfo:
        turns.do_send_turn(alice, conversation_id=None, text="hi", model_pk=premium.pk)
    assert excinfo.value.code == "model_unavailable"
    assert (
        turns.do_send_turn(charlie, conversation_id=None, text="hi", model_pk=premium.pk).assistant.model
        == premium
    )
    assert turns.do_send_turn(admin_user, conversation_id=None, text="hi", model_pk=premium.pk)

    client.force_login(alice)
    assert [m["name"] for m in client.get("/api/models").json()["models"]] == ["GPT-4o"]
    client.force_login(charlie)
    assert [m["name"] for m in client.get("/api/models").json()["models"]] == ["GPT-4 Turbo", "GPT-4o"]


@pytest.mark.django_db
def test_a_model_in_two_of_a_users_groups_is_listed_once(alice, sim_model):
    for name in ("a", "b"):
        group = Group.objects.create(name=name)
        sim_model.allowed_groups.add(group)
        alice.groups.add(group)
    assert [m["name"] for m in model_menu.menu_for(alice)] == ["GPT-4o"]


# --- The audit log ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_audit_log_is_read_only(admin_client, alice):
    run_action(admin_client, "deactivate", alice)
    entry = AuditEntry.objects.get()
    assert admin_client.get("/admin/conversations/auditentry/").status_code == 200
    assert admin_client.get("/admin/conversations/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/conversations/auditentry/{entry.pk}/delete/").status_code == 403
    page = admin_client.get(f"/admin/conversations/auditentry/{entry.pk}/change/").content.decode()
    assert "user.deactivated" in page and 'type="submit" value="Save"' not in page


@pytest.mark.django_db
def test_charlie_cannot_reach_the_user_admin(client, charlie):
    client.force_login(charlie)
    response = client.get(USERS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(USERS, {"action": "approve", "_selected_action": [str(charlie.pk)]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_a_users_page_shows_their_usage_this_month(admin_client, alice):
    answer(alice, cost="2.50", prompt=1200, completion=300)
    html = admin_client.get(change_url(alice)).content.decode()
    assert "Usage this month" in html and "$2.50" in html and "1,500" in html


@pytest.mark.django_db
def test_saving_a_user_without_touching_the_quota_writes_no_audit_entry(admin_client, alice):
    quota = UserQuota.objects.create(user=alice, monthly_budget=Decimal("12.50"), turns_per_minute=3)
    # As the page posts an existing quota: its values as shown, and the row's id.
    data = user_form(
        alice,
        **{
            "quota-INITIAL_FORMS": "1",
            "quota-0-id": str(quota.pk),
            "quota-0-monthly_budget": "12.50",
            "quota-0-daily_budget": "",
            "quota-0-daily_tokens": "",
            "quota-0-monthly_tokens": "",
            "quota-0-turns_per_minute": "3",
        },
    )
    response = admin_client.post(change_url(alice), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(AuditEntry.objects.values_list("action", flat=True)) == []
    # And a user without a quota, saved as is (the empty inline), writes none either.
    UserQuota.objects.all().delete()
    assert admin_client.post(change_url(alice), user_form(alice)).status_code == 302
    assert list(AuditEntry.objects.values_list("action", "details")) == []


@pytest.mark.django_db
def test_the_admin_index_says_how_many_sign_ups_await_approval_with_a_link(admin_client, django_user_model):
    page = admin_client.get("/admin/").content.decode()
    assert "None awaiting approval" in page
    for name in ("dora", "erin"):
        django_user_model.objects.create_user(name, password="pw-x-12345", is_active=False)
    page = admin_client.get("/admin/").content.decode()
    assert '<a href="/admin/auth/user/?status=pending">2 awaiting approval</a>' in page


@pytest.mark.django_db
def test_the_quota_sits_near_the_top_of_a_users_page(admin_client, alice):
    page = admin_client.get(change_url(alice)).content.decode()
    assert page.count('id="quota-group"') == 1
    assert page.index('id="quota-group"') < page.index("Personal info") < page.index("Permissions")
