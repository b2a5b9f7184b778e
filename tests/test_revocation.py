"""Deactivate, delete, change (or disable) the password or log out = stop now (issue 16, finding 3).

Within 2 s the user's running answer is cancelled (its upstream request closed, the partial text saved as
cancelled) and their sockets are closed with 4401, without waiting for the next command. Each change is
made the way people make it: through the live server's admin or account pages. With Redis, the change made
on one daphne process stops an answer and a socket held by another.
"""

from __future__ import annotations

import time

import httpx
import pytest
from django.test import Client

from conversations.models import Message
from conversations.testing.upstream import Reply
from tests.conftest import PASSWORD, session_cookie_for
from tests.live import DaphneServer, wait_until
from tests.test_admin_users import user_form
from tests.test_scaleout import needs_redis
from tests.wsclient import ChatSocket

pytestmark = pytest.mark.django_db(transaction=True)

ANSWER = " ".join(f"word{i}" for i in range(400))
NEW_PASSWORD = "tangerine otter lighthouse 42"


class LiveSession:
    """A browser's session on the live server: its cookie, and form posts with the CSRF token."""

    def __init__(self, server, cookie: str) -> None:
        self.http = httpx.Client(base_url=server.url, cookies={"sessionid": cookie}, timeout=10)

    def post(self, path: str, data: dict, form_page: str | None = None) -> httpx.Response:
        if "csrftoken" not in self.http.cookies:
            self.http.get(form_page or path)  # the page with the form sets the CSRF cookie
        token = self.http.cookies["csrftoken"]
        return self.http.post(
            path, data={**data, "csrfmiddlewaretoken": token}, headers={"X-CSRFToken": token}
        )

    def close(self) -> None:
        self.http.close()


def deactivate_with_the_action(server, admin_cookie, alice) -> httpx.Response:
    data = {"action": "deactivate", "_selected_action": [str(alice.pk)], "index": "0"}
    return LiveSession(server, admin_cookie).post("/admin/auth/user/", data)


def untick_active_in_the_change_form(server, admin_cookie, alice) -> httpx.Response:
    data = {key: value for key, value in user_form(alice).items() if value is not None}
    data.pop("is_active", None)
    return LiveSession(server, admin_cookie).post(f"/admin/auth/user/{alice.pk}/change/", data)


def delete_the_user(server, admin_cookie, alice) -> httpx.Response:
    return LiveSession(server, admin_cookie).post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})


def change_the_password_in_another_session(server, admin_cookie, alice) -> httpx.Response:
    other = LiveSession(server, session_cookie_for(Client(), alice))
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return other.post("/accounts/password/", data)


def reset_the_password_in_the_admin(server, admin_cookie, alice) -> httpx.Response:
    data = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}
    return LiveSession(server, admin_cookie).post(f"/admin/auth/user/{alice.pk}/password/", data)


def disable_password_login_in_the_admin(server, admin_cookie, alice) -> httpx.Response:
    """The admin's "Password-based authentication: Disabled" (set_unusable_password)."""
    data = {"usable_password": "false", "unset-password": "Disable password-based authentication"}
    return LiveSession(server, admin_cookie).post(f"/admin/auth/user/{alice.pk}/password/", data)


def log_out(server, admin_cookie, alice, cookie) -> httpx.Response:
    return LiveSession(server, cookie).post("/accounts/logout/", {}, form_page="/")


def sign_out_everywhere_else(server, admin_cookie, alice) -> httpx.Response:
    """The user, on another device, presses "Sign out everywhere else" on the settings page."""
    other = LiveSession(server, session_cookie_for(Client(), alice))
    return other.post("/settings/", {"action": "sign_out_others"})


CHANGES = [
    deactivate_with_the_action,
    untick_active_in_the_change_form,
    delete_the_user,
    change_the_password_in_another_session,
    reset_the_password_in_the_admin,
    disable_password_login_in_the_admin,
    log_out,
    sign_out_everywhere_else,
]


def _own_daphne(workdir):
    workdir.mkdir()
    daphne = DaphneServer(workdir)
    daphne.start()
    return daphne


@pytest.fixture
def server(django_db_setup, tmp_path):
    """A daphne of this test's own: the admin pages cache content type ids, which the database flush between
    transactional tests renumbers (a shared server would then fail to log a deletion)."""
    daphne = _own_daphne(tmp_path / "one")
    yield daphne
    daphne.stop()


@pytest.fixture
def other_server(django_db_setup, tmp_path):
    """A second process on the same database (and, in the Redis lane, the same channel layer)."""
    daphne = _own_daphne(tmp_path / "two")
    yield daphne
    daphne.stop()


def start_answer(sock: ChatSocket, upstream) -> str:
    upstream.enqueue(Reply(text=ANSWER, token_delay=0.02))
    sock.send(type="send", text="Count slowly.")
    answer_id = sock.wait_type("ack")["assistant_message"]["id"]
    sock.wait_for(lambda f: f["type"] == "delta" and f["message"] == answer_id)
    return answer_id


