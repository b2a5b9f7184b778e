"""Error pages in the site's look with a way back to the chat: unknown addresses, a deleted or someone else's
chat, a share link its owner turned off, an image you can't see, and the 403 and 500 handlers."""

from __future__ import annotations

import hashlib
import html
import uuid

import pytest
from django.core.files.base import ContentFile
from django.test import RequestFactory
from django.utils import timezone

from conversations.models import Attachment, Conversation
from conversations.views import error_pages

pytestmark = pytest.mark.django_db

HTML = {"HTTP_ACCEPT": "text/html,application/xhtml+xml"}


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def assert_error_page(response, status: int, *phrases: str, back: bool = True) -> None:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    text = page_text(response)
    assert f"Error {status}" in text
    for phrase in phrases:
        assert phrase in text, phrase
    if back:
        assert 'href="/">Back to chat</a>' in text


def test_an_unknown_address_gets_the_sites_404_page(client, alice):
    client.force_login(alice)
    assert_error_page(client.get("/no/such/page", **HTML), 404, "Page not found")


def test_a_deleted_chat_and_someone_elses_chat_say_the_chat_isnt_here(client, alice, charlie):
    deleted = Conversation.objects.create(owner=alice, title="Old", deleted_at=timezone.now())
    theirs = Conversation.objects.create(owner=charlie, title="Charlie's")
    client.force_login(alice)
    for conversation_id in (deleted.public_id, theirs.public_id, uuid.uuid4()):
        response = client.get(f"/c/{conversation_id}", **HTML)
        assert_error_page(response, 404, "This chat isn't here", "It was deleted, or the link is wrong.")
        assert "Charlie" not in page_text(response)


def test_a_turned_off_share_link_says_its_owner_turned_it_off(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Trip")
    client.force_login(alice)
    url = client.post(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"]
    assert client.get(url).status_code == 200
    client.delete(f"/api/conversations/{conversation.public_id}/share")
    client.logout()
    assert_error_page(client.get(url, **HTML), 404, "This link was turned off by its owner.", back=False)
    assert ">Log in</a>" in page_text(client.get(url, **HTML))  # logged out: the way in, not "Back to chat"
    assert_error_page(
        client.get("/share/not-a-real-token", **HTML), 404, "There is no shared chat", back=False
    )


def test_a_share_link_of_a_deleted_chat_is_turned_off_too(client, alice):
    conversation = Conversation.objects.create(owner=alice, title="Trip")
    client.force_login(alice)
    url = client.post(f"/api/conversations/{conversation.public_id}/share").json()["share"]["url"]
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=timezone.now())
    assert_error_page(client.get(url, **HTML), 404, "This link was turned off by its owner.")


def test_an_image_you_cant_see_gets_a_page_in_a_browser_and_json_for_scripts(client, alice, charlie):
    data = b"\x89PNG fake bytes"
    attachment = Attachment(owner=alice, mime="image/png", width=1, height=1, bytes=len(data))
    attachment.sha256 = hashlib.sha256(data).hexdigest()
    attachment.file.save("x.png", ContentFile(data), save=False)
    attachment.save()
    client.force_login(charlie)
    url = f"/api/uploads/{attachment.public_id}"
    assert_error_page(client.get(url, **HTML), 404, "Image not available", "isn't yours to see")
    as_script = client.get(url)
    assert as_script.status_code == 404 and as_script.json()["error"]["code"] == "not_found"
    client.force_login(alice)
    assert client.get(url, **HTML).status_code == 200


def test_the_403_and_500_handlers_render_the_sites_page(alice):
    request = RequestFactory().get("/")
    request.user = alice
    assert_error_page(error_pages.forbidden(request), 403, "You can't open this")
    assert_error_page(error_pages.server_error(request), 500, "Something went wrong")
