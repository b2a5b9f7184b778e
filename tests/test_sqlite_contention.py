"""SQLite with a long writer holding the lock (issue 16, finding 9): other people's requests used to become
500s ("database is locked" after the busy timeout). Now they get a clear, retryable answer, 503 JSON
`database_busy` with Retry-After, or a `database_busy` error frame, and nothing half-saved; once the writer
is done the same request works. Writes nobody waits on (an answer's final save, the purges) wait longer."""

from __future__ import annotations

import datetime as dt
import io
import sqlite3
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, transaction
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.services import db_busy
from conversations.testing.upstream import Reply
from tests.conftest import PASSWORD, session_cookie_for
from tests.live import DaphneServer
from tests.wsclient import ChatSocket

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "sqlite", reason="SQLite only: PostgreSQL has no database-wide write lock"
    ),
]


@pytest.fixture
def impatient_server(django_db_setup, tmp_path):
    """A daphne that waits only 1 s for the lock, so the tests need not hold it for 20."""
    server = DaphneServer(tmp_path, {"SQLITE_BUSY_TIMEOUT": "1"})
    server.start()
    yield server
    server.stop()


@contextmanager
def long_writer(seconds: float):
    """Another connection holding SQLite's write lock (BEGIN IMMEDIATE) for `seconds`, like a bulk delete."""
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, lambda: holder.execute("ROLLBACK"))
    release.start()
    try:
        yield
    finally:
        release.join()
        holder.close()


def test_a_write_that_finds_the_database_locked_is_a_503_json_not_a_500(impatient_server, alice):
    conversation = Conversation.objects.create(owner=alice, title="Before")
    http = httpx.Client(
        base_url=impatient_server.url, cookies={"sessionid": session_cookie_for(Client(), alice)}, timeout=10
    )
    http.get("/")  # the CSRF cookie
    token = http.cookies["csrftoken"]
    url = f"/api/conversations/{conversation.public_id}"
    with long_writer(3.0):
        response = http.patch(url, json={"title": "During"}, headers={"X-CSRFToken": token})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_busy"
        assert "try again" in response.json()["error"]["message"]
        assert response.headers["Retry-After"] == "2"
        page = http.post("/accounts/logout/", headers={"X-CSRFToken": token})  # a page, not the API
        assert page.status_code == 503 and "busy" in page.text
    conversation.refresh_from_db()
    assert conversation.title == "Before"
    response = http.patch(url, json={"title": "After"}, headers={"X-CSRFToken": token})
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.title == "After"


def test_a_turn_that_finds_the_database_locked_gets_a_retryable_error_frame(
    impatient_server, alice, upstream, sim_model
):
    with ChatSocket(impatient_server, session_cookie_for(Client(), alice)) as sock:
        with long_writer(3.0):
            sock.send(type="send", text="Hello while busy", ref="busy")
            frame = sock.wait_type("error")
            assert (frame["code"], frame["ref"]) == ("database_busy", "busy")
        assert not Message.objects.exists()
        upstream.enqueue(Reply(text="Hello again."))
        sock.send(type="send", text="Hello while busy", ref="retry")
        ack = sock.wait_type("ack")
        assert sock.wait_end(ack["assistant_message"]["id"])["content"] == "Hello again."


def test_a_write_nobody_waits_on_tries_again_when_the_database_is_locked():
    calls = []

    @db_busy.retry_when_locked(attempts=3)
    def final_save():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OperationalError("database is locked")
        return "saved"

    assert final_save() == "saved" and len(calls) == 3

    @db_busy.retry_when_locked(attempts=3)
    def other_failure():
        raise OperationalError("no such table: nope")

    with pytest.raises(OperationalError, match="no such table"):
        other_failure()


def test_writers_of_one_process_wait_in_line_not_in_sqlite_sleeps(alice):
    """chatsite/sqlite: a write that finds another thread's transaction open goes the moment it commits.
    Without the line, SQLite's busy handler sleeps 1, 2, 5 ... 50 ms between tries: a writer that started
    200 ms before the commit would try at 178 ms and next at 228 ms, nearly 30 ms after the lock came free."""
    User = type(alice)
    holding = threading.Event()
    times: dict[str, float] = {}

    def first():
        with transaction.atomic():
            User.objects.filter(pk=alice.pk).update(first_name="First")
            holding.set()
            time.sleep(0.2)
            times["released"] = time.monotonic()
        connection.close()

    def second():
        holding.wait(5)
        with transaction.atomic():
            User.objects.filter(pk=alice.pk).update(last_name="Second")
        times["second"] = time.monotonic()
        connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("First", "Second")
    assert times["second"] - times["released"] < 0.015


