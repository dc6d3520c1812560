"""Migration operations that make a table searchable (used by the apps' migrations).

`search_vector_operations(table, vector_sql)` adds a nullable `search_vector tsvector`
column (no default: instant on a big table), builds its GIN index CONCURRENTLY (the
migration must be `atomic = False`), and fills the column in primary-key batches, each
its own transaction. `vector_sql` is frozen in the migration: the registry's current
expression is what the flush and the weekly rebuild write afterwards.

The column is not a model field on purpose: the ORM never loads the vectors (every
`Model.objects.get()` would otherwise fetch them), and only `yesgoddess.search` reads
or writes them, in SQL.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

BACKFILL_BATCH = 5000


def _backfill(table: str, vector_sql: str):
    def run(apps: Any, schema_editor: Any) -> None:
        cursor_id = 0
        with schema_editor.connection.cursor() as cursor:
            while True:
                cursor.execute(
                    f"SELECT max(id) FROM (SELECT id FROM {table} WHERE id > %s ORDER BY id LIMIT %s) b",
                    [cursor_id, BACKFILL_BATCH],
                )
                upper = cursor.fetchone()[0]
                if upper is None:
                    return
                cursor.execute(
                    f"UPDATE {table} AS t SET search_vector = {vector_sql} WHERE t.id > %s AND t.id <= %s",
                    [cursor_id, upper],
                )
                cursor_id = upper

    return run


def search_vector_operations(table: str, vector_sql: str) -> list[migrations.operations.base.Operation]:
    index = f"{table}_search_vector_gin"
    return [
        migrations.RunSQL(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS search_vector tsvector",
            f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector",
        ),
        migrations.RunSQL(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} USING gin (search_vector)",
            f"DROP INDEX CONCURRENTLY IF EXISTS {index}",
        ),
        migrations.RunPython(_backfill(table, vector_sql), migrations.RunPython.noop, elidable=True),
    ]
