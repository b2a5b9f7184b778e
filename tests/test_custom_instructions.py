"""Custom instructions: saved on the settings page, sent with every chat as the first system message (before
the chat's own system prompt) while on, and carried by the export of all chats into an import."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.base import ContentFile

from conversations.models import Conversation, CustomInstructions
from conversations.services.imports import jobs
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.wsclient import ChatSocket

ABOUT = "I'm a nurse in Lyon; I read English and French."
STYLE = "Answer in short bullet points."


@pytest.fixture(autouse=True)
def _imports_inline(monkeypatch):
    monkeypatch.setattr(jobs, "RUN_INLINE", True)


def save_instructions(client, user, about=ABOUT, style=STYLE, enabled=True):
    client.force_login(user)
    data = {"action": "instructions", "about_user": about, "response_style": style}
    if enabled:
        data["enabled"] = "on"
    return client.post("/settings/", data, follow=True)


def prompt_of_a_turn(live_server, client, user, upstream, **send) -> list[dict]:
    upstream.enqueue(Reply(text="Noted."), Reply(text="A title"))
    sock = ChatSocket(live_server, session_cookie_for(client, user))
    try:
        sock.send(type="send", text="Hello", ref="t1", **send)
        ack = sock.wait_type("ack")
        sock.wait_end(ack["assistant_message"]["id"])
    finally:
        sock.close()
    asked = [r for r in upstream.chat_requests if (r.json or {}).get("max_tokens") != 24]
    return asked[-1].json["messages"]


@pytest.mark.django_db
def test_the_settings_page_saves_the_instructions_and_shows_them_back(client, alice):
    page = save_instructions(client, alice)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Your custom instructions were saved" in text
    assert "What should the assistant know about you?" in text and "How should it respond?" in text
    assert ABOUT.replace("'", "&#x27;") in text and STYLE in text
    row = CustomInstructions.objects.get(user=alice)
    assert (row.about_user, row.response_style, row.enabled) == (ABOUT, STYLE, True)
    save_instructions(client, alice, enabled=False)
    assert not CustomInstructions.objects.get(user=alice).enabled


@pytest.mark.django_db
def test_instructions_that_are_too_long_are_refused_and_nothing_is_lost(client, alice):
    save_instructions(client, alice)
    page = save_instructions(client, alice, about="x" * 1501)
    assert "at most 1500 fit" in page.content.decode()
    assert CustomInstructions.objects.get(user=alice).about_user == ABOUT


@pytest.mark.django_db
def test_charlie_never_sees_alices_instructions(client, alice, charlie):
    save_instructions(client, alice)
    client.force_login(charlie)
    assert ABOUT.replace("'", "&#x27;") not in client.get("/settings/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_they_are_the_first_system_message_then_the_chats_own_prompt(
    live_server_daphne, client, alice, sim_model, upstream
):
    save_instructions(client, alice)
    messages = prompt_of_a_turn(
        live_server_daphne, client, alice, upstream, system_prompt="You are a pirate."
    )
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert ABOUT in messages[0]["content"] and STYLE in messages[0]["content"]
    assert messages[1]["content"] == "You are a pirate."


@pytest.mark.django_db(transaction=True)
def test_instructions_that_are_off_are_not_sent(live_server_daphne, client, alice, sim_model, upstream):
    save_instructions(client, alice, enabled=False)
    messages = prompt_of_a_turn(live_server_daphne, client, alice, upstream)
    assert [m["role"] for m in messages] == ["user"]


@pytest.mark.django_db
def test_they_travel_with_the_export_of_all_chats_into_an_import(client, alice, charlie, django_user_model):
    Conversation.objects.create(owner=alice, title="Hello")
    save_instructions(client, alice)
    body = b"".join(client.get("/api/export").streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        data = json.loads(archive.read("conversations.json"))
    assert data["custom_instructions"] == {"about_user": ABOUT, "response_style": STYLE, "enabled": True}

    client.force_login(charlie)
    job_id = client.post("/api/imports", {"file": ContentFile(body, name="export.zip")}).json()["id"]
    job = client.get(f"/api/imports/{job_id}").json()
    assert job["status"] == "done" and job["report"]["custom_instructions"] is True
    row = CustomInstructions.objects.get(user=charlie)
    assert (row.about_user, row.response_style, row.enabled) == (ABOUT, STYLE, True)

    # Someone who wrote their own keeps them: an import never overwrites.
    dora = django_user_model.objects.create_user("dora", password="pw-dora-12345")
    save_instructions(client, dora, about="I'm Dora.", style="")
    job_id = client.post("/api/imports", {"file": ContentFile(body, name="export.zip")}).json()["id"]
    assert client.get(f"/api/imports/{job_id}").json()["report"]["custom_instructions"] is False
    assert CustomInstructions.objects.get(user=dora).about_user == "I'm Dora."


@pytest.mark.django_db
def test_malformed_instructions_in_a_file_are_left_out_and_said_so(client, alice):
    """Like a conversation that can't be read: the rest imports, the report names what was left out."""
    client.force_login(alice)
    payload = {
        "format": "chatsite.conversations",
        "version": 1,
        "custom_instructions": {"about_user": 7},
        "conversations": [{"title": "ok", "messages": [{"id": "a", "role": "user", "content": "hi"}]}],
    }
    job_id = client.post("/api/imports", {"file": ContentFile(json.dumps(payload).encode(), name="x.json")})
    job = client.get(f"/api/imports/{job_id.json()['id']}").json()
    assert job["status"] == "done", job
    assert any("custom instructions" in s["reason"] for s in job["report"]["skipped"])
    assert job["report"]["custom_instructions"] is False
    assert Conversation.objects.filter(owner=alice).count() == 1
    assert not CustomInstructions.objects.filter(user=alice).exists()