def test_a_write_queued_past_the_busy_timeout_is_database_locked(alice, settings):
    """Waiting in line counts as SQLite's busy wait: past the timeout the write fails as SQLite would fail it
    (services/db_busy.py makes that a clear, retryable error), and the line goes on working afterwards."""
    User = type(alice)
    holding, done = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            User.objects.filter(pk=alice.pk).update(first_name="Held")
            holding.set()
            done.wait(10)
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    options = connection.settings_dict["OPTIONS"]
    timeout, options["timeout"] = options.get("timeout"), 0.3
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError) as failed, transaction.atomic():
            User.objects.filter(pk=alice.pk).update(last_name="Queued")
        assert db_busy.is_database_locked(failed.value)
        assert 0.25 < time.monotonic() - started < 2
    finally:
        options["timeout"] = timeout
        done.set()
        holder.join(10)
    User.objects.filter(pk=alice.pk).update(last_name="Later")
    alice.refresh_from_db()
    assert (alice.first_name, alice.last_name) == ("Held", "Later")


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "PNG")
    return out.getvalue()


def _log_in(base_url, username: str) -> httpx.Response:
    anonymous = httpx.Client(base_url=base_url, timeout=10)
    anonymous.get("/accounts/login/")
    token = anonymous.cookies["csrftoken"]
    data = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    return anonymous.post("/accounts/login/", data=data)


# Every kind of write a person waits on: the API, pages with forms, logging in, the admin's forms and actions.
WRITES = {
    "rename": lambda h, c: h.patch(f"/api/conversations/{c.public_id}", json={"title": "x"}),
    "delete": lambda h, c: h.delete(f"/api/conversations/{c.public_id}"),
    "share": lambda h, c: h.post(f"/api/conversations/{c.public_id}/share"),
    "upload": lambda h, c: h.post("/api/uploads", files={"file": ("a.png", _png(), "image/png")}),
    "import": lambda h, c: h.post("/api/imports", files={"file": ("c.json", b"[]", "application/json")}),
    "settings": lambda h, c: h.post(
        "/settings/",
        data={"action": "instructions", "about_user": "x", "response_style": "", "enabled": "on"},
    ),
    "password": lambda h, c: h.post(
        "/accounts/password/",
        data={
            "old_password": PASSWORD,
            "new_password1": "a new pass 1234",
            "new_password2": "a new pass 1234",
        },
    ),
    "login": lambda h, c: _log_in(h.base_url, "charlie"),
    "admin deactivate action": lambda h, c: h.post(
        "/admin/auth/user/",
        data={"action": "deactivate", "_selected_action": [str(c.owner_id)], "index": "0"},
    ),
    "admin bulk delete": lambda h, c: h.post(
        "/admin/conversations/conversation/",
        data={"action": "delete_selected", "_selected_action": [str(c.pk)], "post": "yes"},
    ),
}


@pytest.mark.parametrize("write", WRITES, ids=str)
def test_no_write_a_person_waits_on_is_a_500_while_the_database_is_locked(
    write, impatient_server, alice, admin_user, charlie
):
    conversation = Conversation.objects.create(owner=alice, title="Before")
    user = admin_user if write.startswith("admin") else alice
    http = httpx.Client(
        base_url=impatient_server.url, cookies={"sessionid": session_cookie_for(Client(), user)}, timeout=10
    )
    http.get("/")  # the CSRF cookie
    http.headers["X-CSRFToken"] = http.cookies["csrftoken"]
    with long_writer(2.0):
        response = WRITES[write](http, conversation)
    assert response.status_code == 503, response.text[:500]
    assert response.headers["Retry-After"] == "2"
    assert "busy" in response.text


def test_a_purge_waits_for_a_long_writer_instead_of_failing(alice):
    """`manage.py purge_deleted` (a bulk delete nobody waits on) waits in line past the busy timeout."""
    old = Conversation.objects.create(
        owner=alice, title="Old", deleted_at=timezone.now() - dt.timedelta(days=400)
    )
    options = connection.settings_dict["OPTIONS"]
    timeout, options["timeout"] = options.get("timeout"), 0.5
    connection.close()  # the next query connects with the short busy timeout
    try:
        with long_writer(2.0):
            call_command("purge_deleted", stdout=io.StringIO())
    finally:
        options["timeout"] = timeout
        connection.close()
    assert not Conversation.objects.filter(pk=old.pk).exists()
