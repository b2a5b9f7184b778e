"""Providers in the admin: write-only keys that appear nowhere, Test connection, Sync models, the model list's
editable columns, and re-encrypting every key under a new CHAT_ENCRYPTION_KEY."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.core.management import CommandError, call_command
from django.db import connection

from conversations import crypto
from conversations.llm.client import complete
from conversations.llm.request import ChatMessage, ChatParams, ChatRequest
from conversations.models import AuditEntry, ChatModel, PersonalKey, Provider, SiteSettings
from conversations.services import personal_keys, providers
from conversations.services.routes import candidates_for
from conversations.testing.upstream import Reply

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-AdminTypedSecret-7Qx9"
PERSONAL = "sk-personal-AlicesOwnKey-Zz31"
PROVIDERS = "/admin/conversations/provider/"


def provider_form(upstream, **overrides) -> dict:
    data = {
        "name": "Simulator",
        "kind": "openai_compatible",
        "base_url": upstream.base_url,
        "api_key": SECRET,
        "organization": "",
        "project": "",
        "extra_headers": "{}",
        "initial-extra_headers": "{}",  # a callable default: the page posts its initial value too
        "enabled": "on",
        "priority": "10",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def add_provider(admin_client, upstream) -> Provider:
    response = admin_client.post(f"{PROVIDERS}add/", provider_form(upstream))
    assert response.status_code == 302, response.content.decode()[:3000]
    return Provider.objects.get(name="Simulator")


def every_database_value() -> str:
    """Every value of every table, as text: what someone with a copy of the database would see."""
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names from introspection
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def chat_request() -> ChatRequest:
    return ChatRequest([ChatMessage("user", "ping")], ChatParams(max_output_tokens=5))


# --- The key appears nowhere -------------------------------------------------------------------------------------------


def test_the_key_appears_in_no_page_response_log_or_audit_entry(
    admin_client, admin_user, client, alice, upstream, caplog, settings
):
    caplog.set_level(logging.DEBUG)
    settings.CHAT_ALLOW_PERSONAL_KEYS = True
    provider = add_provider(admin_client, upstream)
    admin_client.post(f"{PROVIDERS}{provider.pk}/test-connection/", follow=True)
    admin_client.post(f"{PROVIDERS}{provider.pk}/sync-models/", follow=True)
    model = ChatModel.objects.filter(provider=provider, enabled=True).first()
    client.force_login(alice)
    client.post("/settings/", {"provider": provider.pk, "api_key": PERSONAL})
    key = PersonalKey.objects.get()

    pages = [
        "/admin/",
        PROVIDERS,
        f"{PROVIDERS}add/",
        f"{PROVIDERS}{provider.pk}/change/",
        f"{PROVIDERS}{provider.pk}/history/",
        "/admin/conversations/chatmodel/",
        f"/admin/conversations/chatmodel/{model.pk}/change/",
        "/admin/conversations/personalkey/",
        f"/admin/conversations/personalkey/{key.pk}/change/",
        "/admin/conversations/auditentry/",
        "/admin/auth/user/",
        f"/admin/auth/user/{alice.pk}/change/",
        "/admin/usage/",
        "/admin/usage.csv",
    ]
    pages += [
        f"/admin/conversations/auditentry/{pk}/change/"
        for pk in AuditEntry.objects.values_list("pk", flat=True)
    ]
    seen = []
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        seen.append(response.content.decode())
    for url in ["/settings/", "/api/models", "/api/conversations"]:
        response = client.get(url)
        assert response.status_code == 200, url
        seen.append(response.content.decode())
    assert "…7Qx9" in seen[3] and "…Zz31" in seen[8]  # the hints are what people see

    everything = "\n".join(seen)
    audit = "\n".join(f"{e.summary} {e.details} {e.target_repr}" for e in AuditEntry.objects.all())
    history = "\n".join(LogEntry.objects.values_list("change_message", flat=True))
    assert {"provider.created", "provider.tested", "provider.synced", "personal_key.set"} <= set(
        AuditEntry.objects.values_list("action", flat=True)
    )
    for secret in (SECRET, PERSONAL):
        assert secret not in everything
        assert secret not in caplog.text
        assert secret not in audit
        assert secret not in history
        assert secret not in every_database_value()
        assert secret[-12:] not in every_database_value()
    # ...but it was used: the connection test's completion carried the admin's key.
    chat = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert chat and chat[-1].headers["authorization"] == f"Bearer {SECRET}"


def test_the_audit_log_names_a_replaced_key_without_its_value(admin_client, upstream):
    provider = add_provider(admin_client, upstream)
    response = admin_client.post(
        f"{PROVIDERS}{provider.pk}/change/", provider_form(upstream, api_key="sk-another-secret-0001")
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="provider.changed")
    assert entry.details == {"fields": ["API key"]}
    assert entry.summary == "Changed API key."
    assert "sk-another" not in str(entry.details) + entry.summary


# --- Test connection ----------------------------------------------------------------------------------------------------


def test_test_connection_reports_latency_on_success(admin_client, upstream, sim_model):
    provider = sim_model.provider
    response = admin_client.post(f"{PROVIDERS}{provider.pk}/test-connection/", follow=True)
    [message] = messages_of(response)
    assert message.startswith("Simulator works: 10 models listed in ")
    assert " ms; gpt-4o answered one token in " in message
    chat = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert chat[-1].json["max_tokens"] == 1
    assert chat[-1].headers["authorization"] == "Bearer sk-sim-test-0000"
    entry = AuditEntry.objects.get(action="provider.tested")
    assert entry.details["ok"] is True and entry.details["model"] == "gpt-4o"


def test_test_connection_shows_the_clients_clear_error_for_a_bad_key(admin_client, upstream, sim_model):
    upstream.required_api_key = "sk-the-right-one"
    response = admin_client.post(f"{PROVIDERS}{sim_model.provider.pk}/test-connection/", follow=True)
    [message] = messages_of(response)
    assert "but a one-token answer from gpt-4o failed" in message
    assert 'The provider "Simulator" rejected the API key (HTTP 401)' in message
    assert 'class="error"' in response.content.decode()


def test_test_connection_says_when_the_provider_is_unreachable(admin_client, upstream):
    provider = Provider.objects.create(name="Nowhere", base_url="http://127.0.0.1:9/v1")
    response = admin_client.post(f"{PROVIDERS}{provider.pk}/test-connection/", follow=True)
    [message] = messages_of(response)
    assert message.startswith("Listing models failed: Couldn't reach the provider")


def test_test_connection_runs_as_a_list_action_too(admin_client, upstream, sim_model):
    response = admin_client.post(
        PROVIDERS, {"action": "test_connection", "_selected_action": [sim_model.provider.pk]}, follow=True
    )
    assert any("Simulator works" in m for m in messages_of(response))


def test_charlie_cannot_test_or_sync_a_provider(client, charlie, sim_provider, upstream):
    client.force_login(charlie)
    for action in ("test-connection", "sync-models"):
        response = client.post(f"{PROVIDERS}{sim_provider.pk}/{action}/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not upstream.requests


def test_staff_without_change_permission_cannot_test(client, django_user_model, sim_provider, upstream):
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    assert client.post(f"{PROVIDERS}{sim_provider.pk}/test-connection/").status_code == 403
    assert client.get(f"{PROVIDERS}{sim_provider.pk}/test-connection/").status_code == 405


# --- Sync models ---------------------------------------------------------------------------------------------------------


def test_sync_imports_the_simulators_models_enabling_known_ones(admin_client, upstream, sim_provider):
    response = admin_client.post(f"{PROVIDERS}{sim_provider.pk}/sync-models/", follow=True)
    [message] = messages_of(response)
    assert message.startswith("Simulator: 10 new models imported; 5 of them enabled")
    models = {m.model_id: m for m in sim_provider.models.all()}
    assert "text-embedding-3-small" not in models and "dall-e-3" not in models
    enabled = sorted(m for m, row in models.items() if row.enabled)
    assert enabled == ["gpt-4-turbo", "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-2024-08-06", "gpt-4o-mini"]
    gpt4o = models["gpt-4o"]
    # The plain OpenAI listing has no capabilities: known models get them from the built-in catalog.
    assert (gpt4o.display_name, gpt4o.context_window, gpt4o.supports_images) == ("GPT-4o", 128_000, True)
    # The listing has no prices: the catalog's, as ensure_catalog gives seeded copies (not $0: budgets count).
    assert (gpt4o.input_price, gpt4o.output_price) == (Decimal("2.50"), Decimal("10.00"))

    again = providers.sync_models(sim_provider)
    assert (again.created, again.updated, again.unchanged) == ([], [], 10)


def test_a_synced_snapshot_inherits_its_familys_catalog_metadata(upstream, sim_provider):
    """gpt-4o-2024-11-20 is not in the catalog, and a compatible server's list says nothing about it: it reads
    like gpt-4o (vision, 128k context, gpt-4o's prices, a proper name), not 8,192 tokens and $0."""
    providers.sync_models(sim_provider)
    snapshot = sim_provider.models.get(model_id="gpt-4o-2024-11-20")
    assert snapshot.display_name == "GPT-4o (2024-11-20)"
    assert (snapshot.supports_images, snapshot.context_window, snapshot.max_output_tokens) == (
        True,
        128_000,
        16_384,
    )
    assert (snapshot.input_price, snapshot.cached_input_price, snapshot.output_price) == (
        Decimal("2.50"), Decimal("1.25"), Decimal("10.00"),
    )  # fmt: skip
    mini = sim_provider.models.get(model_id="gpt-4o-mini-2024-07-18")
    assert (mini.display_name, mini.output_price) == ("GPT-4o mini (2024-07-18)", Decimal("0.60"))
    assert not snapshot.enabled  # outside the catalog: the admin reviews it first
    # An admin's price stays; a $0 an older sync left is filled in.
    ChatModel.objects.filter(pk=snapshot.pk).update(input_price=Decimal("3"))
    ChatModel.objects.filter(pk=mini.pk).update(input_price=0, cached_input_price=None, output_price=0)
    providers.sync_models(sim_provider)
    snapshot.refresh_from_db()
    mini.refresh_from_db()
    assert snapshot.input_price == Decimal("3")
    assert (mini.input_price, mini.output_price) == (Decimal("0.15"), Decimal("0.60"))


def test_sync_takes_context_prices_and_vision_from_an_openrouter_listing(upstream):
    provider = Provider.objects.create(name="OR", kind="openrouter", base_url=upstream.openrouter_base_url)
    ChatModel.objects.create(
        provider=provider,
        model_id="openai/gpt-4o",
        canonical_id="gpt-4o",
        display_name="My GPT-4o",
        context_window=1,
    )
    report = providers.sync_models(provider)
    assert sorted(report.created) == [
        "meta-llama/llama-3.1-8b-instruct",
        "openai/gpt-4",
        "openai/gpt-4o-mini",
    ]
    assert report.updated == ["openai/gpt-4o"]
    gpt4o = provider.models.get(model_id="openai/gpt-4o")
    assert gpt4o.display_name == "My GPT-4o", "an admin's display name stays"
    assert (gpt4o.context_window, gpt4o.max_output_tokens, gpt4o.supports_images) == (128_000, 16_384, True)
    assert (gpt4o.input_price, gpt4o.output_price) == (Decimal("2.5"), Decimal("10"))
    mini = provider.models.get(model_id="openai/gpt-4o-mini")
    assert (mini.canonical_id, mini.enabled, mini.output_price) == ("gpt-4o-mini", True, Decimal("0.6"))
    llama = provider.models.get(model_id="meta-llama/llama-3.1-8b-instruct")
    assert (llama.display_name, llama.enabled) == ("Meta: Llama 3.1 8B Instruct", False)


def test_sync_reports_a_listing_failure(admin_client):
    provider = Provider.objects.create(name="Nowhere", base_url="http://127.0.0.1:9/v1")
    response = admin_client.post(f"{PROVIDERS}{provider.pk}/sync-models/", follow=True)
    [message] = messages_of(response)
    assert message.startswith("Nowhere: Couldn't reach the provider")
    assert AuditEntry.objects.get().action == "provider.sync_failed"


# --- Models and fallback order -------------------------------------------------------------------------------------------


def test_models_are_edited_in_the_list(admin_client, sim_model):
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(sim_model.pk),
        "form-0-display_name": "GPT-4o (fast)",
        "form-0-supports_images": "on",
        "form-0-context_window": "64000",
        "form-0-input_price": "3.00",
        "form-0-output_price": "12.00",
        "_save": "Save",
    }
    response = admin_client.post("/admin/conversations/chatmodel/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    sim_model.refresh_from_db()
    assert (sim_model.display_name, sim_model.context_window, sim_model.enabled) == (
        "GPT-4o (fast)",
        64000,
        False,
    )
    assert (sim_model.input_price, sim_model.output_price) == (Decimal("3"), Decimal("12"))
    assert AuditEntry.objects.get().action == "chatmodel.changed"


def test_prices_read_as_people_write_them_and_sent_back_change_nothing(admin_client, sim_model):
    # Stored as 2.5000 and 10.0000.
    its_models = f"/admin/conversations/chatmodel/?provider__id__exact={sim_model.provider_id}"
    listing = admin_client.get(its_models).content.decode()
    assert 'name="form-0-input_price" value="2.50"' in listing
    assert 'name="form-0-output_price" value="10.00"' in listing
    page = admin_client.get(f"{PROVIDERS}{sim_model.provider_id}/change/").content.decode()
    assert 'name="models-0-input_price" value="2.50"' in page
    assert 'aria-label="Output $ / 1M tokens"' in page  # the inline's inputs are named after their columns
    data = {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-0-id": str(sim_model.pk),
        "form-0-display_name": "GPT-4o",
        "form-0-supports_images": "on",
        "form-0-context_window": "128000",
        "form-0-input_price": "2.50",
        "form-0-output_price": "10.00",
        "form-0-enabled": "on",
        "_save": "Save",
    }
    assert admin_client.post("/admin/conversations/chatmodel/", data).status_code == 302
    assert not AuditEntry.objects.exists()
    assert not LogEntry.objects.exists()


def test_provider_priority_sets_the_fallback_order(admin_client, upstream, sim_model, sim_provider):
    backup = Provider.objects.create(name="Backup", base_url=upstream.base_url, priority=50)
    ChatModel.objects.create(provider=backup, model_id="gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o")
    assert [r.provider_name for r in candidates_for(sim_model)] == ["Simulator", "Backup"]
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "2",
        "form-0-id": str(sim_provider.pk),
        "form-0-enabled": "on",
        "form-0-priority": "200",
        "form-1-id": str(backup.pk),
        "form-1-enabled": "on",
        "form-1-priority": "5",
        "_save": "Save",
    }
    assert admin_client.post(PROVIDERS, data).status_code == 302
    twin = ChatModel.objects.get(provider=backup)
    # The model the user picked comes first; its twins follow by priority.
    assert [r.provider_name for r in candidates_for(twin)] == ["Backup", "Simulator"]
    page = admin_client.get("/admin/conversations/chatmodel/").content.decode()
    assert "Backup (5)" in page and "Simulator (200)" in page


