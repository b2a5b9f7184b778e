"""Provider API keys are encrypted at rest and never reach a browser."""

import pytest
from django.db import connection

from conversations import crypto
from conversations.models import Provider

SECRET = "sk-proj-Very5ecretKeyMaterial-9f3a"

pytestmark = pytest.mark.django_db


def raw_key_column(provider_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted FROM conversations_provider WHERE id = %s", [provider_id])
        return cursor.fetchone()[0]


def make_provider(**extra) -> Provider:
    provider = Provider(
        name="OpenAI test", kind=Provider.Kind.OPENAI, base_url="https://api.openai.com/v1", **extra
    )
    provider.api_key = SECRET
    provider.save()
    return provider


def test_it_does_not_store_the_key_in_plaintext():
    provider = make_provider()
    stored = raw_key_column(provider.pk)
    assert stored
    assert SECRET not in stored
    assert SECRET[-12:] not in stored
    assert Provider.objects.get(pk=provider.pk).api_key == SECRET


def test_it_decrypts_keys_after_rotating_the_encryption_key(settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CHAT_ENCRYPTION_KEY = old
    crypto.reset_cache()
    provider = make_provider()
    settings.CHAT_ENCRYPTION_KEY = f"{new},{old}"
    crypto.reset_cache()
    assert Provider.objects.get(pk=provider.pk).api_key == SECRET
    settings.CHAT_ENCRYPTION_KEY = new
    crypto.reset_cache()
    with pytest.raises(crypto.DecryptionError):
        Provider.objects.get(pk=provider.pk).api_key  # noqa: B018 - the property read is the assertion
    crypto.reset_cache()


def test_it_never_shows_the_key_in_admin_html(admin_client):
    provider = make_provider()
    pages = [
        "/admin/conversations/provider/",
        f"/admin/conversations/provider/{provider.pk}/change/",
        "/admin/conversations/provider/add/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert SECRET not in html, url
        assert provider.api_key_encrypted not in html, url
    change_page = admin_client.get(pages[1]).content.decode()
    assert "…9f3a" in change_page


def test_it_keeps_the_key_when_the_admin_leaves_the_field_empty(admin_client):
    provider = make_provider()
    response = admin_client.post(
        f"/admin/conversations/provider/{provider.pk}/change/",
        {
            "name": "Renamed",
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key": "",
            "organization": "",
            "project": "",
            "extra_headers": "{}",
            "enabled": "on",
            "priority": "5",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    provider.refresh_from_db()
    assert provider.name == "Renamed"
    assert provider.api_key == SECRET


def test_it_replaces_the_key_from_the_admin_form(admin_client):
    provider = make_provider()
    response = admin_client.post(
        f"/admin/conversations/provider/{provider.pk}/change/",
        {
            "name": provider.name,
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key": "sk-new-key-1234",
            "extra_headers": "{}",
            "enabled": "on",
            "priority": "5",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key == "sk-new-key-1234"
    assert "sk-new-key-1234" not in raw_key_column(provider.pk)
