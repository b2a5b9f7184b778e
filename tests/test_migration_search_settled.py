"""Migration 0015 takes running messages out of the search index and indexes each message once it is settled;
backwards, running messages are indexed again. Runs on SQLite in lane 1 and on PostgreSQL in lane 2."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.test_migration_canonical_models import migrate

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("conversations", "0014_provider_configured")]
AFTER = [("conversations", "0015_search_settled_messages")]


@pytest.fixture
def at_0014():
    apps = migrate(BEFORE)
    yield apps
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())  # the latest schema for later tests


def indexed(word: str) -> set[int]:
    """Message pks the database's own full-text index finds `word` in."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT rowid FROM conversations_message_fts WHERE conversations_message_fts MATCH %s", [word]
            )
        else:
            cursor.execute(
                "SELECT id FROM conversations_message WHERE search_vector @@ plainto_tsquery('english', %s)",
                [word],
            )
        return {row[0] for row in cursor.fetchall()}


def consistent() -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO conversations_message_fts(conversations_message_fts, rank) VALUES ('integrity-check', 1)"
            )


def test_running_messages_leave_the_index_and_come_back(at_0014, alice):
    Conversation = at_0014.get_model("conversations", "Conversation")
    Message = at_0014.get_model("conversations", "Message")
    conversation = Conversation.objects.create(owner_id=alice.pk, title="t")
    done = Message.objects.create(
        conversation=conversation, role="assistant", status="complete", content="pelican"
    )
    running = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="pelican feathers"
    )
    assert indexed("pelican") == {done.pk, running.pk}

    apps = migrate(AFTER)
    assert indexed("pelican") == {done.pk}
    consistent()
    after = apps.get_model("conversations", "Message")
    after.objects.filter(pk=running.pk).update(content="pelican feathers drift", status="complete")
    assert indexed("drift") == {running.pk}
    after.objects.filter(pk=running.pk).update(content="pelican again", status="streaming")
    consistent()

    migrate(BEFORE)
    assert indexed("pelican") == {done.pk, running.pk}
    consistent()
