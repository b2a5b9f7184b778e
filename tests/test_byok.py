"""Bring your own key: a user stores a personal key for a provider on their settings page; it is encrypted,
never shown back (only its last four characters), and used for that user's turns only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import crypto
from conversations.models import (
    AuditEntry,
    ChatModel,
    DeletedUsage,
    Message,
    PersonalKey,
    Provider,
    UserQuota,
)
from conversations.services import errors, personal_keys, quotas, turns
from conversations.services.titles import TITLE_PROMPT
from conversations.testing.upstream import Reply
from tests.conftest import session_cookie_for
from tests.live import DaphneServer
from tests.usage_seed import answer
from tests.wsclient import ChatSocket

MINE = "sk-alice-own-key-0000-Wq42"
SITE = "Bearer sk-sim-test-0000"  # sim_provider's key


@pytest.fixture
def keys_on(settings):
    settings.CHAT_ALLOW_PERSONAL_KEYS = True


def save_key(client, provider, key: str = MINE):
    return client.post("/settings/", {"provider": provider.pk, "api_key": key}, follow=True)


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- The settings page -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_settings_page_needs_a_login(client):
    response = client.get("/settings/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_personal_keys_are_off_by_default(client, alice, sim_provider):
    client.force_login(alice)
    page = client.get("/settings/").content.decode()
    assert "Your API keys" not in page and "Account" in page
    response = save_key(client, sim_provider)
    assert page_messages(response) == ["Personal API keys are turned off on this site."]
    assert not PersonalKey.objects.exists()


@pytest.mark.django_db
def test_a_user_saves_a_key_that_is_encrypted_and_never_shown_back(client, alice, sim_provider, keys_on):
    client.force_login(alice)
    response = save_key(client, sim_provider)
    assert page_messages(response) == ["Your key was saved. Your own messages now use it."]
    html = response.content.decode()
    assert "Your key: …Wq42" in html
    assert MINE not in html
    stored = PersonalKey.objects.get(user=alice, provider=sim_provider)
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_encrypted FROM conversations_personalkey WHERE id = %s", [stored.pk])
        raw = cursor.fetchone()[0]
    assert MINE not in raw and stored.api_key == MINE
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.target_repr) == ("personal_key.set", alice, "Simulator")
    assert MINE not in str(entry.details) + entry.summary


@pytest.mark.django_db
def test_a_user_replaces_and_removes_their_key(client, alice, sim_provider, keys_on):
    client.force_login(alice)
    save_key(client, sim_provider)
    save_key(client, sim_provider, "sk-second-key-9876")
    assert PersonalKey.objects.get().api_key == "sk-second-key-9876"
    response = client.post("/settings/", {"provider": sim_provider.pk, "action": "remove"}, follow=True)
    assert page_messages(response) == ["Your key was removed."]
    assert not PersonalKey.objects.exists()
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "personal_key.set",
        "personal_key.replaced",
        "personal_key.removed",
    ]


@pytest.mark.django_db
def test_it_refuses_a_key_with_spaces_or_for_a_disabled_provider(client, alice, sim_provider, keys_on):
    client.force_login(alice)
    response = save_key(client, sim_provider, "two words")
    assert page_messages(response) == ["Paste the key exactly as the provider shows it: one word, no spaces."]
    sim_provider.enabled = False
    sim_provider.save()
    assert page_messages(save_key(client, sim_provider)) == ["No such provider."]
    assert not PersonalKey.objects.exists()


@pytest.mark.django_db
def test_charlie_cannot_remove_or_see_alices_key(client, alice, charlie, sim_provider, keys_on):
    personal_keys.set_key(alice, sim_provider.pk, MINE)
    client.force_login(charlie)
    assert "…Wq42" not in client.get("/settings/").content.decode()
    response = client.post("/settings/", {"provider": sim_provider.pk, "action": "remove"}, follow=True)
    assert page_messages(response) == ["You have no key for that provider."]
    assert PersonalKey.objects.filter(user=alice).exists()


@pytest.mark.django_db
def test_the_settings_page_shows_the_users_limits(client, alice, settings):
    settings.CHAT_USER_MONTHLY_BUDGET = 5.0
    client.force_login(alice)
    html = client.get("/settings/").content.decode()
    assert "This month: $0.00 of $5.00" in html and "<meter" in html


# --- Routes: whose key each turn uses ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_routes_carry_the_users_own_key_and_nobody_elses(alice, charlie, sim_model, keys_on):
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    [alices] = personal_keys.routes_for_user(sim_model, alice)
    [charlies] = personal_keys.routes_for_user(sim_model, charlie.pk)
    assert (alices.api_key, charlies.api_key) == (MINE, "sk-sim-test-0000")
    assert MINE not in repr(alices)


@pytest.mark.django_db
def test_a_stored_key_is_not_used_once_personal_keys_are_turned_off(alice, sim_model, settings):
    settings.CHAT_ALLOW_PERSONAL_KEYS = True
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    settings.CHAT_ALLOW_PERSONAL_KEYS = False
    [route] = personal_keys.routes_for_user(sim_model, alice)
    assert route.api_key == "sk-sim-test-0000"


@pytest.mark.django_db
def test_an_unreadable_personal_key_is_reported_not_replaced_by_the_sites(alice, sim_model, keys_on):
    PersonalKey.objects.create(
        user=alice, provider=sim_model.provider, api_key_encrypted="not-a-fernet-token"
    )
    [route] = personal_keys.routes_for_user(sim_model, alice)
    assert (route.api_key, route.key_unreadable) == ("", True)
    with pytest.raises(crypto.DecryptionError):
        PersonalKey.objects.get().api_key  # noqa: B018 - the property read is the assertion


@pytest.mark.django_db
def test_fallback_skips_copies_restricted_to_other_groups(alice, sim_model, upstream):
    backup = Provider.objects.create(name="Backup", base_url=upstream.base_url, priority=500)
    twin = ChatModel.objects.create(
        provider=backup, model_id="gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o"
    )
    twin.allowed_groups.add(Group.objects.create(name="premium"))
    assert [r.provider_name for r in personal_keys.routes_for_user(sim_model, alice)] == ["Simulator"]


# --- End to end: the engine uses the key for that user's turns only ------------------------------------------------------


@pytest.fixture(scope="module")
def byok_server(django_db_setup, tmp_path_factory):
    """A daphne with personal keys on (the shared live server runs with the default: off)."""
    server = DaphneServer(tmp_path_factory.mktemp("byok"), extra_env={"CHAT_ALLOW_PERSONAL_KEYS": "true"})
    server.start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_engine_uses_the_personal_key_for_its_owners_turns_only(
    byok_server, client, alice, charlie, sim_model, upstream, keys_on
):
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    upstream.default = Reply(text="Hello from the simulator.")
    for user, expected in ((alice, f"Bearer {MINE}"), (charlie, SITE)):
        with ChatSocket(byok_server, session_cookie_for(client, user)) as sock:
            sock.send(type="send", text="Hi", ref="t")
            ack = sock.wait_type("ack")
            assert sock.wait_end(ack["assistant_message"]["id"])["status"] == "complete"
            # Its title request answered: none is left in flight to land in a later test's requests (once
            # in CI, charlie's site-key title reached the next test's simulator log).
            if not any(f["type"] == "title" for f in sock.frames):
                sock.wait_type("title")
        answers = [
            r
            for r in upstream.requests
            if r.path.endswith("/chat/completions") and r.json["messages"][-1]["content"] == "Hi"
        ]
        assert [r.headers["authorization"] for r in answers] == [expected], user
        upstream.reset()
        upstream.default = Reply(text="Hello from the simulator.")
    assert MINE not in byok_server.log()


# --- Whose spend: answers on a user's own key are theirs, not the site's ------------------------------------------------


def over_budget(user) -> None:
    """A spent monthly budget: $0.20 of $0.20."""
    UserQuota.objects.update_or_create(user=user, defaults={"monthly_budget": Decimal("0.20")})
    answer(user, cost="0.20")


def fresh(user):
    return type(user).objects.get(pk=user.pk)  # as each websocket command loads them


@pytest.mark.django_db
def test_a_turn_on_the_users_own_key_reserves_no_site_budget(alice, sim_model, keys_on):
    over_budget(alice)
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    turn = turns.do_send_turn(fresh(alice), conversation_id=None, text="Hi")
    placeholder = turn.assistant
    assert (placeholder.own_key, placeholder.reserved_cost, placeholder.reserved_tokens) == (True, None, None)


def assert_the_site_budget_applies(user) -> None:
    """A turn reserves site budget as usual, and is refused once that budget is spent."""
    turn = turns.do_send_turn(fresh(user), conversation_id=None, text="Hi")
    assert not turn.assistant.own_key and turn.assistant.reserved_cost is not None
    over_budget(user)
    with pytest.raises(errors.BudgetExceeded):
        turns.do_send_turn(fresh(user), conversation_id=None, text="Again")


@pytest.mark.django_db
def test_a_turn_that_could_fall_back_to_the_sites_key_still_reserves(alice, sim_model, upstream, keys_on):
    backup = Provider.objects.create(name="Backup", base_url=upstream.base_url, priority=500, api_key="sk-b")
    ChatModel.objects.create(provider=backup, model_id="gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o")
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    assert_the_site_budget_applies(alice)


@pytest.mark.django_db
def test_with_personal_keys_off_a_stored_key_changes_nothing_about_budgets(alice, sim_model, settings):
    settings.CHAT_ALLOW_PERSONAL_KEYS = True
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    settings.CHAT_ALLOW_PERSONAL_KEYS = False
    assert_the_site_budget_applies(alice)


@pytest.mark.django_db
def test_checking_for_own_keys_costs_one_query_and_none_when_off(alice, sim_model, settings):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            turns.do_send_turn(fresh(alice), conversation_id=None, text="Hi")
        return len(queries)

    count()  # the first turn reads this process's model catalogue (services/model_choices.Catalog)
    off = count()
    settings.CHAT_ALLOW_PERSONAL_KEYS = True
    assert count() == off + 1


@pytest.mark.django_db
def test_own_key_answers_count_toward_no_quota_even_once_deleted(alice, settings):
    settings.CHAT_USER_MONTHLY_TOKENS = 1_000_000
    mine = answer(alice, cost="3.00", prompt=1000, completion=500, own_key=True)
    answer(alice, cost="0.05", prompt=100, completion=50)
    assert (quotas.usage_for(alice).month_cost, quotas.usage_for(alice).month_tokens) == (
        Decimal("0.05"),
        150,
    )
    mine.conversation.delete()
    assert DeletedUsage.objects.get().own_key
    assert (quotas.usage_for(alice).month_cost, quotas.usage_for(alice).month_tokens) == (
        Decimal("0.05"),
        150,
    )


@pytest.mark.django_db(transaction=True)
def test_a_user_over_the_site_budget_is_answered_on_their_own_key_and_titled_with_it(
    byok_server, client, alice, sim_model, upstream, keys_on
):
    over_budget(alice)
    personal_keys.set_key(alice, sim_model.provider_id, MINE)
    before = quotas.usage_for(alice)
    upstream.enqueue(Reply(text="Hello from the simulator."), Reply(text="A greeting"))
    with ChatSocket(byok_server, session_cookie_for(client, alice)) as sock:
        sock.send(type="send", text="Hi", ref="t")
        ack = sock.wait_type("ack")
        assert sock.wait_end(ack["assistant_message"]["id"])["status"] == "complete"
        assert sock.wait_type("title")["title"] == "A greeting"
    saved = Message.objects.get(public_id=ack["assistant_message"]["id"])
    assert saved.own_key and saved.cost > 0 and saved.prompt_tokens  # recorded, at the model's prices
    assert quotas.usage_for(alice) == before  # but not the site's spend
    titles = [r for r in upstream.requests if r.json and r.json["messages"][0]["content"] == TITLE_PROMPT]
    assert [r.headers["authorization"] for r in titles] == [f"Bearer {MINE}"]
    assert {r.headers["authorization"] for r in upstream.requests} == {f"Bearer {MINE}"}
