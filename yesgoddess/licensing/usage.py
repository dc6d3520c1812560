"""License usage tracking (spec B §5.5, defects fixed): recording events, daily
aggregates, thresholds and overages, forecasts and breach alerts.

The jobs in `jobs/license_usage.py` are thin; the rules live here.

Recording. `record_usage_event` is one INSERT (`ON CONFLICT (idempotency_key) DO
NOTHING`): no job per event and no per-event UPDATE of the license row, which every
writer of that license would queue behind. The license's `last_usage_at` and
`total_usage_events` are maintained by the hourly aggregation instead.

Aggregation. One statement per run re-computes the daily aggregates of the window (the
UTC days of yesterday and today) from the raw events, upserts them (values replaced, not
added: running it twice changes nothing, unchanged rows are not even rewritten) and moves
the license counters by the difference between the new and the previously stored event
counts of each (license, day). Each aggregate keeps its event count in
`metadata["events"]` for that purpose. The API accepts events no older than the start of
yesterday (UTC), so every accepted event lands in a day that a later run re-aggregates;
the window reaches back 25 hours, so the first run after midnight still covers the day
before yesterday (an event accepted at 23:59 for that day is not lost).

Thresholds. Usage in a period = the sum of the aggregate column of the usage type
(custom -> total_quantity) over the period's days up to today. Periods (UTC dates):
daily = today; weekly = the ISO week (Monday to Sunday); monthly = the calendar month;
total = the license's start date to its end date. A warning is claimed with a conditional
UPDATE of the threshold (level above the one already sent *for this period*) and the
notification is written in the same transaction, so two workers never send it twice.

Overage (spec's inverted condition settled): whenever usage exceeds
limit_with_grace = floor(limit * (1 + grace% / 100)) an overage row is recorded, one per
(threshold, period_start), updated as usage grows. With `allow_overage` and a rate, the
fee is overage_quantity * rate; with `allow_overage` False the excess is a breach of the
license: recorded, no fee, and approval (review) required. Approval is also required for
a fee above $100. The brand is told once per overage row (`notified_at`, claimed).
Rows a human already moved on (APPROVED, BILLED, DISPUTED) are no longer changed.

Forecasts: see `project_usage`.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email, send_each

from .models import (
    IN_FORCE,
    License,
    LicenseUsageDailyAggregate,
    LicenseUsageEvent,
    LicenseUsageForecast,
    LicenseUsageThreshold,
    UsageType,
)

log = logging.getLogger(__name__)

Period = LicenseUsageThreshold.Period

# Aggregate column of each usage type; any other type (custom) counts in total_quantity.
TYPE_COLUMNS: dict[str, str] = {
    UsageType.VIEW: "total_views",
    UsageType.DOWNLOAD: "total_downloads",
    UsageType.IMPRESSION: "total_impressions",
    UsageType.CLICK: "total_clicks",
    UsageType.PLAY: "total_plays",
    UsageType.STREAM: "total_streams",
}
WARNING_LEVELS = (100, 90, 75, 50)  # highest first
APPROVAL_FEE_CENTS = 10_000  # an overage fee above $100 needs approval
LATE_EVENT_LOOKBACK = timedelta(hours=25)
BATCH_LICENSES = 500  # licenses per batch in the threshold and forecast jobs
HISTORY_DAYS = 30
FORECAST_METHOD = "LINEAR_REGRESSION"
BREACH_ALERT_DAYS = 7  # alert when the breach is forecast within this many days
BREACH_ALERT_MIN_PROBABILITY = Decimal("0.70")
BREACH_ALERT_EVERY = timedelta(days=7)  # at most one alert per (license, usage type) in this time
PLATFORMS = ("web", "mobile", "tv", "print", "social", "other")
MAX_INT = 2**31 - 1  # quantity is an int column
MAX_BIGINT = 2**63 - 1


def utc_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- recording --------------------------------------------------------------------------


class UsageInputError(ValueError):
    """A usage report that cannot be recorded (the API answers 400 with the message)."""


def earliest_reportable(now: datetime) -> datetime:
    """Events may be reported late, but not before the start of yesterday (UTC): older
    days are no longer re-aggregated, so such an event would never be counted."""
    return day_start(utc_today(now) - timedelta(days=1))


@dataclass
class UsageReport:
    usage_type: str
    quantity: int = 1
    occurred_at: datetime | None = None
    revenue_cents: int = 0
    session_id: str | None = None
    platform: str | None = None
    device_type: str | None = None
    geographic_location: str | None = None
    referrer: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


STRING_LIMITS = {
    "session_id": 128,
    "device_type": 50,
    "geographic_location": 100,
    "referrer": 2048,
    "idempotency_key": 255,
}
ALLOWED_FIELDS = {"usage_type", "quantity", "occurred_at", "revenue_cents", "platform", "metadata", *STRING_LIMITS}


def _integer(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageInputError(f"{name} must be an integer.")
    if not low <= value <= high:
        raise UsageInputError(f"{name} must be between {low} and {high}.")
    return value


def parse_usage_report(body: dict[str, Any], *, now: datetime, license_start: datetime) -> UsageReport:
    """Validate an API body into a `UsageReport` (raises UsageInputError)."""
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise UsageInputError(f"Unknown field(s): {', '.join(unknown)}.")
    usage_type = body.get("usage_type")
    if usage_type not in UsageType.values:
        raise UsageInputError(f"usage_type must be one of {', '.join(UsageType.values)}.")
    report = UsageReport(
        usage_type=usage_type,
        quantity=_integer(body, "quantity", 1, 1, MAX_INT),
        revenue_cents=_integer(body, "revenue_cents", 0, 0, MAX_BIGINT),
    )
    for name, limit in STRING_LIMITS.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise UsageInputError(f"{name} must be a non-empty string.")
        if len(value) > limit:
            raise UsageInputError(f"{name} is longer than {limit} characters.")
        setattr(report, name, value.strip())
    platform = body.get("platform")
    if platform is not None:
        if platform not in PLATFORMS:
            raise UsageInputError(f"platform must be one of {', '.join(PLATFORMS)}.")
        report.platform = platform
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(json.dumps(metadata)) > 4096:
            raise UsageInputError("metadata must be a JSON object of at most 4 KB.")
        report.metadata = metadata
    raw = body.get("occurred_at")
    if raw is not None:
        if not isinstance(raw, str):
            raise UsageInputError("occurred_at must be an ISO 8601 date-time string.")
        try:
            occurred = datetime.fromisoformat(raw)
        except ValueError:
            raise UsageInputError("occurred_at must be an ISO 8601 date-time, e.g. 2025-03-01T12:00:00Z.") from None
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)  # every time in the system is UTC
        if occurred > now:
            raise UsageInputError("occurred_at is in the future.")
        earliest = earliest_reportable(now)
        if occurred < earliest:
            raise UsageInputError(
                f"occurred_at is too old: usage can be reported up to the start of yesterday ({earliest.isoformat()})."
            )
        if occurred < license_start:
            raise UsageInputError("occurred_at is before the license started.")
        report.occurred_at = occurred
    return report


INSERT_EVENT_SQL = """
INSERT INTO license_usage_events
  (license_id, occurred_at, usage_type, quantity, geographic_location, platform, device_type, referrer,
   revenue_cents, metadata, session_id, idempotency_key, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""


class IdempotencyConflict(Exception):
    """The idempotency key was already used for a different event."""


def record_usage_event(
    license_id: int, report: UsageReport, *, now: datetime | None = None
) -> tuple[int, datetime, bool]:
    """Insert one usage event; return (event id, its occurred_at, created).

    One INSERT. With an idempotency key already used for the same event, nothing is
    inserted and the first event is returned (created False); used for another event
    (another license, type, quantity or revenue), IdempotencyConflict.
    """
    now = now or timezone.now()
    occurred_at = report.occurred_at or now
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_EVENT_SQL,
            [
                license_id,
                occurred_at,
                report.usage_type,
                report.quantity,
                report.geographic_location,
                report.platform,
                report.device_type,
                report.referrer,
                report.revenue_cents,
                json.dumps(report.metadata),
                report.session_id,
                report.idempotency_key,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is not None:
        return row[0], occurred_at, True
    first = LicenseUsageEvent.objects.filter(idempotency_key=report.idempotency_key).first()
    if first is None:  # purged between the two statements: practically impossible, but say so
        raise IdempotencyConflict("The idempotency key is being used by another request; retry.")
    same = (first.license_id, first.usage_type, first.quantity, first.revenue_cents) == (
        license_id,
        report.usage_type,
        report.quantity,
        report.revenue_cents,
    )
    if not same:
        raise IdempotencyConflict("This idempotency_key was already used for a different usage event.")
    return first.pk, first.occurred_at, False


# --- aggregation ------------------------------------------------------------------------

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


def aggregation_window(now: datetime) -> tuple[date, date]:
    """(first day, day after the last) of the days a run re-aggregates: yesterday and
    today, plus the day before yesterday during the first hour after midnight."""
    return utc_today(now - LATE_EVENT_LOOKBACK), utc_today(now) + timedelta(days=1)


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


# --- periods and usage ------------------------------------------------------------------


def period_bounds(period_type: str, today: date, license_start: date, license_end: date) -> tuple[date, date]:
    """(first day, last day) of the period containing `today`."""
    if period_type == Period.DAILY:
        return today, today
    if period_type == Period.WEEKLY:
        monday = today - timedelta(days=today.weekday())
        return monday, monday + timedelta(days=6)
    if period_type == Period.MONTHLY:
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    if period_type == Period.TOTAL:
        return license_start, max(license_end, license_start)
    raise ValueError(f"unknown period type {period_type!r}")


def limit_with_grace(limit: int, grace_percentage: int) -> int:
    """floor(limit * (1 + grace / 100)), in integers (no float rounding)."""
    return limit * (100 + grace_percentage) // 100


def warning_level(usage: int, limit: int, flags: dict[int, bool], already_sent: int) -> int | None:
    """The highest level (100/90/75/50 %) reached whose flag is on, if above `already_sent`."""
    for level in WARNING_LEVELS:
        if flags[level] and usage * 100 >= level * limit:
            return level if level > already_sent else None
    return None


_USAGE_CASE = (
    "CASE t.usage_type "
    + " ".join(f"WHEN '{usage_type}' THEN a.{column}" for usage_type, column in TYPE_COLUMNS.items())
    + " ELSE a.total_quantity END"
)
USAGE_SQL = f"""
SELECT t.id, COALESCE(SUM({_USAGE_CASE}), 0)::bigint
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::date[]) AS t(id, license_id, usage_type, first_day)
LEFT JOIN license_usage_daily_aggregates a
  ON a.license_id = t.license_id AND a.date >= t.first_day AND a.date <= %s
GROUP BY t.id
"""


@dataclass
class ThresholdState:
    """One active threshold with what the jobs need of its license, brand and asset."""

    id: int
    license_id: int
    usage_type: str
    period_type: str
    limit: int
    grace_percentage: int
    flags: dict[int, bool]
    last_warning_level: int
    last_warning_period_start: date | None
    allow_overage: bool
    overage_rate_cents: int | None
    brand_user_id: int
    asset_title: str
    license_start: date
    license_end: date
    period_start: date = date.min
    period_end: date = date.min
    usage: int = 0

    @property
    def sent_this_period(self) -> int:
        return self.last_warning_level if self.last_warning_period_start == self.period_start else 0


def eligible_licenses(now: datetime) -> Any:
    """Licenses whose thresholds are checked and forecast: in force (EXPIRING_SOON too,
    and through a grace period: the brand may still use the asset; the spec's ACTIVE-only
    filter left the last 30 days unwatched)."""
    active_thresholds = LicenseUsageThreshold.objects.filter(license=OuterRef("pk"), is_active=True)
    return License.objects.filter(
        Q(end_date__gte=now) | Q(grace_period_end_date__gte=now),
        Exists(active_thresholds),
        status__in=IN_FORCE,
        usage_tracking_enabled=True,
        deleted_at__isnull=True,
        start_date__lte=now,
    )


def license_batches(now: datetime, size: int = BATCH_LICENSES) -> Iterator[list[int]]:
    cursor = 0
    queryset = eligible_licenses(now).order_by("pk").values_list("pk", flat=True)
    while ids := list(queryset.filter(pk__gt=cursor)[:size]):
        cursor = ids[-1]
        yield ids


def load_thresholds(license_ids: Sequence[int], today: date) -> list[ThresholdState]:
    """Active thresholds of the licenses, with their current period and usage (2 queries)."""
    rows = (
        LicenseUsageThreshold.objects.filter(license_id__in=license_ids, is_active=True)
        .order_by("license_id", "id")
        .values(
            "id",
            "license_id",
            "usage_type",
            "period_type",
            "limit_quantity",
            "grace_percentage",
            "warning_at_50",
            "warning_at_75",
            "warning_at_90",
            "warning_at_100",
            "last_warning_level",
            "last_warning_period_start",
            "allow_overage",
            "overage_rate_cents",
            "license__brand__user_id",
            "license__ip_asset__title",
            "license__start_date",
            "license__end_date",
        )
    )
    states = []
    for row in rows:
        state = ThresholdState(
            id=row["id"],
            license_id=row["license_id"],
            usage_type=row["usage_type"],
            period_type=row["period_type"],
            limit=row["limit_quantity"],
            grace_percentage=row["grace_percentage"],
            flags={
                50: row["warning_at_50"],
                75: row["warning_at_75"],
                90: row["warning_at_90"],
                100: row["warning_at_100"],
            },
            last_warning_level=row["last_warning_level"],
            last_warning_period_start=row["last_warning_period_start"],
            allow_overage=row["allow_overage"],
            overage_rate_cents=row["overage_rate_cents"],
            brand_user_id=row["license__brand__user_id"],
            asset_title=row["license__ip_asset__title"],
            license_start=utc_today(row["license__start_date"]),
            license_end=utc_today(row["license__end_date"]),
        )
        state.period_start, state.period_end = period_bounds(
            state.period_type, today, state.license_start, state.license_end
        )
        states.append(state)
    if states:
        with connection.cursor() as cursor:
            cursor.execute(
                USAGE_SQL,
                [
                    [s.id for s in states],
                    [s.license_id for s in states],
                    [s.usage_type for s in states],
                    [s.period_start for s in states],
                    today,
                ],
            )
            usage = dict(cursor.fetchall())
        for state in states:
            state.usage = usage.get(state.id, 0)
    return states


# --- thresholds -------------------------------------------------------------------------


@dataclass
class Overage:
    state: ThresholdState
    limit_with_grace: int
    quantity: int
    fee_cents: int | None
    approval_required: bool


def overage_for(state: ThresholdState) -> Overage | None:
    allowed = limit_with_grace(state.limit, state.grace_percentage)
    if state.usage <= allowed:
        return None
    quantity = state.usage - allowed
    fee = quantity * state.overage_rate_cents if state.allow_overage and state.overage_rate_cents is not None else None
    approval = not state.allow_overage or (fee is not None and fee > APPROVAL_FEE_CENTS)
    return Overage(state, allowed, quantity, fee, approval)


LOCK_THRESHOLDS_SQL = "SELECT id FROM license_usage_thresholds WHERE id = ANY(%s) ORDER BY id FOR UPDATE"

# Claim: only a level above the one already sent for this period (a new period starts
# from nothing). A concurrent run that claimed first makes this match no row.
CLAIM_WARNINGS_SQL = """
UPDATE license_usage_thresholds t SET
  last_warning_level = c.level, last_warning_at = %s, last_warning_period_start = c.period_start, updated_at = %s
FROM unnest(%s::bigint[], %s::int[], %s::date[]) AS c(id, level, period_start)
WHERE t.id = c.id
  AND (t.last_warning_period_start IS DISTINCT FROM c.period_start OR t.last_warning_level < c.level)
RETURNING t.id
"""

_OVERAGE_UPDATED = (
    "period_end",
    "limit_quantity",
    "actual_quantity",
    "overage_quantity",
    "overage_rate_cents",
    "calculated_fee_cents",
    "approval_required",
)
UPSERT_OVERAGES_SQL = f"""
INSERT INTO license_usage_overages
  (license_id, threshold_id, period_start, period_end, usage_type, limit_quantity, actual_quantity,
   overage_quantity, overage_rate_cents, calculated_fee_cents, status, approval_required, metadata,
   detected_at, updated_at)
SELECT license_id, threshold_id, period_start, period_end, usage_type, limit_quantity, actual_quantity,
  overage_quantity, overage_rate_cents, calculated_fee_cents, 'DETECTED', approval_required,
  jsonb_build_object('limit_with_grace', limit_with_grace, 'allow_overage', allow_overage), %s, %s
FROM unnest(%s::bigint[], %s::bigint[], %s::date[], %s::date[], %s::text[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::bigint[], %s::boolean[], %s::bigint[], %s::boolean[])
  AS o(license_id, threshold_id, period_start, period_end, usage_type, limit_quantity, actual_quantity,
       overage_quantity, overage_rate_cents, calculated_fee_cents, approval_required, limit_with_grace,
       allow_overage)
ORDER BY threshold_id
ON CONFLICT (threshold_id, period_start) DO UPDATE SET
  {", ".join(f"{c} = EXCLUDED.{c}" for c in _OVERAGE_UPDATED)},
  metadata = license_usage_overages.metadata || EXCLUDED.metadata,
  updated_at = EXCLUDED.updated_at
WHERE license_usage_overages.status IN ('DETECTED', 'PENDING_APPROVAL')
  -- usage in a period never shrinks: a run that read older aggregates does not write them back
  AND EXCLUDED.actual_quantity >= license_usage_overages.actual_quantity
  AND ({", ".join(f"license_usage_overages.{c}" for c in _OVERAGE_UPDATED)})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in _OVERAGE_UPDATED)})
RETURNING (xmax = 0)
"""

CLAIM_OVERAGE_NOTICES_SQL = """
UPDATE license_usage_overages o SET notified_at = %s
FROM unnest(%s::bigint[], %s::date[]) AS c(threshold_id, period_start)
WHERE o.threshold_id = c.threshold_id AND o.period_start = c.period_start AND o.notified_at IS NULL
RETURNING o.threshold_id, o.overage_quantity
"""


def usage_url(license_id: int, suffix: str = "") -> str:
    return f"/licenses/{license_id}/usage{suffix}"


def warning_notification(state: ThresholdState, level: int) -> Notification:
    return Notification(
        user_id=state.brand_user_id,
        type=Notification.Type.LICENSE,
        priority=Notification.Priority.HIGH if level >= 90 else Notification.Priority.MEDIUM,
        title=f"Usage Warning: {level}% Threshold",
        message=(
            f"Usage for {state.asset_title} has reached {level}% of the {state.period_type} "
            f"{state.usage_type} limit ({state.usage}/{state.limit})"
        ),
        action_url=usage_url(state.license_id),
        metadata={
            "license_id": state.license_id,
            "threshold_id": state.id,
            "level": level,
            "usage": state.usage,
            "limit": state.limit,
            "period_start": state.period_start.isoformat(),
        },
    )


def overage_notification(state: ThresholdState, quantity: int) -> Notification:
    return Notification(
        user_id=state.brand_user_id,
        type=Notification.Type.LICENSE,
        priority=Notification.Priority.URGENT,
        title="Usage Overage Detected",
        message=f"Usage overage detected for {state.asset_title}: {quantity} {state.usage_type}s over limit",
        action_url=usage_url(state.license_id, "/overages"),
        metadata={"license_id": state.license_id, "threshold_id": state.id, "overage_quantity": quantity},
    )


def check_thresholds_batch(states: list[ThresholdState], now: datetime) -> dict[str, int]:
    """Warnings and overages of one batch of thresholds: a constant number of queries."""
    counts = {"warnings": 0, "overages_created": 0, "overages_updated": 0, "overage_notices": 0}
    warnings = {}
    for state in states:
        level = warning_level(state.usage, state.limit, state.flags, state.sent_this_period)
        if level is not None:
            warnings[state.id] = (state, level)
    overages = [o for o in map(overage_for, states) if o is not None]
    if not warnings and not overages:
        return counts
    by_id = {s.id: s for s in states}
    with transaction.atomic(), connection.cursor() as cursor:
        # Lock in id order first: two runs at once then queue here instead of deadlocking.
        cursor.execute(LOCK_THRESHOLDS_SQL, [sorted({*warnings, *(o.state.id for o in overages)})])
        notices: list[Notification] = []
        if warnings:
            items = list(warnings.values())
            cursor.execute(
                CLAIM_WARNINGS_SQL,
                [
                    now,
                    now,
                    [s.id for s, _ in items],
                    [level for _, level in items],
                    [s.period_start for s, _ in items],
                ],
            )
            for (claimed_id,) in cursor.fetchall():
                state, level = warnings[claimed_id]
                notices.append(warning_notification(state, level))
                counts["warnings"] += 1
        if overages:
            cursor.execute(
                UPSERT_OVERAGES_SQL,
                [
                    now,
                    now,
                    [o.state.license_id for o in overages],
                    [o.state.id for o in overages],
                    [o.state.period_start for o in overages],
                    [o.state.period_end for o in overages],
                    [o.state.usage_type for o in overages],
                    [o.state.limit for o in overages],
                    [o.state.usage for o in overages],
                    [o.quantity for o in overages],
                    [o.state.overage_rate_cents for o in overages],
                    [o.fee_cents for o in overages],
                    [o.approval_required for o in overages],
                    [o.limit_with_grace for o in overages],
                    [o.state.allow_overage for o in overages],
                ],
            )
            for (inserted,) in cursor.fetchall():
                counts["overages_created" if inserted else "overages_updated"] += 1
            cursor.execute(
                CLAIM_OVERAGE_NOTICES_SQL,
                [now, [o.state.id for o in overages], [o.state.period_start for o in overages]],
            )
            for threshold_id, quantity in cursor.fetchall():
                notices.append(overage_notification(by_id[threshold_id], quantity))
                counts["overage_notices"] += 1
        Notification.objects.bulk_create(notices)
    return counts


# --- forecasts --------------------------------------------------------------------------


@dataclass
class Projection:
    slope: float
    intercept: float
    remainder: float  # projected usage from now to the end of the period
    predicted: int
    lower: int
    upper: int
    breach_date: date | None
    breach_probability: Decimal | None


def least_squares(values: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the ordinary least-squares line through (i, values[i])."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        return 0.0, float(values[0])
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    sxy = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def breach_probability(usage_so_far: int, lower: int, predicted: int, upper: int, limit: int) -> Decimal | None:
    """A simple, documented rule (not a statistical probability):
    0.95 when the limit is already exceeded or even the low estimate exceeds it,
    0.80 when the central forecast exceeds it, 0.30 when only the high estimate does,
    otherwise None (no breach in sight)."""
    if usage_so_far > limit or lower > limit:
        return Decimal("0.95")
    if predicted > limit:
        return Decimal("0.80")
    if upper > limit:
        return Decimal("0.30")
    return None


def project_usage(
    history: Sequence[int], *, today_so_far: int, usage_so_far: int, today: date, period_end: date, limit: int
) -> Projection:
    """Forecast the usage of a period.

    `history` is the usage of each full day before today (oldest first, missing days
    zero-filled, at most 30 days, none before the license started); `usage_so_far` is the
    period's usage up to now, `today_so_far` the part of it made today. The least-squares
    line over day index i (0 = oldest day; today is index n) gives the daily values
    ahead, never below zero. Today counts only what the line expects beyond what today
    already has. The remainder (rest of today to the period's last day) is added to the
    usage so far; the bounds are -20 % / +20 % of that remainder. The breach date is the
    first day the projected cumulative usage exceeds the limit (today when it already
    does; None when it does not within the period).
    """
    slope, intercept = least_squares(history)
    n = len(history)

    def daily(index: int) -> float:
        return max(0.0, intercept + slope * index)

    days_after_today = max(0, (period_end - today).days)
    projected = [max(0.0, daily(n) - today_so_far)] + [daily(n + k) for k in range(1, days_after_today + 1)]
    remainder = sum(projected)
    exact = Decimal(str(round(remainder, 6)))  # no float noise in the bounds (1.2 * 835 = 1002)
    predicted = usage_so_far + int(exact.to_integral_value(ROUND_HALF_UP))
    lower = usage_so_far + math.floor(exact * Decimal("0.8"))
    upper = usage_so_far + math.ceil(exact * Decimal("1.2"))
    breach_date = None
    if usage_so_far > limit:
        breach_date = today
    else:
        cumulative = float(usage_so_far)
        for offset, value in enumerate(projected):
            cumulative += value
            if cumulative > limit:
                breach_date = today + timedelta(days=offset)
                break
    return Projection(
        slope=slope,
        intercept=intercept,
        remainder=remainder,
        predicted=predicted,
        lower=lower,
        upper=upper,
        breach_date=breach_date,
        breach_probability=breach_probability(usage_so_far, lower, predicted, upper, limit),
    )


def _history_rows(license_ids: Sequence[int], first_day: date, today: date) -> dict[int, dict[date, dict[str, int]]]:
    columns = [*TYPE_COLUMNS.values(), "total_quantity"]
    rows = LicenseUsageDailyAggregate.objects.filter(
        license_id__in=license_ids, date__gte=first_day, date__lte=today
    ).values_list("license_id", "date", *columns)
    by_license: dict[int, dict[date, dict[str, int]]] = defaultdict(dict)
    for license_id, day, *values in rows:
        by_license[license_id][day] = dict(zip(columns, values, strict=True))
    return by_license


def _column(usage_type: str) -> str:
    return TYPE_COLUMNS.get(usage_type, "total_quantity")


def forecast_batch(states: list[ThresholdState], today: date, now: datetime) -> int:
    """Upsert today's forecast rows for one batch of thresholds (2 queries)."""
    if not states:
        return 0
    history_start = today - timedelta(days=HISTORY_DAYS)
    days = _history_rows(sorted({s.license_id for s in states}), history_start, today)
    chosen: dict[tuple[int, str], tuple[tuple, LicenseUsageForecast]] = {}
    for state in states:
        per_day = days.get(state.license_id, {})
        column = _column(state.usage_type)
        first = max(history_start, state.license_start)
        history = [per_day.get(first + timedelta(days=i), {}).get(column, 0) for i in range((today - first).days)]
        projection = project_usage(
            history,
            today_so_far=per_day.get(today, {}).get(column, 0),
            usage_so_far=state.usage,
            today=today,
            period_end=state.period_end,
            limit=state.limit,
        )
        row = LicenseUsageForecast(
            license_id=state.license_id,
            threshold_id=state.id,
            usage_type=state.usage_type,
            forecast_date=today,
            period_start=state.period_start,
            period_end=state.period_end,
            predicted_quantity=projection.predicted,
            lower_bound=projection.lower,
            upper_bound=projection.upper,
            predicted_breach_date=projection.breach_date,
            breach_probability=projection.breach_probability,
            forecasting_method=FORECAST_METHOD,
            historical_days_used=len(history),
            calculated_at=now,
            metadata={
                "slope": round(projection.slope, 4),
                "intercept": round(projection.intercept, 4),
                "usage_so_far": state.usage,
                "projected_remainder": round(projection.remainder, 2),
                "limit": state.limit,
                "period_type": state.period_type,
            },
        )
        # One row per (license, usage type, day): of two thresholds on one usage type
        # (say a daily and a monthly view limit) keep the more urgent forecast.
        urgency = (projection.breach_date or date.max, -projection.predicted / state.limit)
        key = (state.license_id, state.usage_type)
        if key not in chosen or urgency < chosen[key][0]:
            chosen[key] = (urgency, row)
    rows = [row for _, row in chosen.values()]
    LicenseUsageForecast.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["license", "usage_type", "forecast_date"],
        update_fields=[
            "threshold",
            "period_start",
            "period_end",
            "predicted_quantity",
            "lower_bound",
            "upper_bound",
            "predicted_breach_date",
            "breach_probability",
            "forecasting_method",
            "historical_days_used",
            "calculated_at",
            "metadata",
        ],
    )
    return len(rows)


# --- breach alerts ----------------------------------------------------------------------

CLAIM_BREACH_ALERTS_SQL = """
UPDATE license_usage_forecasts f SET breach_alert_sent_at = %(now)s
WHERE f.id = ANY(%(ids)s) AND f.breach_alert_sent_at IS NULL
  AND NOT EXISTS (
    SELECT 1 FROM license_usage_forecasts p
    WHERE p.license_id = f.license_id AND p.usage_type = f.usage_type AND p.id <> f.id
      AND p.breach_alert_sent_at > %(since)s
  )
RETURNING f.id
"""


def breach_alert_candidates(today: date) -> Any:
    return (
        LicenseUsageForecast.objects.filter(
            forecast_date=today,
            predicted_breach_date__isnull=False,
            predicted_breach_date__lte=today + timedelta(days=BREACH_ALERT_DAYS),
            breach_probability__gte=BREACH_ALERT_MIN_PROBABILITY,
            breach_alert_sent_at__isnull=True,
            license__status__in=IN_FORCE,
            license__usage_tracking_enabled=True,
            license__deleted_at__isnull=True,
        )
        .select_related("license__brand__user", "license__ip_asset")
        .order_by("predicted_breach_date", "id")
    )


def breach_message(forecast: LicenseUsageForecast) -> str:
    return (
        f"Usage for {forecast.license.ip_asset.title} is projected to exceed its {forecast.usage_type} limit "
        f"around {forecast.predicted_breach_date.isoformat()}"
    )


def send_breach_alerts_batch(forecasts: list[LicenseUsageForecast], now: datetime) -> dict[str, int]:
    """Claim, email and notify one batch of forecasts in one transaction.

    The claim (a conditional UPDATE of `breach_alert_sent_at`) makes a concurrent run skip
    these rows. The marker and the in-app notification are kept only where the email was
    accepted (or the brand user has no address to send to): a refused email un-claims the
    row, so the next run tries again. An unreachable server raises and rolls everything
    back, and the job retries.
    """
    counts = {"alerts": 0, "emails_sent": 0, "emails_refused": 0}
    by_id = {f.pk: f for f in forecasts}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(CLAIM_BREACH_ALERTS_SQL, {"now": now, "ids": list(by_id), "since": now - BREACH_ALERT_EVERY})
        claimed = [by_id[pk] for (pk,) in cursor.fetchall()]
        with_address = [f for f in claimed if f.license.brand.user.email]
        messages = [
            build_email(
                "license_usage_breach_forecast",
                f.license.brand.user.email,
                {
                    "asset_title": f.license.ip_asset.title,
                    "brand_name": f.license.brand.name,
                    "usage_type": f.usage_type,
                    "period_type": (f.metadata or {}).get("period_type", ""),
                    "breach_date": f.predicted_breach_date,
                    "predicted_quantity": f.predicted_quantity,
                    "limit": (f.metadata or {}).get("limit"),
                    "period_end": f.period_end,
                    "url": f"{settings.APP_URL}{usage_url(f.license_id)}",
                },
            )
            for f in with_address
        ]
        results = send_each(messages)
        refused = [f.pk for f, ok in zip(with_address, results, strict=True) if not ok]
        if refused:
            LicenseUsageForecast.objects.filter(pk__in=refused).update(breach_alert_sent_at=None)
        counts["emails_sent"] = sum(results)
        counts["emails_refused"] = len(refused)
        alerted = [f for f in claimed if f.pk not in set(refused)]
        Notification.objects.bulk_create(
            Notification(
                user_id=f.license.brand.user_id,
                type=Notification.Type.LICENSE,
                priority=Notification.Priority.HIGH,
                title="Usage Limit Forecast",
                message=breach_message(f),
                action_url=usage_url(f.license_id),
                metadata={
                    "license_id": f.license_id,
                    "forecast_id": f.pk,
                    "usage_type": f.usage_type,
                    "predicted_breach_date": f.predicted_breach_date.isoformat(),
                },
            )
            for f in alerted
        )
        counts["alerts"] = len(alerted)
    return counts
