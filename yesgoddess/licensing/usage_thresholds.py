"""Usage thresholds (spec B §5.5, the hourly `license-usage-tracking.thresholds`):
periods, the usage of each threshold, warnings and overages.

Usage in a period = the sum of the aggregate column of the usage type (custom ->
total_quantity) over the period's days up to today. Periods (UTC dates): daily = today;
weekly = the ISO week (Monday to Sunday); monthly = the calendar month; total = the
license's start date to its end date. A warning is claimed with a conditional UPDATE of
the threshold (level above the one already sent *for this period*) and the notification
is written in the same transaction, so two workers never send it twice. Warnings and
overage alerts go through the notification service (`notify_each`): the brand's email
preference for LICENSE notifications decides whether and when they are emailed.

Overage (spec's inverted condition settled): whenever usage exceeds
limit_with_grace = floor(limit * (1 + grace% / 100)) an overage row is recorded, one per
(threshold, period_start), updated as usage grows. With `allow_overage` and a rate, the
fee is overage_quantity * rate; with `allow_overage` False the excess is a breach of the
license: recorded, no fee, and approval (review) required. Approval is also required for
a fee above $100. The brand is told once per overage row (`notified_at`, claimed).
Rows a human already moved on (APPROVED, BILLED, DISPUTED) are no longer changed.

`check_all_thresholds` is the job's run: every eligible license, BATCH_LICENSES at a
time (a failed batch is logged, the others run, and the run fails at the end).
`ThresholdState`, `license_batches` and `load_thresholds` also feed the forecasts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from yesgoddess.core.app_links import app_path
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import notify_each

from .models import IN_FORCE, License, LicenseUsageThreshold
from .usage import TYPE_COLUMNS, raise_if_batches_failed, utc_today

log = logging.getLogger(__name__)

Period = LicenseUsageThreshold.Period

WARNING_LEVELS = (100, 90, 75, 50)  # highest first
APPROVAL_FEE_CENTS = 10_000  # an overage fee above $100 needs approval
BATCH_LICENSES = 500  # licenses per batch in the threshold and forecast jobs


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


def usage_url(license_id: int, page: str = "license-usage") -> str:
    return app_path(page, license_id=license_id)


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
        action_url=usage_url(state.license_id, "license-usage-overages"),
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
        # Through the notification service: in-app always, by email as the brand's
        # preference for LICENSE notifications says (sent after commit).
        notify_each(notices)
    return counts


def check_all_thresholds(now: datetime | None = None) -> dict[str, int]:
    """Warnings and overages for every eligible license, batch by batch; a failed batch
    is logged and the others still run, then UsageBatchesFailed is raised."""
    now = now or timezone.now()
    today = utc_today(now)
    counts = {"licenses": 0, "checked": 0, "warnings": 0, "overages_created": 0, "overages_updated": 0}
    counts |= {"overage_notices": 0, "errors": 0}
    for license_ids in license_batches(now):
        try:
            states = load_thresholds(license_ids, today)
            for key, value in check_thresholds_batch(states, now).items():
                counts[key] += value
        except Exception:
            log.exception("usage thresholds: batch of licenses %s..%s failed", license_ids[0], license_ids[-1])
            counts["errors"] += 1
            continue
        counts["licenses"] += len(license_ids)
        counts["checked"] += len(states)
    return raise_if_batches_failed("thresholds", counts)
