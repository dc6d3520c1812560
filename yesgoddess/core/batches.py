"""Deleting many rows without long transactions or memory that grows with the table.

`delete_in_chunks` walks the table's heap in ranges of physical blocks (PostgreSQL's TID
range scan) and deletes the matching rows of each range in one short autocommit
statement. All chunks together read the table once, like a single DELETE would, so the
total cost stays close to one plain DELETE (bench/bulk_delete.py), while each statement
is sized by time to stay well under a second and nothing is loaded into Python.

Only for leaf tables: the rows are deleted in SQL, so no Django signal or cascade runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Model, ProtectedError, QuerySet, RestrictedError

MIN_BLOCKS = 32
MAX_BLOCKS = 1 << 20
START_BLOCKS = 2048


@dataclass
class SweepReport:
    deleted: int = 0
    statements: int = 0
    longest_statement_s: float = 0.0

    def as_counts(self) -> dict[str, int]:
        """What a cleanup job returns (and the runtime logs)."""
        return {
            "deleted": self.deleted,
            "statements": self.statements,
            "longest_statement_ms": round(self.longest_statement_s * 1000),
        }


def _check_leaf(model: type[Model]) -> None:
    blockers = [rel.name for rel in model._meta.related_objects]
    if blockers:
        raise ValueError(f"{model.__name__} is referenced by {blockers}; delete_in_chunks would bypass the cascade.")


def _table_blocks(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int", [table])
        return int(cursor.fetchone()[0])


def delete_in_chunks(queryset: QuerySet, target_seconds: float) -> SweepReport:
    """Delete every row of `queryset` in block-range chunks of about `target_seconds`."""
    model = queryset.model
    _check_leaf(model)
    table = model._meta.db_table
    report = SweepReport()
    start, size = 0, START_BLOCKS
    end = _table_blocks(table)
    while start < end:
        chunk = queryset.extra(
            where=["ctid >= %s::tid AND ctid < %s::tid"], params=[f"({start},0)", f"({start + size},0)"]
        )
        began = time.monotonic()
        report.deleted += chunk._raw_delete(connection.alias)
        elapsed = time.monotonic() - began
        report.statements += 1
        report.longest_statement_s = max(report.longest_statement_s, elapsed)
        start += size
        # Aim the next chunk at the target duration; grow at most 4x per step.
        scale = target_seconds / elapsed if elapsed > 0 else 4.0
        size = int(min(MAX_BLOCKS, max(MIN_BLOCKS, size * min(4.0, max(0.25, scale)))))
        if start >= end:
            end = _table_blocks(table)  # rows added at the end while we swept
    return report


def in_pk_batches(queryset: QuerySet, batch: int = 200) -> Iterator[Model]:
    """Rows of `queryset` in primary-key batches (keyset, never OFFSET): memory stays
    flat, and rows already handled (deleted, or updated out of the filter) are not met
    again. For jobs that must handle rows one by one in Python (files, cascades)."""
    cursor = 0
    while rows := list(queryset.filter(pk__gt=cursor).order_by("pk")[:batch]):
        cursor = rows[-1].pk  # read first: deleting an instance clears its pk
        yield from rows


def locked_batches(queryset: QuerySet, batch: int) -> Iterator[list[Model]]:
    """Rows of `queryset` in primary-key batches, each batch locked FOR UPDATE SKIP LOCKED
    in its own transaction that stays open while the caller handles the batch.

    For idempotent work on many rows (status transitions): another worker skips the
    locked rows, and if the caller raises, the batch rolls back and is met again by the
    next run. Not for email: sending inside the open transaction would send twice after a
    crash; use `yesgoddess.notifications.fanout.claimed_batches` (markers committed first).
    """
    cursor = 0
    while True:
        with transaction.atomic():
            locked = queryset.filter(pk__gt=cursor).select_for_update(skip_locked=True, of=("self",))
            rows = list(locked.order_by("pk")[:batch])
            if not rows:
                return
            cursor = rows[-1].pk
            yield rows


def referencing_models(exc: ProtectedError | RestrictedError) -> list[str]:
    """Labels of the models whose rows blocked a delete (for the log line)."""
    rows = getattr(exc, "protected_objects", None) or getattr(exc, "restricted_objects", ())
    return sorted({row._meta.label for row in rows})