def test_make_default_and_disable_actions(admin_client, sim_model, sim_provider):
    other = ChatModel.objects.create(
        provider=sim_provider, model_id="gpt-4o-mini", canonical_id="gpt-4o-mini", display_name="mini"
    )
    url = "/admin/conversations/chatmodel/"
    admin_client.post(url, {"action": "make_default", "_selected_action": [other.pk]})
    other.refresh_from_db()
    sim_model.refresh_from_db()
    assert SiteSettings.default_model_id() == "gpt-4o-mini"  # the canonical model, whoever serves it
    admin_client.post(url, {"action": "disable", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert not other.enabled
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "chatmodel.made_default",
        "chatmodel.disabled",
    ]


# --- Re-encrypting keys ----------------------------------------------------------------------------------------------------


@pytest.fixture
def encryption_keys(settings):
    """Switch CHAT_ENCRYPTION_KEY during a test; the cached keys follow."""

    def use(value: str) -> None:
        settings.CHAT_ENCRYPTION_KEY = value
        crypto.reset_cache()

    yield use
    crypto.reset_cache()


def test_every_key_still_works_after_rotation(upstream, alice, encryption_keys, settings):
    settings.CHAT_ALLOW_PERSONAL_KEYS = True
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(old)
    provider = Provider(name="Simulator", base_url=upstream.base_url)
    provider.api_key = SECRET
    provider.save()
    model = ChatModel.objects.create(
        provider=provider, model_id="gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o"
    )
    personal_keys.set_key(alice, provider.pk, PERSONAL)

    encryption_keys(f"{new},{old}")  # step 1: every process reads both, writes with the new one
    call_command("rotate_encryption_key", stdout=(out := _Capture()))
    assert out.text == "Re-encrypted 2 keys.\n"
    encryption_keys(new)  # step 3: the old key is gone

    for token in (
        Provider.objects.get(name=provider.name).api_key_encrypted,
        PersonalKey.objects.get().api_key_encrypted,
    ):
        assert Fernet(new.encode()).decrypt(token.encode()).decode() in (SECRET, PERSONAL)

    upstream.enqueue(Reply(text="pong"), Reply(text="pong"))
    async_to_sync(complete)(chat_request(), candidates_for(model))
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    async_to_sync(complete)(chat_request(), personal_keys.routes_for_user(model, alice))
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {PERSONAL}"
    assert AuditEntry.objects.filter(action="keys.rotated").count() == 1


def test_a_site_without_an_encryption_key_moves_to_one(upstream, encryption_keys):
    encryption_keys("")  # keys encrypted with the one derived from SECRET_KEY
    provider = Provider(name="Simulator", base_url=upstream.base_url)
    provider.api_key = SECRET
    provider.save()
    new = Fernet.generate_key().decode()
    encryption_keys(new)
    assert Provider.objects.get(name=provider.name).api_key == SECRET, (
        "the derived key still reads until the rotation"
    )
    call_command("rotate_encryption_key", stdout=_Capture())
    assert (
        Fernet(new.encode())
        .decrypt(Provider.objects.get(name=provider.name).api_key_encrypted.encode())
        .decode()
        == SECRET
    )


def test_rotation_reports_keys_it_cannot_read_and_leaves_them(upstream, encryption_keys):
    encryption_keys(Fernet.generate_key().decode())
    provider = Provider(name="Lost", base_url=upstream.base_url)
    provider.api_key = SECRET
    provider.save()
    before = provider.api_key_encrypted
    encryption_keys(Fernet.generate_key().decode())
    with pytest.raises(CommandError, match=rf"can't be decrypted .*\(provider {provider.pk}\)"):
        call_command("rotate_encryption_key", stdout=_Capture())
    assert Provider.objects.get(name=provider.name).api_key_encrypted == before


def test_a_dry_run_changes_nothing(upstream, encryption_keys):
    old = Fernet.generate_key().decode()
    encryption_keys(old)
    provider = Provider(name="Simulator", base_url=upstream.base_url)
    provider.api_key = SECRET
    provider.save()
    encryption_keys(f"{Fernet.generate_key().decode()},{old}")
    call_command("rotate_encryption_key", "--dry-run", stdout=(out := _Capture()))
    assert out.text == "Would re-encrypt 1 key.\n"
    assert Provider.objects.get(name=provider.name).api_key_encrypted == provider.api_key_encrypted
    assert not AuditEntry.objects.exists()


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_test_connection_of_a_missing_provider_is_a_404(admin_client):
    assert admin_client.post(f"{PROVIDERS}999999/test-connection/").status_code == 404
    assert admin_client.post(f"{PROVIDERS}not-a-number/sync-models/").status_code == 404
