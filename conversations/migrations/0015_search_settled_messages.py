"""The search index holds settled messages only: an answer still being written is indexed when it ends.

Every running answer's text is saved once a second (engine/checkpoints.py), and each of those saves re-indexed
the whole partial text: on SQLite the FTS5 triggers of 0005 deleted the old text's tokens and added the new
one's (about 0.15 ms a save here), on PostgreSQL the generated `search_vector` was recomputed by
`to_tsvector`. At 100 answers a second that was most of the index's work, for text nobody searches while it
streams (bench/README.md, "Load", session 8). Now a message is indexed when it is settled (any status but
pending or streaming): an answer once, at its final save, or when the sweeper marks it interrupted.

- SQLite: the view the FTS table reads (and a 'rebuild' re-reads) lists settled messages only, and the
  triggers index and unindex a row only when it is or was settled. Messages running now leave the index.
- PostgreSQL: `search_vector` is NULL for a running message (the GIN index skips it). A generated column's
  expression can't be altered before PostgreSQL 17, so it is made again, which recomputes it for every row.

Reversible: the previous view, triggers and column come back, running messages indexed again.
"""

# ruff: noqa: S608 (the SQL is built from this module's own constants, never from input)

from django.db import migrations

ACTIVE = "('pending', 'streaming')"
OWNER_OF_NEW = "(SELECT 'u' || owner_id FROM conversations_conversation WHERE id = new.conversation_id)"
OWNER_OF_OLD = "(SELECT 'u' || owner_id FROM conversations_conversation WHERE id = old.conversation_id)"

# Statements a later migration that rebuilds conversations_message on SQLite must drop first and run again
# (SQLITE_VIEW_AND_TRIGGERS), as 0006 and 0008 did with 0005's.
SQLITE_VIEW_AND_TRIGGERS = [
    f"""CREATE VIEW conversations_message_search AS
        SELECT m.id AS id, m.content AS content, 'u' || c.owner_id AS owner
        FROM conversations_message m JOIN conversations_conversation c ON c.id = m.conversation_id
        WHERE m.status NOT IN {ACTIVE}""",
    f"""CREATE TRIGGER conversations_message_fts_ai AFTER INSERT ON conversations_message
        WHEN new.status NOT IN {ACTIVE} BEGIN
        INSERT INTO conversations_message_fts(rowid, content, owner) VALUES (new.id, new.content, {OWNER_OF_NEW});
    END""",
    f"""CREATE TRIGGER conversations_message_fts_ad AFTER DELETE ON conversations_message
        WHEN old.status NOT IN {ACTIVE} BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content, owner)
        VALUES ('delete', old.id, old.content, {OWNER_OF_OLD});
    END""",
    # A checkpoint (running to running) fires it and does nothing; the final save only adds.
    f"""CREATE TRIGGER conversations_message_fts_au AFTER UPDATE OF content, status ON conversations_message
        WHEN old.status NOT IN {ACTIVE} OR new.status NOT IN {ACTIVE} BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content, owner)
        SELECT 'delete', old.id, old.content, {OWNER_OF_OLD} WHERE old.status NOT IN {ACTIVE};
        INSERT INTO conversations_message_fts(rowid, content, owner)
        SELECT new.id, new.content, {OWNER_OF_NEW} WHERE new.status NOT IN {ACTIVE};
    END""",
]
SQLITE_DROP_VIEW_AND_TRIGGERS = [
    "DROP TRIGGER IF EXISTS conversations_message_fts_au",
    "DROP TRIGGER IF EXISTS conversations_message_fts_ad",
    "DROP TRIGGER IF EXISTS conversations_message_fts_ai",
    "DROP VIEW IF EXISTS conversations_message_search",
]
# 0005's: every message, whatever its status.
SQLITE_PREVIOUS_VIEW_AND_TRIGGERS = [
    """CREATE VIEW conversations_message_search AS
        SELECT m.id AS id, m.content AS content, 'u' || c.owner_id AS owner
        FROM conversations_message m JOIN conversations_conversation c ON c.id = m.conversation_id""",
    f"""CREATE TRIGGER conversations_message_fts_ai AFTER INSERT ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(rowid, content, owner) VALUES (new.id, new.content, {OWNER_OF_NEW});
    END""",
    f"""CREATE TRIGGER conversations_message_fts_ad AFTER DELETE ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content, owner)
        VALUES ('delete', old.id, old.content, {OWNER_OF_OLD});
    END""",
    f"""CREATE TRIGGER conversations_message_fts_au AFTER UPDATE OF content ON conversations_message BEGIN
        INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content, owner)
        VALUES ('delete', old.id, old.content, {OWNER_OF_OLD});
        INSERT INTO conversations_message_fts(rowid, content, owner)
        VALUES (new.id, new.content, {OWNER_OF_NEW});
    END""",
]
_RUNNING = f"""SELECT m.id, m.content, 'u' || c.owner_id FROM conversations_message m
    JOIN conversations_conversation c ON c.id = m.conversation_id WHERE m.status IN {ACTIVE}"""
SQLITE_FORWARD = [
    # Running messages leave the index while the triggers that indexed them still describe it.
    f"""INSERT INTO conversations_message_fts(conversations_message_fts, rowid, content, owner)
        SELECT 'delete', * FROM ({_RUNNING})""",
    *SQLITE_DROP_VIEW_AND_TRIGGERS,
    *SQLITE_VIEW_AND_TRIGGERS,
]
SQLITE_BACKWARD = [
    *SQLITE_DROP_VIEW_AND_TRIGGERS,
    *SQLITE_PREVIOUS_VIEW_AND_TRIGGERS,
    f"INSERT INTO conversations_message_fts(rowid, content, owner) SELECT * FROM ({_RUNNING})",
]


def _postgres_column(expression: str) -> list[str]:
    return [
        "ALTER TABLE conversations_message DROP COLUMN IF EXISTS search_vector",  # its GIN index goes with it
        f"ALTER TABLE conversations_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({expression}) STORED",
        "CREATE INDEX conversations_message_search_gin ON conversations_message USING gin (search_vector)",
    ]


_TSVECTOR = "to_tsvector('english'::regconfig, coalesce(content, ''))"
POSTGRES_FORWARD = _postgres_column(f"CASE WHEN status IN {ACTIVE} THEN NULL ELSE {_TSVECTOR} END")
POSTGRES_BACKWARD = _postgres_column(_TSVECTOR)


def _by_vendor(statements: dict):
    def run(apps, schema_editor):
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0014_provider_configured"),
    ]

    operations = [
        migrations.RunPython(
            _by_vendor({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _by_vendor({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
