"""The reads every batch of turns makes, in SQL written from the models' metadata, not built by the ORM.

Django builds a query's SQL anew each time it runs (the select list, the order-by, every lookup resolved and
compiled). For the reads a turn makes before its request can leave (the session and its user, the
conversation, its messages, the answers running), that building was most of their cost: about 7 of a lone
turn's 9.5 ms on the database thread, against well under 1 ms for the statements themselves (bench/README.md,
"Load", "Session 6"). Here each statement is a few string joins of names from the models' own metadata
(tables, columns; each model's select list is kept), and rows become instances through `Model.from_db`
after the converters the ORM applies to each column, so callers get what the ORM would have given them
(tests/test_plain_reads.py compares the two).

Only these hot reads live here; everything else reads through the ORM.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model
from django.utils import timezone

from conversations.models import Attachment, Conversation, CustomInstructions, Message, UserQuota


class _Table:
    """One model's rows: `SELECT <every concrete column> FROM <table> AS alias`, and instances from rows."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.pk_index = self.fields.index(model._meta.pk)
        self._converters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._columns: dict[str, str] = {}

    def columns(self) -> str:
        """The select list for the current connection's vendor (quoting differs)."""
        text = self._columns.get(connection.vendor)
        if text is None:
            quote = connection.ops.quote_name
            text = ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)
            self._columns[connection.vendor] = text
        return text

    def table(self) -> str:
        return f"{connection.ops.quote_name(self.model._meta.db_table)} {self.alias}"

    def column(self, name: str) -> str:
        return f"{self.alias}.{connection.ops.quote_name(self.model._meta.get_field(name).column)}"

    def _converters_for(self, wrapper) -> list[tuple[int, list, Any]]:
        """What the ORM's compiler applies to each column (SQLCompiler.get_converters), per connection."""
        found = self._converters.get(wrapper)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                expression = field.get_col(self.alias)
                converters = wrapper.ops.get_db_converters(expression) + expression.get_db_converters(wrapper)
                if converters:
                    found.append((index, converters, expression))
            self._converters[wrapper] = found
        return found

    @property
    def width(self) -> int:
        return len(self.fields)

    def build(self, values: Sequence, wrapper) -> Any:
        """One instance from this table's columns in `values`; None when its primary key is NULL (no row
        matched a LEFT JOIN)."""
        values = list(values)
        if values[self.pk_index] is None:
            return None
        for index, functions, expression in self._converters_for(wrapper):
            value = values[index]
            for function in functions:
                value = function(value, expression, wrapper)
            values[index] = value
        return self.model.from_db(wrapper.alias, self.attnames, values)

    def instances(self, rows: Iterable[Sequence]) -> list:
        """Model instances from rows that start with this table's columns (extra values after them are
        returned alongside: `(instance, *extra)` when a row is longer)."""
        wrapper = _wrapper()
        width = self.width
        out = []
        for row in rows:
            instance = self.build(row[:width], wrapper)
            out.append(instance if len(row) == width else (instance, *row[width:]))
        return out


def _wrapper():
    """This thread's connection (what the converters take, and the key of their cache)."""
    return connections[DEFAULT_DB_ALIAS]


def _placeholders(values: Sequence) -> str:
    return ", ".join(["%s"] * len(values))


def _active_statuses() -> str:
    """Message.ACTIVE_STATUSES as SQL literals, not parameters: the partial index of answers being written
    (msg_conv_active_idx) applies only when the query's own text implies its condition; with `IN (%s, %s)`
    the database can't know, and reads every message of the user or the conversation instead (a turn of a
    user with 2,000 conversations spent 17 ms there; bench/large_account.py, "turn checks")."""
    statuses = [str(status) for status in Message.ACTIVE_STATUSES]
    assert all(status.isidentifier() for status in statuses)  # our own constants: nothing to escape
    return ", ".join(f"'{status}'" for status in statuses)


