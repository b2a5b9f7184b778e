"""Plain UPDATEs of rows already in memory, for the engine's hot writes: one executemany, no ORM compiling.

QuerySet.bulk_update writes one statement with a CASE WHEN per field per row, and Model.save and
QuerySet.update build their SQL through the ORM's compiler on every call. On the paths that run for every turn
and every answer (a burst's conversations, checkpoints, final saves) that building was a third of the turns'
database thread in a burst of 200 turns and most of a final save's Python (bench/README.md, "Load"). Values
still go through each field's own get_db_prep_save, as the ORM's would. No signals are sent (as with
bulk_update), and auto_now fields are not touched: the caller sets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from django.db import connection


def update_rows(rows: Sequence, fields: Iterable[str], *, only_if: tuple[str, Sequence] | None = None) -> int:
    """Write `fields` of each model instance in `rows` (all of one model) to its row, by primary key. With
    `only_if=(field, values)` a row is written only while that field holds one of `values`. Returns the
    number of rows written."""
    if not rows:
        return 0
    model = type(rows[0])
    columns = [model._meta.get_field(name) for name in fields]
    values = [
        [column.get_db_prep_save(getattr(row, column.attname), connection) for column in columns]
        for row in rows
    ]
    return update_values(model, fields, [row.pk for row in rows], values, only_if=only_if)


def update_values(
    model,
    fields: Iterable[str],
    pks: Sequence,
    values: Sequence[Sequence],
    *,
    only_if: tuple[str, Sequence] | None = None,
) -> int:
    """update_rows without model instances: row `pks[i]` gets `values[i]`, one value per field of `fields`,
    already prepared for the database (a field's get_db_prep_save; the caller prepares a value shared by every
    row once). Checkpoints write every running answer each second, and building a model instance per answer
    (its UUID default drawn from os.urandom included) was a sixth of the answer-saves thread at 100 turns/s
    (bench/README.md, "Session 14")."""
    if not pks:
        return 0
    sql, extra = _update_sql(
        connection.alias, model, tuple(fields), only_if and (only_if[0], tuple(only_if[1]))
    )
    params = [[*row, pk, *extra] for pk, row in zip(pks, values, strict=True)]
    with connection.cursor() as cursor:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)
        return cursor.rowcount


@lru_cache(maxsize=64)
def _update_sql(
    alias: str, model, fields: tuple[str, ...], only_if: tuple[str, tuple] | None
) -> tuple[str, list]:
    """The UPDATE statement (and the only_if values, prepared) for one model, field list and database."""
    meta = model._meta
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    extra: list = []
    if only_if is not None:
        field, values = meta.get_field(only_if[0]), only_if[1]
        sql += f" AND {quote(field.column)} IN ({', '.join(['%s'] * len(values))})"
        extra = [field.get_db_prep_save(value, connection) for value in values]
    return sql, extra