def assert_stopped_within_2s(sock: ChatSocket, upstream, answer_id: str, changed_at: float, deleted: bool):
    disconnect = upstream.wait_for_disconnect(timeout=2)
    assert disconnect.at - changed_at < 2, f"upstream open {disconnect.at - changed_at:.2f}s after the change"
    assert disconnect.tokens_sent < len(ANSWER.split())
    assert sock.wait_closed(timeout=2) == 4401
    assert time.monotonic() - changed_at < 2.5
    errors = [f for f in sock.frames if f["type"] == "error"]
    assert errors and errors[-1]["code"] == "unauthenticated"
    if not deleted:
        message = wait_until(
            lambda: Message.objects.filter(public_id=answer_id, status="cancelled").first(), timeout=2
        )
        assert message.finish_reason == "stopped"
        assert message.content and ANSWER.startswith(message.content) and message.content != ANSWER


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__)
def test_ending_access_stops_the_running_answer_and_closes_the_socket(
    change, server, alice, admin_user, upstream, sim_model
):
    cookie = session_cookie_for(Client(), alice)
    admin_cookie = session_cookie_for(Client(), admin_user)
    with ChatSocket(server, cookie) as sock:
        answer_id = start_answer(sock, upstream)
        changed_at = time.monotonic()
        args = (server, admin_cookie, alice) + ((cookie,) if change is log_out else ())
        response = change(*args)
        assert response.status_code == 302, response.text[:2000]
        assert_stopped_within_2s(sock, upstream, answer_id, changed_at, deleted=change is delete_the_user)


def test_a_password_change_leaves_the_changing_sessions_new_socket_working(
    live_server_daphne, alice, upstream, sim_model
):
    """The session that changed the password keeps going (with its new cookie); only the others end."""
    other = LiveSession(live_server_daphne, session_cookie_for(Client(), alice))
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    assert other.post("/accounts/password/", data).status_code == 302
    new_cookie = next(c.value for c in other.http.cookies.jar if c.name == "sessionid" and c.domain)
    with ChatSocket(live_server_daphne, new_cookie) as sock:
        upstream.enqueue(Reply(text="Still here."))
        sock.send(type="send", text="Hello?")
        answer_id = sock.wait_type("ack")["assistant_message"]["id"]
        assert sock.wait_end(answer_id)["status"] == "complete"


def test_another_users_answer_keeps_running(
    live_server_daphne, alice, charlie, admin_user, upstream, sim_model
):
    admin_cookie = session_cookie_for(Client(), admin_user)
    with ChatSocket(live_server_daphne, session_cookie_for(Client(), charlie)) as sock:
        upstream.enqueue(Reply(text="Charlie's answer, unhurried.", token_delay=0.05))
        sock.send(type="send", text="Hi")
        answer_id = sock.wait_type("ack")["assistant_message"]["id"]
        assert deactivate_with_the_action(live_server_daphne, admin_cookie, alice).status_code == 302
        assert sock.wait_end(answer_id)["status"] == "complete"


@needs_redis
def test_deactivating_on_one_process_stops_an_answer_and_a_socket_on_another(
    server, other_server, alice, admin_user, upstream, sim_model
):
    a, b = server, other_server
    cookie = session_cookie_for(Client(), alice)
    with ChatSocket(a, cookie) as sock:
        answer_id = start_answer(sock, upstream)
        changed_at = time.monotonic()
        response = deactivate_with_the_action(b, session_cookie_for(Client(), admin_user), alice)
        assert response.status_code == 302
        assert_stopped_within_2s(sock, upstream, answer_id, changed_at, deleted=False)


@needs_redis
def test_deactivating_from_a_management_process_reaches_the_server(alice, upstream, sim_model, server):
    """The shell or a management command (here: this test process, on the same Redis) is covered too."""
    with ChatSocket(server, session_cookie_for(Client(), alice)) as sock:
        answer_id = start_answer(sock, upstream)
        changed_at = time.monotonic()
        alice.is_active = False
        alice.save()
        assert_stopped_within_2s(sock, upstream, answer_id, changed_at, deleted=False)


def test_signing_out_everywhere_else_keeps_this_session_and_other_users(live_server_daphne, alice, charlie):
    mine, elsewhere = (session_cookie_for(Client(), alice) for _ in range(2))
    someone_else = session_cookie_for(Client(), charlie)
    here = LiveSession(live_server_daphne, mine)
    response = here.post("/settings/", {"action": "sign_out_others"})
    assert response.status_code == 302
    page = here.http.get("/settings/")
    assert page.status_code == 200 and "You were signed out everywhere else." in page.text
    assert (
        httpx.get(f"{live_server_daphne.url}/settings/", cookies={"sessionid": elsewhere}).status_code == 302
    )
    assert (
        httpx.get(f"{live_server_daphne.url}/settings/", cookies={"sessionid": someone_else}).status_code
        == 200
    )
    again = here.post("/settings/", {"action": "sign_out_others"})
    assert again.status_code == 302
    assert "You were not signed in anywhere else." in here.http.get("/settings/").text
