"""Read-only share links: public, a snapshot of the active branch at share time, revocable, reaching nothing else."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Conversation, Message, SharedConversation

pytestmark = pytest.mark.django_db


def conversation_with(owner, title, *texts) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title)
    parent = None
    for i, text in enumerate(texts):
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role="user" if i % 2 == 0 else "assistant", content=text
        )
    conversation.current_leaf = parent
    conversation.save()
    return conversation


def share(client, conversation) -> str:
    response = client.post(f"/api/conversations/{conversation.public_id}/share")
    assert response.status_code == 201
    return response.json()["share"]["url"]


def test_a_share_link_works_logged_out_and_shows_the_snapshot(client, alice):
    conversation = conversation_with(
        alice, "Bread", "How do I bake <b>bread</b>?", "Flour, water, salt, time."
    )
    client.force_login(alice)
    url = share(client, conversation)
    # Later turns are not part of the share.
    Message.objects.create(conversation=conversation, role="user", content="A later private question")

    anonymous = Client()
    response = anonymous.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Flour, water, salt, time." in html
    assert "How do I bake &lt;b&gt;bread&lt;/b&gt;?" in html  # escaped, not rendered
    assert "A later private question" not in html
    assert response["X-Robots-Tag"].startswith("noindex")
    assert '<meta name="robots" content="noindex' in html
    for private in ("alice", "alice@example.com", str(conversation.public_id)):
        assert private not in html


def test_a_revoked_link_is_gone(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    assert client.get(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"] == url
    assert client.delete(f"/api/conversations/{conversation.public_id}/share").status_code == 200
    assert Client().get(url).status_code == 404
    assert client.get(f"/api/conversations/{conversation.public_id}/share").json()["share"] is None


def test_sharing_again_replaces_the_old_link(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    first = share(client, conversation)
    second = share(client, conversation)
    assert first != second
    assert Client().get(first).status_code == 404
    assert Client().get(second).status_code == 200


def test_a_deleted_conversations_link_stops_working(client, alice):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    client.delete(f"/api/conversations/{conversation.public_id}")
    assert Client().get(url).status_code == 404


def test_a_token_reaches_only_its_own_conversation(client, alice, charlie):
    mine = conversation_with(alice, "Mine", "my question", "my answer")
    other = conversation_with(alice, "Other", "other secret", "other answer")
    charlies = conversation_with(charlie, "Charlie's", "charlie secret", "x")
    client.force_login(alice)
    url = share(client, mine)
    html = Client().get(url).content.decode()
    assert "other secret" not in html and "charlie secret" not in html
    anonymous = Client()
    for target in (mine, other, charlies):  # the token opens no API or page of any conversation
        assert anonymous.get(f"/api/conversations/{target.public_id}").status_code == 401
        assert anonymous.get(f"/c/{target.public_id}").status_code == 302
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 32
    for guess in ("", token[:-1], token + "x", str(mine.public_id), "1"):
        assert anonymous.get(f"/share/{guess}").status_code == 404


def test_charlie_cannot_share_or_revoke_alices_conversation(client, alice, charlie):
    conversation = conversation_with(alice, "Bread", "Q", "A")
    client.force_login(alice)
    url = share(client, conversation)
    client.force_login(charlie)
    assert client.post(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert client.delete(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert client.get(f"/api/conversations/{conversation.public_id}/share").status_code == 404
    assert Client().get(url).status_code == 200
    assert SharedConversation.objects.count() == 1


def chat_with_images(owner, *colors, text="What are these?"):
    """A first question with images attached in the order of `colors` (their rows made in reverse, like
    uploads that finish out of order), and an answer."""
    import hashlib
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    from conversations.models import Attachment

    conversation = conversation_with(owner, "Colours", text, "Two squares.")
    question = conversation.messages.get(role="user")
    datas = []
    for position, color in reversed(list(enumerate(colors))):
        out = io.BytesIO()
        Image.new("RGB", (160, 120), color).save(out, "PNG")
        data = out.getvalue()
        attachment = Attachment(
            owner=owner,
            message=question,
            position=position,
            mime="image/png",
            width=160,
            height=120,
            bytes=len(data),
        )
        attachment.sha256 = hashlib.sha256(data).hexdigest()
        attachment.file.save("x.png", ContentFile(data), save=False)
        attachment.save()
        datas.insert(0, data)
    return conversation, datas


def test_a_shared_page_shows_the_chats_images_in_order_with_alt_text_through_the_token(client, alice):
    conversation, datas = chat_with_images(alice, "red", "blue")
    client.force_login(alice)
    url = share(client, conversation)
    anonymous = Client()
    html = anonymous.get(url).content.decode()
    assert f'src="{url}/images/1" alt="Image 1 of 2 attached to the prompt"' in html
    assert f'src="{url}/images/2" alt="Image 2 of 2 attached to the prompt"' in html
    for number, data in enumerate(datas, 1):  # red first, as attached
        response = anonymous.get(f"{url}/images/{number}")
        assert response.status_code == 200 and response["Content-Type"] == "image/png"
        assert b"".join(response.streaming_content) == data
        assert "no-cache" in response["Cache-Control"]
    assert anonymous.get(f"{url}/images/3").status_code == 404
    assert anonymous.get(f"{url}/images/0").status_code == 404
    # The page names images by number only: no upload ids.
    for attachment in conversation.messages.get(role="user").attachments.all():
        assert str(attachment.public_id) not in html


def test_turning_the_link_off_turns_its_images_off(client, alice):
    conversation, _ = chat_with_images(alice, "red")
    client.force_login(alice)
    url = share(client, conversation)
    assert Client().get(f"{url}/images/1").status_code == 200
    client.delete(f"/api/conversations/{conversation.public_id}/share")
    gone = Client().get(f"{url}/images/1", HTTP_ACCEPT="text/html")
    assert gone.status_code == 404 and b"Image not available" in gone.content


def test_an_image_only_prompt_is_shared_too(client, alice):
    conversation, _ = chat_with_images(alice, "red", text="")
    client.force_login(alice)
    html = Client().get(share(client, conversation)).content.decode()
    assert 'alt="Image attached to the prompt"' in html and "Two squares." in html
