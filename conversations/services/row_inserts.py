"""Plain INSERTs of new model instances for the turns' hot path: QuerySet.bulk_create without its compiler.

Every turn inserts its question and its answer's placeholder (and a new conversation's row). bulk_create
compiles its statement through the ORM for every call, placeholder by placeholder and value by value, which
was most of a batch's Python at 100 turns/s (py-spy: bulk_create 29% of the turns' database thread, half of
it outside SQLite; bench/README.md, "Session 14"). Here the statement's text is built once per model and
batch size; each value still goes through its field's pre_save (auto_now_add, auto_now) and
get_db_prep_save, as bulk_create's would, and the primary keys come back through RETURNING in the order the
rows were given, as bulk_create relies on too. No signals are sent (as with bulk_create).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from django.db import connection, models


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert `objs` (new instances of one model, primary keys unset) and set their primary keys."""
    if not objs:
        return
    model = type(objs[0])
    fields = _fields(model)
    batch = max(1, connection.ops.bulk_batch_size(fields, objs))
    for start in range(0, len(objs), batch):
        chunk = objs[start : start + batch]
        params = [
            field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in chunk for field in fields
        ]
        with connection.cursor() as cursor:
            cursor.execute(_insert_sql(connection.alias, model, len(chunk)), params)
            pks = cursor.fetchall()
        for obj, (pk,) in zip(chunk, pks, strict=True):
            obj.pk = pk
            obj._state.adding = False
            obj._state.db = connection.alias


@lru_cache(maxsize=16)
def _fields(model) -> list:
    """The columns an INSERT writes: every concrete field but an automatic primary key."""
    return [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]


@lru_cache(maxsize=64)
def _insert_sql(alias: str, model, rows: int) -> str:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = _fields(model)
    row = f"({', '.join(['%s'] * len(fields))})"
    columns = ", ".join(quote(f.column) for f in fields)
    return (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)} "  # noqa: S608
        f"RETURNING {quote(meta.pk.column)}"
    )