def _prep(model: type[Model], field: str, values: Iterable) -> list:
    """Parameters as the ORM would send them for `field` (a UUID is 32 hex characters on SQLite, say)."""
    prep = model._meta.get_field(field).get_db_prep_value
    return [prep(value, connection, prepared=False) for value in values]


_USERS: _Table | None = None
_SESSIONS = _Table(Session, "s")
_SESSIONS = _Table(Session, "s")
_QUOTAS = _Table(UserQuota, "q")
_INSTRUCTIONS = _Table(CustomInstructions, "i")
_CONVERSATIONS = _Table(Conversation, "c")
_MESSAGES = _Table(Message, "m")
_LEAVES = _Table(Message, "leaf")  # a conversation's current leaf
_ACTIVE = _Table(Message, "active")  # its answers being written (`busy`)
_ATTACHMENTS = _Table(Attachment, "a")


def _users_table() -> _Table:
    global _USERS
    if _USERS is None:  # the user model is known once apps are ready
        _USERS = _Table(get_user_model(), "u")
    return _USERS


def _fetch(sql: str, params: Sequence) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def session_data(keys: Sequence[str], now) -> dict[str, str]:
    """The encoded data of the sessions `keys` that have not expired (database session backend)."""
    if not keys:
        return {}
    s = _SESSIONS
    sql = (
        f"SELECT {s.column('session_key')}, {s.column('session_data')} FROM {s.table()} "  # noqa: S608
        f"WHERE {s.column('session_key')} IN ({_placeholders(keys)}) AND {s.column('expire_date')} > %s"
    )
    params = [*keys, *_prep(Session, "expire_date", [now])]
    return dict(_fetch(sql, params))


def users_with_limits(ids: Sequence) -> dict:
    """The users `ids`, each with its quota and custom instructions attached (or known absent), as
    `select_related("quota", "custom_instructions")` gives them."""
    if not ids:
        return {}
    u, q, i = _users_table(), _QUOTAS, _INSTRUCTIONS
    User = u.model
    sql = (
        f"SELECT {u.columns()}, {q.columns()}, {i.columns()} FROM {u.table()} "  # noqa: S608
        f"LEFT JOIN {q.table()} ON {q.column('user')} = {u.column(User._meta.pk.name)} "
        f"LEFT JOIN {i.table()} ON {i.column('user')} = {u.column(User._meta.pk.name)} "
        f"WHERE {u.column(User._meta.pk.name)} IN ({_placeholders(ids)})"
    )
    wrapper = _wrapper()
    quota_relation = User._meta.get_field("quota")  # reverse one-to-ones: cached as select_related does
    instructions_relation = User._meta.get_field("custom_instructions")
    users = {}
    for row in _fetch(sql, _prep(User, User._meta.pk.name, ids)):
        user = u.build(row[: u.width], wrapper)
        quota = q.build(row[u.width : u.width + q.width], wrapper)
        instructions = i.build(row[u.width + q.width :], wrapper)
        for relation, related in ((quota_relation, quota), (instructions_relation, instructions)):
            if related is not None:
                relation.field.set_cached_value(related, user)
            relation.set_cached_value(user, related)  # None: known absent, no query on access
        users[user.pk] = user
    return users


def conversations_for_turns(public_ids: Sequence) -> list[Conversation]:
    """Conversations by public id, not deleted, each with `busy` (an answer of it is pending or streaming)
    and its current leaf attached, as access._for_turn() gives them."""
    if not public_ids:
        return []
    c, leaf, active = _CONVERSATIONS, _LEAVES, _ACTIVE
    sql = (
        f"SELECT {c.columns()}, {leaf.columns()}, EXISTS(SELECT 1 FROM {active.table()} "  # noqa: S608
        f"WHERE {active.column('conversation')} = {c.column('id')} "
        f"AND {active.column('status')} IN ({_active_statuses()})) "
        f"FROM {c.table()} LEFT JOIN {leaf.table()} ON {leaf.column('id')} = {c.column('current_leaf')} "
        f"WHERE {c.column('public_id')} IN ({_placeholders(public_ids)}) AND {c.column('deleted_at')} IS NULL"
    )
    wrapper = _wrapper()
    relation = Conversation._meta.get_field("current_leaf")
    conversations = []
    for row in _fetch(sql, _prep(Conversation, "public_id", public_ids)):
        conversation = c.build(row[: c.width], wrapper)
        relation.set_cached_value(conversation, leaf.build(row[c.width : c.width + leaf.width], wrapper))
        conversation.busy = bool(row[-1])
        conversations.append(conversation)
    return conversations


