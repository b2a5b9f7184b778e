"""Which copy a turn starts on and which routes follow it (services/model_choices), and the menu's default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.models import ChatModel, Conversation, Provider, SiteSettings
from conversations.services import context, errors, model_menu, turns
from conversations.services.model_choices import ModelChoices
from tests.live import database_url_for_tests

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup(upstream, sim_model):
    """A second provider serving GPT-4o, tried after the simulator (priority 200 > 100)."""
    provider = Provider.objects.create(
        name="Backup", kind=Provider.Kind.OPENROUTER, base_url=upstream.openrouter_base_url, priority=200
    )
    provider.api_key = "sk-backup"
    provider.save()
    return ChatModel.objects.create(
        provider=provider, model_id="openai/gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o",
        supports_images=True, context_window=128_000,
    )  # fmt: skip


def test_a_copy_id_from_an_older_client_means_its_canonical_model(alice, sim_model, backup):
    sim_model.provider.enabled = False
    sim_model.provider.save()
    assert turns.resolve_model(sim_model.pk, None, alice) == backup
    assert turns.resolve_model("gpt-4o", None, alice) == backup


def test_a_pinned_chat_answers_through_its_copy_only(alice, sim_model, backup):
    chat = Conversation.objects.create(
        owner=alice, canonical_model="gpt-4o", model=backup, model_pinned=True, title="pinned"
    )
    started = turns.do_send_turn(alice, conversation_id=str(chat.public_id), text="hi")
    assert started.assistant.model == backup  # not the simulator, though it comes first by priority
    prepared = context.prepare(started.assistant, started.conversation, alice)
    assert [r.provider_name for r in prepared.routes] == ["Backup"]
    # Without the pin the same chat would fall back between both.
    Conversation.objects.filter(pk=chat.pk).update(model_pinned=False)
    assert [r.provider_name for r in ModelChoices().candidates(sim_model)] == ["Simulator", "Backup"]


def test_a_pinned_chat_whose_copy_is_off_says_so(alice, sim_model, backup):
    chat = Conversation.objects.create(owner=alice, canonical_model="gpt-4o", model=backup, model_pinned=True)
    backup.provider.enabled = False
    backup.provider.save()
    with pytest.raises(errors.InvalidInput, match="pinned"):
        turns.do_send_turn(alice, conversation_id=str(chat.public_id), text="hi")


def test_a_group_pinned_to_one_providers_copy_routes_only_there(alice, charlie, sim_model, backup):
    """Pinning a group: the other copies are restricted to another group, so its members route to one."""
    staff = Group.objects.create(name="staff")
    sim_model.allowed_groups.add(staff)
    charlie.groups.add(staff)
    assert turns.resolve_model("gpt-4o", None, alice) == backup
    assert turns.resolve_model("gpt-4o", None, charlie) == sim_model
    [entry] = model_menu.menu_for(alice)
    assert entry["providers"] == ["Backup"]


def test_the_menu_remembers_the_model_a_person_used_last(alice, sim_model, gpt4):
    assert [e["id"] for e in model_menu.menu_for(alice) if e["default"]] == ["gpt-4o"]  # the site default
    turns.do_send_turn(alice, conversation_id=None, text="hi", model_pk="gpt-4")
    assert [e["id"] for e in model_menu.menu_for(alice) if e["default"]] == ["gpt-4"]
    # The site default is the admin's, and it stays theirs for everyone else.
    assert SiteSettings.default_model_id() == "gpt-4o"


def test_the_menu_entry_carries_its_badges_and_description(alice, sim_model):
    [entry] = model_menu.menu_for(alice)
    assert entry == {
        "id": "gpt-4o",
        "name": "GPT-4o",
        "description": "OpenAI's flagship: fast, strong at most tasks, reads images.",
        "supports_images": True,
        "context_window": 128_000,
        "max_output_tokens": 16_384,
        "input_price": "2.5",
        "output_price": "10",
        "providers": ["Simulator"],
        "default": True,
    }


def test_the_catalogue_is_read_once_per_process_until_it_changes(alice, sim_model, backup):
    """services/model_choices.Catalog: after the first read, a batch of turns or a page costs one single-row
    read (the stamp) for the whole catalogue; any change replaces the stamp and is seen at the next use."""
    ModelChoices()
    with CaptureQueriesContext(connection) as queries:
        choices = ModelChoices()
        assert [m.pk for m in choices.copies("gpt-4o", alice)] == [sim_model.pk, backup.pk]
        assert choices.candidates(sim_model)[1].api_key == "sk-backup"
    assert len(queries) == 1, [q["sql"] for q in queries]

    backup.provider.priority = 1  # the admin's save: tried first from now on
    backup.provider.save()
    assert [m.pk for m in ModelChoices().copies("gpt-4o", alice)] == [backup.pk, sim_model.pk]
    backup.provider.api_key = "sk-rotated"
    backup.provider.save()
    assert ModelChoices().candidates(backup)[0].api_key == "sk-rotated"
    group = Group.objects.create(name="Backup users")
    backup.allowed_groups.add(group)  # restricted: alice is not in the group
    assert [m.pk for m in ModelChoices().copies("gpt-4o", alice)] == [sim_model.pk]
    SiteSettings.objects.update_or_create(pk=1, defaults={"default_model": "gpt-4o-mini"})
    assert ModelChoices().default_model == "gpt-4o-mini"


@pytest.mark.django_db(transaction=True)
def test_a_change_made_by_another_process_is_seen_at_the_next_turn(alice, sim_model, backup):
    """Each process keeps its own snapshot: a change saved by another process (the admin's, a management
    command's) reaches this one through the stamp, with no message between them."""
    assert [m.pk for m in ModelChoices().copies("gpt-4o", alice)] == [sim_model.pk, backup.pk]
    script = (
        "from conversations.models import Provider; "
        f"p = Provider.objects.get(pk={sim_model.provider_id}); p.enabled = False; p.save()"
    )
    env = {**os.environ, "DATABASE_URL": database_url_for_tests()}
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], env=env, check=True, cwd=settings.BASE_DIR
    )
    assert [m.pk for m in ModelChoices().copies("gpt-4o", alice)] == [backup.pk]
    started = turns.do_send_turn(alice, conversation_id=None, text="hi")
    assert started.assistant.model_id == backup.pk
