"""Daily usage aggregates (spec B §5.5, the hourly `license-usage-tracking.aggregate`).

One statement per run re-computes the daily aggregates of the window (the UTC days of
yesterday and today, `usage.aggregation_window`) from the raw events, upserts them
(values replaced, not added: running it twice changes nothing, unchanged rows are not
even rewritten) and moves the license counters by the difference between the new and
the previously stored event counts of each (license, day). Each aggregate keeps its
event count in `metadata["events"]` for that purpose.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from .usage import TYPE_COLUMNS, aggregation_window, day_start

_TYPE_SUMS = ",\n    ".join(
    f"COALESCE(SUM(e.quantity) FILTER (WHERE e.usage_type = '{usage_type}'), 0)::bigint AS {column}"
    for usage_type, column in TYPE_COLUMNS.items()
)
_COUNTED = (*TYPE_COLUMNS.values(), "total_quantity", "total_revenue_cents", "unique_sessions")
_COLUMNS = ", ".join(_COUNTED)

# %(start)s / %(end)s: the window's bounds (timestamps); %(first_day)s / %(end_day)s: its
# dates; %(now)s: the run's time. Every CTE runs once, on one snapshot.
AGGREGATE_SQL = f"""
WITH fresh AS (
  SELECT e.license_id,
    (e.occurred_at AT TIME ZONE 'UTC')::date AS day,
    {_TYPE_SUMS},
    SUM(e.quantity)::bigint AS total_quantity,
    SUM(e.revenue_cents)::bigint AS total_revenue_cents,
    COUNT(DISTINCT e.session_id)::int AS unique_sessions,
    COUNT(*)::bigint AS events,
    MAX(e.occurred_at) AS last_at
  FROM license_usage_events e
  WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
  GROUP BY e.license_id, day
),
previous AS (
  SELECT a.license_id, a.date, COALESCE((a.metadata ->> 'events')::bigint, 0) AS events
  FROM license_usage_daily_aggregates a
  WHERE a.date >= %(first_day)s AND a.date < %(end_day)s
),
upserted AS (
  INSERT INTO license_usage_daily_aggregates
    (license_id, date, {_COLUMNS}, metadata, created_at, updated_at)
  SELECT f.license_id, f.day, {", ".join(f"f.{c}" for c in _COUNTED)},
    jsonb_build_object('events', f.events), %(now)s, %(now)s
  FROM fresh f
  ON CONFLICT (license_id, date) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _COUNTED)},
    metadata = license_usage_daily_aggregates.metadata || EXCLUDED.metadata,
    updated_at = EXCLUDED.updated_at
  WHERE ({", ".join(f"license_usage_daily_aggregates.{c}" for c in _COUNTED)},
         license_usage_daily_aggregates.metadata -> 'events')
    IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _COUNTED)}, EXCLUDED.metadata -> 'events')
  RETURNING 1
),
moved AS (
  SELECT f.license_id, SUM(f.events - COALESCE(p.events, 0))::bigint AS delta, MAX(f.last_at) AS last_at
  FROM fresh f LEFT JOIN previous p ON p.license_id = f.license_id AND p.date = f.day
  GROUP BY f.license_id
),
touched AS (
  UPDATE licenses l SET
    total_usage_events = l.total_usage_events + m.delta,
    last_usage_at = GREATEST(l.last_usage_at, m.last_at)
  FROM moved m
  WHERE l.id = m.license_id
    AND (m.delta <> 0 OR l.last_usage_at IS NULL OR l.last_usage_at < m.last_at)
  RETURNING 1
)
SELECT (SELECT COUNT(*) FROM fresh), (SELECT COUNT(*) FROM upserted), (SELECT COUNT(*) FROM touched)
"""

# Two runs at once would both read the same "previous" counts and move the license
# counters twice; runs of the aggregation take this transaction-level lock in turn.
AGGREGATE_LOCK_KEY = 0x7573_6167_6561  # "usagea"


def aggregate_daily_usage(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    first_day, end_day = aggregation_window(now)
    params = {
        "start": day_start(first_day),
        "end": day_start(end_day),
        "first_day": first_day,
        "end_day": end_day,
        "now": now,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [AGGREGATE_LOCK_KEY])
        cursor.execute(AGGREGATE_SQL, params)
        days, changed, licenses = cursor.fetchone()
    return {"days": (end_day - first_day).days, "aggregates": days, "aggregates_changed": changed, "licenses": licenses}