def messages_of(conversation_pks: Sequence[int]) -> list[Message]:
    """Every message of the conversations, oldest first (created_at, then id), as Message's ordering."""
    if not conversation_pks:
        return []
    m = _MESSAGES
    return m.instances(
        _fetch(
            f"SELECT {m.columns()} FROM {m.table()} WHERE {m.column('conversation')} "  # noqa: S608
            f"IN ({_placeholders(conversation_pks)}) ORDER BY {m.column('created_at')}, {m.column('id')}",
            list(conversation_pks),
        )
    )


def images_of(conversation_pks: Sequence[int]) -> list[tuple[Attachment, int]]:
    """The images of the conversations' messages, each with its conversation's pk, in Attachment's order
    (position, created_at, id)."""
    if not conversation_pks:
        return []
    a, m = _ATTACHMENTS, _MESSAGES
    return a.instances(
        _fetch(
            f"SELECT {a.columns()}, {m.column('conversation')} FROM {a.table()} "  # noqa: S608
            f"JOIN {m.table()} ON {m.column('id')} = {a.column('message')} "
            f"WHERE {m.column('conversation')} IN ({_placeholders(conversation_pks)}) "
            f"ORDER BY {a.column('position')}, {a.column('created_at')}, {a.column('id')}",
            list(conversation_pks),
        )
    )


def recent_answers(user_ids: Sequence, since) -> dict:
    """How many answers each user asked for since `since` (imported ones aside): the turns-per-minute limit."""
    if not user_ids:
        return {}
    c, m = _CONVERSATIONS, _MESSAGES
    # Only conversations updated since: a turn bumps its conversation's updated_at when it writes its messages
    # (services/turns.py), and it never goes back, so the others hold no answer that recent (conv_owner_updated_idx;
    # without this bound, every conversation the user ever had was looked at: 23 ms at 2,000). The bound is
    # a window earlier, so that another server's clock a little behind this one's can't hide an answer.
    sql = (
        f"SELECT {c.column('owner')}, COUNT(*) FROM {m.table()} "  # noqa: S608
        f"JOIN {c.table()} ON {c.column('id')} = {m.column('conversation')} "
        f"WHERE {c.column('owner')} IN ({_placeholders(user_ids)}) AND {c.column('updated_at')} >= %s "
        f"AND {m.column('role')} = %s AND {m.column('created_at')} >= %s AND {m.column('imported_by')} IS NULL "
        f"GROUP BY {c.column('owner')}"
    )
    touched = _prep(Conversation, "updated_at", [since - (timezone.now() - since)])
    return dict(
        _fetch(sql, [*user_ids, *touched, Message.Role.ASSISTANT, *_prep(Message, "created_at", [since])])
    )


def running_answers(user_ids: Sequence) -> dict:
    """How many answers each user has pending or streaming, in any process."""
    if not user_ids:
        return {}
    c, m = _CONVERSATIONS, _MESSAGES
    sql = (
        f"SELECT {c.column('owner')}, COUNT(*) FROM {m.table()} "  # noqa: S608
        f"JOIN {c.table()} ON {c.column('id')} = {m.column('conversation')} "
        f"WHERE {c.column('owner')} IN ({_placeholders(user_ids)}) "
        f"AND {m.column('status')} IN ({_active_statuses()}) GROUP BY {c.column('owner')}"
    )
    return dict(_fetch(sql, list(user_ids)))
