"""Keeping the search vectors current: marking, the batched flush, per-item updates and
the weekly rebuild. Every write of a vector is one `UPDATE ... FROM (SELECT id, <vector>)`
per type and batch, and writes only rows whose vector really changes.

- `mark_for_reindex(type, ids)`: after the current transaction commits, add the objects
  to the pending set (`pending.py`) and make sure one flush job is queued. Saving a
  searchable model does this through a post_save receiver (`signals.py`).
- `flush_pending()`: what the `search-index-update` job runs. Claims up to
  SEARCH_UPDATE_BATCH pending objects, one UPDATE per type, records poison objects
  (`SearchIndexFailure`) without blocking the rest, acks, and queues the next flush
  while objects remain (at once, so a second worker can take the next batch).
- `recover_failed_flush()`: a flush that failed for good (an error after its retries, or
  its worker died) leaves its objects leased, not removed: one flush is queued for when
  the earliest lease ends, which takes them again.
- `update_object(type, id)`: one object now, for operators (and tests).
- `rebuild(types)`: primary-key batches sized by time (SEARCH_REBUILD_BATCH_MS), each
  UPDATE its own short transaction (the weekly rebuild, Sundays 03:00).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.progress import Progress, no_progress

from . import pending
from .models import SearchIndexFailure
from .registry import SEARCHABLE, SearchSpec, get_search_spec

log = logging.getLogger(__name__)

FLUSH_JOB = "search-index-update"
# SQLSTATE classes that blame the row's data: data exceptions (22), integrity (23),
# program limits such as "string is too long for tsvector" (54), a trigger's RAISE (P0).
# Such a row is isolated and recorded; any other error (connection, deadlock, a missing
# column) says nothing about the row: the job fails and is retried.
ROW_SQLSTATE_CLASSES = ("22", "23", "54", "P0")
REBUILD_START_ROWS = 1000
REBUILD_MIN_ROWS = 50
REBUILD_MAX_ROWS = 50_000


# --- marking ---------------------------------------------------------------------------


def mark_for_reindex(object_type: str, ids: Iterable[int]) -> None:
    """Queue objects of `object_type` for reindexing once the transaction commits.

    Outside a transaction it happens at once. A rollback marks nothing. Redis being
    unreachable at commit is logged (the save itself stands; the weekly rebuild repairs
    the vector)."""
    get_search_spec(object_type)
    members = [pending.member(object_type, int(pk)) for pk in dict.fromkeys(ids)]
    if members:
        transaction.on_commit(lambda: _push(members), robust=True)


def _push(members: Sequence[str]) -> None:
    if pending.add(members):
        _enqueue_flush(settings.SEARCH_FLUSH_DELAY_SECONDS)


def _enqueue_flush(delay: float, **kwargs: bool) -> None:
    enqueue(FLUSH_JOB, delay=delay or None, **kwargs)


def ensure_flush() -> bool:
    """Queue a flush now unless one is queued and not started; True if this queued it."""
    if pending.set_flush_flag():
        _enqueue_flush(0)
        return True
    return False


def ensure_recovery(delay: float) -> bool:
    """Queue one flush for when the earliest lease ends (objects of a flush that died)."""
    if pending.set_recovery_flag(int(delay) + pending.FLUSH_FLAG_TTL):
        _enqueue_flush(delay, recovery=True)
        return True
    return False


# --- writing vectors ------------------------------------------------------------------


def _update_sql(spec: SearchSpec, where: str) -> str:
    # OFFSET 0 keeps the planner from pulling the subquery up, which would paste the
    # vector expression into both the comparison and the SET and compute it twice per
    # row (measured: 1.5x the time of one plain UPDATE; fenced, 1.0-1.2x).
    return (
        f"UPDATE {spec.table} AS u SET search_vector = s.vector "
        f"FROM (SELECT t.id, {spec.vector_sql()} AS vector FROM {spec.table} t WHERE {where} OFFSET 0) s "
        "WHERE u.id = s.id AND u.search_vector IS DISTINCT FROM s.vector"
    )


def _poison_reason(exc: DatabaseError) -> str | None:
    """The server's message when the error is the row's fault, else None (re-raise)."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) if isinstance(cause, psycopg.Error) else None
    if not sqlstate or sqlstate[:2] not in ROW_SQLSTATE_CLASSES:
        return None
    return f"{sqlstate}: {str(cause).strip().splitlines()[0][:500]}"


