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

from django.db import connection


def update_rows(rows: Sequence, fields: Iterable[str], *, only_if: tuple[str, Sequence] | None = None) -> int:
    """Write `fields` of each model instance in `rows` (all of one model) to its row, by primary key. With
    `only_if=(field, values)` a row is written only while that field holds one of `values`. Returns the
    number of rows written."""
    if not rows:
        return 0
    meta = type(rows[0])._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    extra: list = []
    if only_if is not None:
        field, values = meta.get_field(only_if[0]), list(only_if[1])
        sql += f" AND {quote(field.column)} IN ({', '.join(['%s'] * len(values))})"
        extra = [field.get_db_prep_save(value, connection) for value in values]
    params = [
        [column.get_db_prep_save(getattr(row, column.attname), connection) for column in columns]
        + [row.pk, *extra]
        for row in rows
    ]
    with connection.cursor() as cursor:
        if len(params) == 1:
            cursor.execute(sql, params[0])
        else:
            cursor.executemany(sql, params)
        return cursor.rowcount
