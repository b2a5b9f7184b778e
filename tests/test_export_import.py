"""Export (one conversation as Markdown or JSON, everything as a streamed zip) and import (our own format, an
exact round trip with branches and images; ChatGPT's conversations.json), all-or-nothing per file."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image

from conversations.models import Attachment, Conversation, ImportJob, Message
from conversations.services.imports import jobs
from tests.conftest import session_cookie_for

pytestmark = pytest.mark.django_db

CHATGPT_SAMPLE = Path(__file__).parent / "data" / "chatgpt_conversations.json"


@pytest.fixture(autouse=True)
def _imports_inline(monkeypatch):
    monkeypatch.setattr(jobs, "RUN_INLINE", True)


def png(color: str = "red", size=(8, 6)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def branching_chat(owner, title="Trip planning") -> Conversation:
    """q1 -> (a1 | a1b); a1 -> q2 (with an image) -> a2; current leaf a1b (not the newest path)."""
    conversation = Conversation.objects.create(
        owner=owner, title=title, system_prompt="Be brief.", params={"temperature": 0.3}, pinned=True
    )
    q1 = Message.objects.create(conversation=conversation, role="user", content="Where should I go?")
    a1 = Message.objects.create(conversation=conversation, parent=q1, role="assistant", content="Lisbon.")
    q2 = Message.objects.create(conversation=conversation, parent=a1, role="user", content="Look at this")
    Message.objects.create(conversation=conversation, parent=q2, role="assistant", content="A nice tram.")
    a1b = Message.objects.create(
        conversation=conversation, parent=q1, role="assistant", content="Porto.", model_name="gpt-4o"
    )
    data = png("blue" if title == "Second" else "red")
    attachment = Attachment(owner=owner, message=q2, mime="image/png", width=8, height=6, bytes=len(data))
    attachment.sha256 = hashlib.sha256(data).hexdigest()
    attachment.file.save("image.png", ContentFile(data), save=False)
    attachment.save()
    conversation.current_leaf = a1b
    conversation.save()
    return conversation


def tree(conversation: Conversation) -> list[tuple]:
    """Everything that must survive a round trip, without ids."""
    messages = list(conversation.messages.prefetch_related("attachments").order_by("created_at", "id"))
    index = {m.pk: i for i, m in enumerate(messages)}
    leaf = index.get(conversation.current_leaf_id)
    rows = [
        (
            index.get(m.parent_id),
            m.role,
            m.content,
            m.status,
            m.model_name,
            m.created_at.isoformat(timespec="seconds"),
            [(a.mime, a.width, a.height, a.file.read()) for a in m.attachments.all()],
        )
        for m in messages
    ]
    head = (
        conversation.title,
        conversation.system_prompt,
        conversation.params,
        conversation.pinned,
        conversation.created_at.isoformat(timespec="seconds"),
    )
    return [head, leaf, *rows]


def test_a_non_ascii_title_downloads_with_filename_star_and_an_ascii_fallback(client, alice):
    # Issue 16, finding 8: RFC 6266 `filename*`, not an RFC 2047 encoded word browsers show as is.
    conversation = Conversation.objects.create(owner=alice, title="Résumé 日本 trip")
    client.force_login(alice)
    response = client.get(f"/api/conversations/{conversation.public_id}/export", {"format": "md"})
    assert response.status_code == 200
    header = response["Content-Disposition"]
    assert header == (
        'attachment; filename="resume--trip.md"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9-%E6%97%A5%E6%9C%AC-trip.md"
    )
    assert "=?utf-8?" not in header.lower()


def test_the_ascii_fallback_is_never_empty_or_hidden():
    from conversations.views.downloads import attachment

    assert (
        attachment("日本.md")
        == "attachment; filename=\"download.md\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.md"
    )
    assert attachment('a"b;c.json').startswith('attachment; filename="a_b_c.json"; filename*=')
    assert attachment("plain.zip") == 'attachment; filename="plain.zip"'


def test_it_exports_one_conversation_as_json_with_every_branch(client, alice):
    conversation = branching_chat(alice)
    client.force_login(alice)
    response = client.get(f"/api/conversations/{conversation.public_id}/export", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="trip-planning.json"'
    data = json.loads(response.content)
    assert data["format"] == "chatsite.conversations" and data["version"] == 1
    [exported] = data["conversations"]
    assert len(exported["messages"]) == 5
    assert exported["current_leaf"] == exported["messages"][-1]["id"]
    assert exported["settings"]["system_prompt"] == "Be brief."
    assert [a["file"].startswith("images/") for m in exported["messages"] for a in m["attachments"]] == [True]


def test_it_exports_the_active_branch_as_markdown(client, alice):
    conversation = branching_chat(alice)
    client.force_login(alice)
    response = client.get(f"/api/conversations/{conversation.public_id}/export", {"format": "md"})
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith("# Trip planning")
    assert "Porto." in text and "Lisbon." not in text


def test_charlie_cannot_export_or_share_alices_conversation(client, alice, charlie):
    conversation = branching_chat(alice)
    client.force_login(charlie)
    assert client.get(f"/api/conversations/{conversation.public_id}/export").status_code == 404
    assert client.post(f"/api/conversations/{conversation.public_id}/share").status_code == 404


def test_export_all_streams_a_zip_and_imports_into_a_fresh_user_identically(client, alice, charlie):
    originals = [branching_chat(alice, "First"), branching_chat(alice, "Second")]
    Conversation.objects.create(owner=alice, title="Deleted", deleted_at=timezone.now())
    client.force_login(alice)
    response = client.get("/api/export")
    assert response.streaming and response["Content-Type"] == "application/zip"
    body = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
    assert "conversations.json" in names
    assert sum(n.startswith("markdown/") for n in names) == 2
    assert sum(n.startswith("images/") for n in names) == 2

    client.force_login(charlie)
    upload = ContentFile(body, name="export.zip")
    response = client.post("/api/imports", {"file": upload})
    assert response.status_code == 202, response.content
    job = client.get(f"/api/imports/{response.json()['id']}").json()
    assert job["status"] == "done", job
    assert job["report"]["conversations"] == 2 and job["report"]["images"] == 2
    imported = list(Conversation.objects.filter(owner=charlie).order_by("created_at", "id"))
    assert [tree(c) for c in imported] == [tree(c) for c in originals]
    assert Attachment.objects.filter(owner=charlie).count() == 2


def test_a_malformed_file_imports_nothing_and_says_why(client, alice):
    client.force_login(alice)
    for payload, why in (
        (b"{not json", "not valid JSON"),
        (b"PK\x03\x04garbage", "not a readable zip"),
        (b'{"a": 1}', "We read a Chatsite export, ChatGPT, Claude, Open WebUI, LibreChat or Chatbot UI"),
        (b"hello", "not a JSON file or a zip"),
    ):
        response = client.post("/api/imports", {"file": ContentFile(payload, name="x.json")})
        job = client.get(f"/api/imports/{response.json()['id']}").json()
        assert job["status"] == "failed" and "Nothing was imported" in job["error"], job
        assert why in job["error"]
    assert not Conversation.objects.filter(owner=alice).exists()


def test_imports_are_private_to_their_owner(client, alice, charlie):
    client.force_login(alice)
    job = client.post("/api/imports", {"file": ContentFile(b"[]", name="x.json")}).json()
    client.force_login(charlie)
    assert client.get(f"/api/imports/{job['id']}").status_code == 404
    assert ImportJob.objects.count() == 1


def chatgpt_import(client, user) -> dict:
    client.force_login(user)
    upload = ContentFile(CHATGPT_SAMPLE.read_bytes(), name="conversations.json")
    job_id = client.post("/api/imports", {"file": upload}).json()["id"]
    return client.get(f"/api/imports/{job_id}").json()


def test_it_imports_chatgpts_export_with_branches_roles_times_and_the_current_branch(client, alice):
    job = chatgpt_import(client, alice)
    assert job["status"] == "done", job
    reasons = {s["reason"]: s["count"] for s in job["report"]["skipped"]}
    # Invisible scaffolding (empty nodes, the hidden system message) is not worth a line in the report.
    assert reasons == {
        "results from tools (searches, code output, plugins)": 1,
        "images not in the file (a placeholder marks each)": 1,
    }

    trip = Conversation.objects.get(owner=alice, title="Packing for Iceland")
    assert trip.created_at.timestamp() == 1710000000.0
    messages = {m.content[:12]: m for m in trip.messages.all()}
    question = messages["What should "]
    assert question.parent is None
    assert sorted(c.content[:6] for c in question.children.all()) == ["Layers", "Pack w"]
    image_turn = messages["[image not i"]
    assert image_turn.content == "[image not included in export]\n\nIs this jacket warm enough?"
    assert image_turn.parent.content.startswith("Layers")
    answer = messages["That down ja"]
    assert answer.parent_id == image_turn.pk  # re-parented over the tool node and the empty one
    assert trip.current_leaf_id == answer.pk
    assert answer.model_name == "gpt-4o" and answer.created_at.timestamp() == 1710000050.0

    haiku = Conversation.objects.get(owner=alice, title="Haiku about autumn")
    roots = list(haiku.messages.filter(parent=None).order_by("created_at"))
    assert [r.content for r in roots] == ["Write a haiku about autumn.", "Write a haiku about autumn rain."]
    assert haiku.current_leaf.content.startswith("Crimson leaves")  # the current branch, not the newest


@pytest.mark.django_db(transaction=True)
async def test_imported_chatgpt_branches_can_be_switched_over_the_websocket(client, alice):
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from chatsite.asgi import application

    job = await sync_to_async(chatgpt_import)(client, alice)
    assert job["status"] == "done"
    cookie = await sync_to_async(session_cookie_for)(client, alice)
    edited = await Message.objects.aget(content="Write a haiku about autumn rain.")
    communicator = WebsocketCommunicator(
        application,
        "/ws/chat/",
        headers=[(b"origin", settings.CHAT_SITE_URL.encode()), (b"cookie", f"sessionid={cookie}".encode())],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    # Generous timeouts (the communicator's default is 1 s): a busy CI machine is not a failure here.
    assert (await communicator.receive_json_from(timeout=5))["type"] == "hello"
    await communicator.send_json_to({"type": "select", "message": str(edited.public_id)})
    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "conversation"
    assert [m["content"][:10] for m in frame["messages"]] == ["Write a ha", "Cold rain "]
    assert len(frame["messages"][0]["siblings"]) == 2
    await communicator.disconnect()
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the in-memory layer: every group left again (but the process's own)
        from conversations.engine.channel_groups import revocations_group

        listener = revocations_group()  # the process's revocation listener stays (engine/revocation.py)
        assert not any(
            members
            for name, members in layer.groups.items()
            if name != listener and not name.endswith(f"__group__{listener}")
        )


def test_images_keep_their_order_through_an_export_and_an_import(client, alice, charlie):
    conversation = Conversation.objects.create(owner=alice, title="Order")
    question = Message.objects.create(conversation=conversation, role="user", content="Which first?")
    conversation.current_leaf = question
    conversation.save()
    for position, color in reversed(list(enumerate(["red", "green", "blue"]))):  # rows made out of order
        data = png(color)
        attachment = Attachment(
            owner=alice,
            message=question,
            position=position,
            mime="image/png",
            width=8,
            height=6,
            bytes=len(data),
        )
        attachment.sha256 = hashlib.sha256(data).hexdigest()
        attachment.file.save("image.png", ContentFile(data), save=False)
        attachment.save()
    expected = [png(c) for c in ["red", "green", "blue"]]
    client.force_login(alice)
    body = b"".join(client.get("/api/export").streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        listed = json.loads(archive.read("conversations.json"))["conversations"][0]["messages"][0][
            "attachments"
        ]
        assert [archive.read(a["file"]) for a in listed] == expected
        markdown = next(archive.read(n).decode() for n in archive.namelist() if n.startswith("markdown/"))
    assert [markdown.index(a["file"]) for a in listed] == sorted(markdown.index(a["file"]) for a in listed)
    client.force_login(charlie)
    client.post("/api/imports", {"file": ContentFile(body, name="export.zip")})
    imported = Message.objects.get(conversation__owner=charlie, role="user")
    assert [a.file.read() for a in imported.attachments.all()] == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("# Plan\n\n## Day 1\n###### Tiny", "### Plan\n\n#### Day 1\n###### Tiny"),
        ("Overview\n========\n\nDetails\n-------\ntext", "### Overview\n\n#### Details\ntext"),
        (
            "```python\n# a comment, not a heading\n```\n# Real",
            "```python\n# a comment, not a heading\n```\n### Real",
        ),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "| a | b |\n|---|---|\n| 1 | 2 |"),
        ("Text\n\n---\n\nMore #hashtag", "Text\n\n---\n\nMore #hashtag"),
        ("- item\n---", "- item\n---"),
    ],
)
def test_headings_in_answers_are_demoted_below_the_exports_own(answer, expected):
    from conversations.services.export import demote_headings

    assert demote_headings(answer) == expected


def test_the_markdown_export_keeps_you_and_assistant_as_the_top_headings(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Plans")
    question = Message.objects.create(conversation=conversation, role="user", content="Plan my week")
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="# Week plan\n\n## Monday\nRest.",
    )
    conversation.current_leaf = answer
    conversation.save()
    client.force_login(alice)
    text = client.get(f"/api/conversations/{conversation.public_id}/export?format=md").content.decode()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == ["# Plans", "## You", "## Assistant", "### Week plan", "#### Monday"]