@dataclass
class UpdateResult:
    changed: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    statements: int = 0


def update_vectors(spec: SearchSpec, ids: Sequence[int], result: UpdateResult | None = None) -> UpdateResult:
    """Write the vectors of `ids` in one UPDATE; if a row makes it fail, split the batch
    until the bad rows are alone, and report those instead of failing the rest."""
    result = result or UpdateResult()
    if not ids:
        return result
    sql = _update_sql(spec, "t.id = ANY(%s)")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            result.statements += 1
            cursor.execute(sql, [list(ids)])
            result.changed += cursor.rowcount
    except DatabaseError as exc:
        reason = _poison_reason(exc)
        if reason is None:
            raise
        if len(ids) == 1:
            result.failed[ids[0]] = reason
        else:
            half = len(ids) // 2
            update_vectors(spec, ids[:half], result)
            update_vectors(spec, ids[half:], result)
    return result


def record_failures(failures: dict[str, tuple[str, int | None, str]]) -> None:
    """Upsert one SearchIndexFailure per key: (object type, object id, reason)."""
    if not failures:
        return
    keys = list(failures)
    types, ids, reasons = zip(*(failures[k] for k in keys), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {SearchIndexFailure._meta.db_table}
              (key, object_type, object_id, reason, attempts, first_failed_at, last_failed_at)
            SELECT k, ty, i, r, 1, %s, %s
            FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) AS x(k, ty, i, r)
            ON CONFLICT (key) DO UPDATE SET reason = EXCLUDED.reason, last_failed_at = EXCLUDED.last_failed_at,
              attempts = {SearchIndexFailure._meta.db_table}.attempts + 1
            """,
            [timezone.now(), timezone.now(), keys, list(types), list(ids), list(reasons)],
        )
    for key, (_, _, reason) in failures.items():
        log.warning("search index update failed for %s: %s", key, reason)


def clear_failures(keys: Sequence[str]) -> None:
    if keys:
        SearchIndexFailure.objects.filter(key__in=keys)._raw_delete(connection.alias)


def _parse(members: Sequence[str]) -> tuple[dict[str, list[int]], dict[str, tuple[str, int | None, str]]]:
    by_type: dict[str, list[int]] = defaultdict(list)
    bad: dict[str, tuple[str, int | None, str]] = {}
    for item in members:
        object_type, _, raw_id = item.partition(":")
        if object_type not in SEARCHABLE:
            bad[item] = (object_type[:32], None, f"unknown search type {object_type!r}")
        elif not (raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18):
            bad[item] = (object_type, None, f"object id {raw_id!r} is not a positive integer")
        else:
            by_type[object_type].append(int(raw_id))
    return by_type, bad


def index_objects(by_type: dict[str, list[int]]) -> tuple[int, dict[str, tuple[str, int | None, str]], int]:
    """Update the vectors of these objects; (rows changed, failures by key, statements)."""
    changed, statements = 0, 0
    failures: dict[str, tuple[str, int | None, str]] = {}
    for object_type, ids in by_type.items():
        result = update_vectors(SEARCHABLE[object_type], sorted(set(ids)))
        changed += result.changed
        statements += result.statements
        for pk, reason in result.failed.items():
            failures[pending.member(object_type, pk)] = (object_type, pk, reason)
    return changed, failures, statements


# --- the flush ------------------------------------------------------------------------


def flush_pending(batch: int | None = None, *, recovery: bool = False) -> dict[str, int]:
    """Index up to `batch` pending objects (SEARCH_UPDATE_BATCH); see the module doc."""
    if recovery:
        pending.recovery_started()
    pending.flush_started()
    taken = pending.claim(batch or settings.SEARCH_UPDATE_BATCH)
    counts = {"claimed": 0, "changed": 0, "failed": 0, "next": 0}
    if taken is None:
        _follow_up(counts)
        return counts
    counts["claimed"] = len(taken.members)
    if pending.status().claimable:
        counts["next"] = int(ensure_flush())  # another worker can take the next batch now
    by_type, failures = _parse(taken.members)
    changed, failed_rows, statements = index_objects(by_type)
    failures.update(failed_rows)
    record_failures(failures)
    clear_failures([m for m in taken.members if m not in failures])
    pending.ack(taken, taken.members)
    counts.update(changed=changed, failed=len(failures), statements=statements)
    _follow_up(counts)
    return counts


def _follow_up(counts: dict[str, int]) -> None:
    state = pending.status()
    if state.claimable:
        counts["next"] += int(ensure_flush())
    elif state.total:
        # Only leased objects are left: a flush still at work, or one that died. Look
        # again when the earliest lease ends.
        counts["recovery"] = int(ensure_recovery(state.seconds_to_next_lease_end + 1))


def recover_failed_flush(job_id: str, error: str) -> None:
    """After a flush failed for good: make sure its leased objects are looked at again
    when their lease ends."""
    state = pending.status()
    if state.total:
        ensure_recovery(state.seconds_to_next_lease_end + 1)
    log.warning("search flush %s failed for good (%s); %d objects pending", job_id, error[:200], state.total)


def update_object(object_type: str, object_id: int) -> dict[str, int]:
    """Reindex one object now (the per-item job); raises ValueError on a poison row."""
    spec = get_search_spec(object_type)
    key = pending.member(object_type, object_id)
    with transaction.atomic():  # one commit for the vector and its failure record
        result = update_vectors(spec, [object_id])
        if result.failed:
            record_failures({key: (object_type, object_id, result.failed[object_id])})
        else:
            clear_failures([key])
    if result.failed:
        raise ValueError(f"{key}: {result.failed[object_id]}")
    return {"changed": result.changed}


# --- the weekly rebuild ---------------------------------------------------------------


@dataclass
class RebuildReport:
    rows: int = 0
    changed: int = 0
    statements: int = 0
    failed: int = 0
    longest_statement_s: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)

    def as_counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "changed": self.changed,
            "failed": self.failed,
            "statements": self.statements,
            "longest_statement_ms": round(self.longest_statement_s * 1000),
            **{f"changed_{key}": value for key, value in self.by_type.items()},
        }


def rebuild(
    types: Sequence[str] | None = None,
    *,
    target_seconds: float | None = None,
    progress: Progress = no_progress,
) -> RebuildReport:
    """Recompute every vector of `types` (all by default), walking primary keys; the rows
    done so far are reported to `progress` after each batch (no total: not counted)."""
    target = target_seconds if target_seconds is not None else settings.SEARCH_REBUILD_BATCH_MS / 1000
    report = RebuildReport()
    for spec in [get_search_spec(t) for t in types] if types else SEARCHABLE.values():
        report.by_type[spec.key] = _rebuild_type(spec, target, report, progress)
    return report


def _rebuild_type(spec: SearchSpec, target: float, report: RebuildReport, progress: Progress) -> int:
    bound_sql = f"SELECT max(id), count(*) FROM (SELECT id FROM {spec.table} WHERE id > %s ORDER BY id LIMIT %s) b"
    update_sql = _update_sql(spec, "t.id > %s AND t.id <= %s")
    cursor_id, size, changed = 0, REBUILD_START_ROWS, 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(bound_sql, [cursor_id, size])
            upper, rows = cursor.fetchone()
        if upper is None:
            return changed
        began = time.monotonic()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(update_sql, [cursor_id, upper])
                batch_changed = cursor.rowcount
        except DatabaseError as exc:
            if _poison_reason(exc) is None:
                raise
            # A bad row in this range: isolate it like the flush does.
            ids = list(spec.model._base_manager.filter(pk__gt=cursor_id, pk__lte=upper).values_list("pk", flat=True))
            batch_changed, failures, statements = index_objects({spec.key: ids})
            record_failures(failures)
            report.failed += len(failures)
            report.statements += statements
        elapsed = time.monotonic() - began
        report.statements += 1
        report.rows += rows
        report.changed += batch_changed
        changed += batch_changed
        report.longest_statement_s = max(report.longest_statement_s, elapsed)
        cursor_id = upper
        progress(report.rows, None, spec.key)
        # Aim the next batch at the target duration; change at most 4x per step.
        scale = target / elapsed if elapsed > 0 else 4.0
        size = int(min(REBUILD_MAX_ROWS, max(REBUILD_MIN_ROWS, size * min(4.0, max(0.25, scale)))))
