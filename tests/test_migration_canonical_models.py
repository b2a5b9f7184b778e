"""Migration 0008 moves the provider-specific default and conversation models to canonical ones, and back.
Runs on SQLite in lane 1 and on PostgreSQL in lane 2 (./scripts/test)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0007_attachment_position")]
AFTER = [("conversations", "0008_canonical_models")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0007():
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # the latest schema for later tests


def seed(apps):
    """Today's site: GPT-4o mini made the default on OpenRouter (OpenAI's copy seeded by 0002), one chat on
    OpenAI's GPT-4o and one on OpenRouter's copy, and a chat whose model was deleted."""
    Provider = apps.get_model("conversations", "Provider")
    ChatModel = apps.get_model("conversations", "ChatModel")
    Conversation = apps.get_model("conversations", "Conversation")
    User = apps.get_model("auth", "User")
    # Seeded by 0002, unless an earlier transactional test flushed the database.
    openai, _ = Provider.objects.update_or_create(
        name="OpenAI", defaults={"kind": "openai", "base_url": "https://api.openai.com/v1", "priority": 10}
    )
    Provider.objects.filter(pk=openai.pk).update(enabled=True)  # it has a key
    for model_id in ("gpt-4o", "gpt-4o-mini"):
        ChatModel.objects.get_or_create(
            provider=openai, model_id=model_id, defaults={"canonical_id": model_id, "display_name": model_id}
        )
    openrouter = Provider.objects.create(
        name="OpenRouter", kind="openrouter", base_url="http://x/api/v1", priority=20
    )
    ChatModel.objects.filter(is_default=True).update(is_default=False)
    mini = ChatModel.objects.create(
        provider=openrouter, model_id="openai/gpt-4o-mini", canonical_id="gpt-4o-mini", display_name="m",
        is_default=True,
    )  # fmt: skip
    routed = ChatModel.objects.create(
        provider=openrouter, model_id="openai/gpt-4o", canonical_id="gpt-4o", display_name="GPT-4o"
    )
    owner = User.objects.create(username="alice")
    on_openai = Conversation.objects.create(
        owner=owner, model=ChatModel.objects.get(provider=openai, model_id="gpt-4o")
    )
    on_openrouter = Conversation.objects.create(owner=owner, model=routed)
    without = Conversation.objects.create(owner=owner, model=None)
    return {
        "mini": mini.pk,
        "on_openai": on_openai.pk,
        "on_openrouter": on_openrouter.pk,
        "without": without.pk,
    }


def test_it_moves_the_default_and_each_chats_model_to_canonical_ids_and_back(at_0007):
    ids = seed(at_0007)

    apps = migrate(AFTER)
    SiteSettings = apps.get_model("conversations", "SiteSettings")
    Conversation = apps.get_model("conversations", "Conversation")
    assert SiteSettings.objects.get(pk=1).default_model == "gpt-4o-mini"  # not one provider's copy any more
    canonical = dict(Conversation.objects.values_list("pk", "canonical_model"))
    assert canonical == {ids["on_openai"]: "gpt-4o", ids["on_openrouter"]: "gpt-4o", ids["without"]: ""}
    # Reversing it later has to find a copy for a chat that only knows its canonical model.
    Conversation.objects.filter(pk=ids["without"]).update(canonical_model="gpt-4o")

    apps = migrate(BEFORE)
    ChatModel = apps.get_model("conversations", "ChatModel")
    Conversation = apps.get_model("conversations", "Conversation")
    # The default is again one copy: GPT-4o mini's best, on the first enabled provider by priority.
    [default] = ChatModel.objects.filter(is_default=True)
    assert (default.canonical_id, default.provider.name) == ("gpt-4o-mini", "OpenAI")
    models = dict(Conversation.objects.values_list("pk", "model__model_id"))
    # Each chat keeps its copy; the one without gets the best copy of its model (OpenAI, priority 10).
    assert models == {
        ids["on_openai"]: "gpt-4o",
        ids["on_openrouter"]: "openai/gpt-4o",
        ids["without"]: "gpt-4o",
    }
    assert Conversation.objects.get(pk=ids["without"]).model.provider.name == "OpenAI"


def test_a_default_the_environment_gives_anyway_stays_the_environments(at_0007):
    """The seed default (gpt-4o, from 0002) is not an admin's choice: CHAT_DEFAULT_MODEL keeps deciding."""
    ids = seed(at_0007)
    ChatModel = at_0007.get_model("conversations", "ChatModel")
    ChatModel.objects.filter(pk=ids["mini"]).update(is_default=False)
    ChatModel.objects.filter(provider__name="OpenAI", model_id="gpt-4o").update(is_default=True)
    apps = migrate(AFTER)
    SiteSettings = apps.get_model("conversations", "SiteSettings")
    assert not SiteSettings.objects.filter(pk=1).exclude(default_model="").exists()
