"""Login throttling (django-axes): the site's login form and the admin's lock a username, and a client
address, after CHAT_LOGIN_FAILURE_LIMIT failures; the lock-out is a 429 that says how long to wait; an admin
unlocks a user from the user's page; proxy headers count only when the operator configured them.

Issue 16, finding 1: 40 wrong passwords were each an ordinary wrong password, and the right one then worked.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from conversations.models import AuditEntry
from tests.conftest import PASSWORD
from tests.test_admin_users import change_url, user_form

pytestmark = pytest.mark.django_db

LOGIN = reverse("login")
ADMIN_LOGIN = reverse("admin:login")


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.CHAT_LOGIN_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = 5
    settings.CHAT_LOGIN_COOLOFF_MINUTES = 15
    settings.AXES_COOLOFF_TIME = 15 / 60


def fail(client: Client, username: str, times: int, url: str = LOGIN, **extra) -> list[int]:
    return [
        client.post(url, {"username": username, "password": f"guess {n}"}, **extra).status_code
        for n in range(times)
    ]


def test_the_site_login_locks_a_username_after_the_limit_even_for_the_right_password(client, alice):
    assert fail(client, "alice", 4) == [200] * 4  # ordinary wrong passwords
    statuses = fail(client, "alice", 36)  # the review's 40 guesses
    assert statuses[0] == 429 and set(statuses) == {429}
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many attempts, try again in 15 minutes." in response.content.decode()
    assert SESSION_KEY not in client.session


def test_the_lock_is_per_username_from_any_address(client, alice):
    fail(client, "alice", 5, REMOTE_ADDR="10.0.0.1")
    other = Client(REMOTE_ADDR="10.0.0.2")
    response = other.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429


def test_the_lock_is_per_address_across_usernames(client, alice, charlie):
    for name in ("u1", "u2", "u3", "u4", "u5"):
        fail(client, name, 1, REMOTE_ADDR="10.0.0.9")
    response = client.post(LOGIN, {"username": "charlie", "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 429
    # alice on another address is not affected
    response = Client(REMOTE_ADDR="10.0.0.10").post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302


def test_the_lock_ends_after_the_cool_off(client, alice, settings):
    from axes.models import AccessAttempt
    from django.utils import timezone

    fail(client, "alice", 5)
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timezone.timedelta(minutes=16))
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302


def test_a_success_before_the_limit_forgets_the_failures(client, alice):
    fail(client, "alice", 4)
    assert client.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    client.logout()
    assert fail(client, "alice", 4) == [200] * 4


def test_logging_in_to_ones_own_account_forgets_none_of_the_guesses_at_another(client, alice, charlie):
    """axes' reset on success deleted every failure from the address: with an account of their own, anyone
    could guess at alice's password without end, logging in to it between rounds of guesses."""
    assert fail(client, "alice", 4) == [200] * 4
    assert client.post(LOGIN, {"username": "charlie", "password": PASSWORD}).status_code == 302
    client.logout()
    assert fail(client, "alice", 1) == [429]  # the fifth guess at alice reaches the limit
    elsewhere = Client(REMOTE_ADDR="10.9.9.9")  # the username is locked from any address
    assert elsewhere.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 429
    # charlie's own failures are still forgotten by his success.
    other = Client(REMOTE_ADDR="10.9.9.8")
    assert fail(other, "charlie", 4) == [200] * 4
    assert other.post(LOGIN, {"username": "charlie", "password": PASSWORD}).status_code == 302
    assert fail(Client(REMOTE_ADDR="10.9.9.7"), "charlie", 4) == [200] * 4


def test_the_admin_login_is_throttled_too(client, admin_user):
    assert fail(client, "admin", 4, ADMIN_LOGIN) == [200] * 4
    assert fail(client, "admin", 1, ADMIN_LOGIN) == [429]  # the failure that reaches the limit
    response = client.post(ADMIN_LOGIN, {"username": "admin", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many attempts, try again in 15 minutes." in page
    assert "Chatsite administration" in page  # the admin's own login page
    assert SESSION_KEY not in client.session


def test_an_admin_unlocks_a_user_from_the_users_page(client, admin_client, alice):
    fail(client, "alice", 5, REMOTE_ADDR="10.1.1.1")
    page = admin_client.get(change_url(alice)).content.decode()
    assert "Locked out until" in page and "Unlock login" in page
    response = admin_client.post(change_url(alice), user_form(alice, is_active="on", unlock_login="on"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert "Not locked." in admin_client.get(change_url(alice)).content.decode()
    other = Client(REMOTE_ADDR="10.1.1.2")
    assert other.post(LOGIN, {"username": "alice", "password": PASSWORD}).status_code == 302
    assert AuditEntry.objects.filter(action="user.unlocked", target_id=str(alice.pk)).exists()


def test_a_forwarded_for_header_is_ignored_without_a_configured_proxy(client, alice, settings):
    # Each guess from a "new" address would never lock anything if the header were believed.
    for n in range(5):
        client.post(LOGIN, {"username": f"x{n}", "password": "guess"}, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    response = client.post(
        LOGIN, {"username": "alice", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="203.0.113.7"
    )
    assert response.status_code == 429


def test_behind_a_configured_tls_proxy_the_proxys_header_names_the_client(client, alice, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CHAT_CLIENT_IP_HEADER = "X-Forwarded-For"
    secure = {"HTTP_X_FORWARDED_PROTO": "https", "secure": True}
    for n in range(5):  # one client behind the proxy, whatever it claims to be in front
        client.post(
            LOGIN,
            {"username": f"x{n}", "password": "guess"},
            HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 198.51.100.20",
            **secure,
        )
    response = client.post(
        LOGIN, {"username": "alice", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.20", **secure
    )
    assert response.status_code == 429
    # Another client behind the same proxy (same REMOTE_ADDR) is not locked out.
    response = client.post(
        LOGIN, {"username": "alice", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="198.51.100.21", **secure
    )
    assert response.status_code == 302
