"""Management commands an operator runs."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from conversations.models import Provider

pytestmark = pytest.mark.django_db


def test_createsuperuser_works_without_input_as_django_documents(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "root")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "root@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long enough passphrase")
    call_command("createsuperuser", interactive=False, verbosity=0)
    user = get_user_model().objects.get(username="root")
    assert user.is_superuser and user.check_password("a long enough passphrase")


def test_bootstrap_reports_what_it_did_and_never_prints_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-be-printed")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    out = io.StringIO()
    call_command("bootstrap", stdout=out)
    assert "Set up provider OpenAI (http://127.0.0.1:9/v1)" in out.getvalue()
    assert "sk-should-not-be-printed" not in out.getvalue()
    assert Provider.objects.get(name="OpenAI").enabled


def test_bootstrap_fails_on_an_unknown_default_model(monkeypatch):
    monkeypatch.setenv("CHAT_DEFAULT_MODEL", "no-such-model")
    with pytest.raises(CommandError, match="no-such-model"):
        call_command("bootstrap")
