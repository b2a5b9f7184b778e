"""Migration 0014 marks which providers were ever set up (Provider.configured), and goes back. Runs on SQLite
in lane 1 and on PostgreSQL in lane 2 (./scripts/test)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.test_migration_canonical_models import migrate

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0013_price_units")]
AFTER = [("conversations", "0014_provider_configured")]


@pytest.fixture
def at_0013():
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # the latest schema for later tests


def columns() -> set[str]:
    with connection.cursor() as cursor:
        return {
            c.name for c in connection.introspection.get_table_description(cursor, "conversations_provider")
        }


def test_only_a_provider_switched_off_without_a_key_counts_as_never_set_up_and_back(at_0013):
    Provider = at_0013.get_model("conversations", "Provider")
    # The row 0002 seeds (unless an earlier transactional test flushed the database): off, no key.
    Provider.objects.update_or_create(
        name="OpenAI",
        defaults={
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "enabled": False,
            "priority": 10,
        },
    )
    Provider.objects.create(
        name="OpenRouter", kind="openrouter", base_url="http://x/api/v1", api_key_encrypted="gAAAA-key"
    )
    Provider.objects.create(name="Ollama", base_url="http://127.0.0.1:11434/v1")  # on, and needs no key
    Provider.objects.create(name="Off", base_url="http://x/v1", enabled=False, api_key_encrypted="gAAAA-key")

    apps = migrate(AFTER)
    configured = dict(apps.get_model("conversations", "Provider").objects.values_list("name", "configured"))
    assert configured == {"OpenAI": False, "OpenRouter": True, "Ollama": True, "Off": True}

    migrate(BEFORE)
    assert "configured" not in columns()
    assert Provider.objects.count() == 4
