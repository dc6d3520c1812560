"""License performance metrics (spec B §5.6, defects fixed): per-license ROI, utilisation,
approval time and conflicts, and platform-wide daily / weekly / monthly snapshots.

Everything is computed "as of" the end of one target day (or now, if that is earlier), so
recomputing a day gives the same figures whenever it runs.

- Licenses are read in primary-key batches; one SQL statement returns every figure of a
  batch (royalties, revenue, break-even, usage, limit, conflicts, renewals), so the
  number of queries per batch is constant. Derived values are computed in Python from
  that row. A value that cannot be computed (no cost, no limit, no history) is None.
- Money is integer cents everywhere (`total`, `average_per_license`, `*_cents`).
- Revenue is what the licensed use earned: `DailyMetric.revenue_cents` of the license.
  Cost is what the brand pays: fee + royalties (`RoyaltyLine.calculated_royalty_cents`
  of LICENSE lines). ROI % = (revenue - cost) / cost x 100.

The job `license-performance-metrics` runs `calculate` for one target day
(`target_date`: yesterday, UTC, unless a past day is given): the metrics of every
license in force in `metadata.performanceMetrics`, then the daily / weekly / monthly
`LicensePerformanceSnapshot` rows ending on that day. Idempotent: a second run for the
same day rewrites the same rows.
"""

from __future__ import annotations

import heapq
import re
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection
from django.utils import timezone

from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.progress import Progress, no_progress

from .metadata import merge_metadata
from .models import IN_FORCE, License, LicensePerformanceSnapshot, LicenseStatus, LicenseType

BATCH_SIZE = 1000
TREND_WINDOW_DAYS = 30
BOTTLENECK_HOURS = 168  # 7 days without a signature
UNDER_UTILIZED_PERCENT = 20
UNDER_UTILIZED_USAGE_WITHOUT_LIMIT = 10
TOP_N = 10
LIST_LIMIT = 20  # longest id list stored in a snapshot or in a license's metadata
NEW_LICENSE_DAYS = 30
HIGH_ROI_PERCENT = 50
# Licenses another license can conflict with (the asset is taken or about to be).
LIVE_STATUSES = (
    LicenseStatus.ACTIVE,
    LicenseStatus.EXPIRING_SOON,
    LicenseStatus.PENDING_APPROVAL,
    LicenseStatus.PENDING_SIGNATURE,
)
GLOBAL_TERRITORY = "GLOBAL"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DateRefused(InvalidInput):
    """A target day that cannot be computed; the message says why."""


def target_date(value: str | None, *, now: datetime | None = None) -> date:
    """The day to (re)compute: `value` (YYYY-MM-DD, not in the future), else yesterday (UTC)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    if value is None:
        return today - timedelta(days=1)
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise DateRefused(f"date must be an ISO date (YYYY-MM-DD), got {value!r}.")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise DateRefused(f"date {value!r} is not a valid date ({exc}).") from None
    if day > today:
        raise DateRefused(f"date {value} is in the future (today is {today.isoformat()} UTC).")
    return day


def _territories(scope_json: str) -> str:
    """SQL: the upper-cased territory codes of a scope, or {GLOBAL} when none are given
    (a license without a geographic limit covers everywhere)."""
    codes = f"{scope_json}->'geographic'->'territories'"
    return (
        "COALESCE(NULLIF(ARRAY(SELECT upper(t) FROM jsonb_array_elements_text("
        f"CASE WHEN jsonb_typeof({codes}) = 'array' THEN {codes} ELSE '[]'::jsonb END) AS t), "
        f"'{{}}'::text[]), ARRAY['{GLOBAL_TERRITORY}'])"
    )


# `o` conflicts with `b`: another live license on the same asset, dates overlapping, and
# either side EXCLUSIVE, or both EXCLUSIVE_TERRITORY sharing a territory (GLOBAL shares all).
CONFLICT_MATCH = f"""
    o.ip_asset_id = b.ip_asset_id AND o.id <> b.id AND o.deleted_at IS NULL
    AND o.status = ANY(%(live)s)
    AND o.start_date <= b.end_date AND o.end_date >= b.start_date
    AND (
        b.license_type = '{LicenseType.EXCLUSIVE}' OR o.license_type = '{LicenseType.EXCLUSIVE}'
        OR (
            b.license_type = '{LicenseType.EXCLUSIVE_TERRITORY}'
            AND o.license_type = '{LicenseType.EXCLUSIVE_TERRITORY}'
            AND (
                {_territories("b.scope_json")} && {_territories("o.scope_json")}
                OR '{GLOBAL_TERRITORY}' = ANY({_territories("b.scope_json")})
                OR '{GLOBAL_TERRITORY}' = ANY({_territories("o.scope_json")})
            )
        )
    )
"""

IN_FORCE_SCOPE = "l.deleted_at IS NULL AND l.status = ANY(%(in_force)s)"
# Active during [start, end] or created in it (timestamps: start of the first day, start
# of the day after the last).
PERIOD_SCOPE = """l.deleted_at IS NULL AND (
    (l.start_date < %(period_end_excl)s AND l.end_date >= %(period_start_ts)s)
    OR (l.created_at >= %(period_start_ts)s AND l.created_at < %(period_end_excl)s)
)"""


def _figures_sql(scope: str) -> str:
    """One statement: every figure of the next batch of licenses matching `scope`.

    Parameters: after, limit, day (the last day counted), as_of, window_start,
    last_start / prev_start (30-day trend windows), live, and the scope's own.

    Each figure is a LATERAL subquery probing one license's rows through an index, so
    the plan stays linear in the batch size whatever the planner estimates (GROUP BY
    CTEs joined to the batch went quadratic when statistics said "one row")."""
    return f"""
WITH b AS MATERIALIZED (
    SELECT l.id, l.ip_asset_id, l.license_type, l.scope_json, l.status, l.fee_cents,
           l.start_date, l.end_date, l.created_at, l.signed_at, l.metadata
    FROM licenses l
    WHERE {scope} AND l.id > %(after)s
    ORDER BY l.id
    LIMIT %(limit)s
)
SELECT b.id, b.ip_asset_id, b.status, b.fee_cents, b.start_date, b.end_date, b.created_at, b.signed_at,
       roy.cents, rev.total, rev.in_window, rev.last30, rev.prev30, break_even.date,
       usage_.term, usage_.last30, usage_.prev30,
       b.metadata->'usageLimits'->>'maxUsageCount', threshold.total_limit,
       conflict.n, COALESCE(conflict.ids, '{{}}'::bigint[]), renewal.n, renewal.fee
FROM b
CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(rl.calculated_royalty_cents), 0) AS cents
    FROM royalty_lines rl
    WHERE rl.license_id = b.id AND rl.line_type = 'LICENSE' AND rl.period_start < %(as_of)s
) AS roy
CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(dm.revenue_cents), 0) AS total,
           COALESCE(SUM(dm.revenue_cents) FILTER (WHERE dm.date >= %(window_start)s), 0) AS in_window,
           COALESCE(SUM(dm.revenue_cents) FILTER (WHERE dm.date >= %(last_start)s), 0) AS last30,
           COALESCE(SUM(dm.revenue_cents) FILTER (
               WHERE dm.date >= %(prev_start)s AND dm.date < %(last_start)s
           ), 0) AS prev30
    FROM daily_metrics dm
    WHERE dm.license_id = b.id AND dm.date <= %(day)s
) AS rev
LEFT JOIN LATERAL (
    -- the first day the cumulative revenue covers the cost (none when there is no cost)
    SELECT running.date
    FROM (
        SELECT dm.date, SUM(dm.revenue_cents) OVER (ORDER BY dm.date) AS cumulative
        FROM daily_metrics dm
        WHERE dm.license_id = b.id AND dm.date <= %(day)s
    ) AS running
    WHERE b.fee_cents + roy.cents > 0 AND running.cumulative >= b.fee_cents + roy.cents
    ORDER BY running.date
    LIMIT 1
) AS break_even ON true
CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(a.total_quantity) FILTER (
               WHERE a.date >= (b.start_date AT TIME ZONE 'UTC')::date
                 AND a.date <= (b.end_date AT TIME ZONE 'UTC')::date
           ), 0) AS term,
           COALESCE(SUM(a.total_quantity) FILTER (WHERE a.date >= %(last_start)s), 0) AS last30,
           COALESCE(SUM(a.total_quantity) FILTER (
               WHERE a.date >= %(prev_start)s AND a.date < %(last_start)s
           ), 0) AS prev30
    FROM license_usage_daily_aggregates a
    WHERE a.license_id = b.id AND a.date <= %(day)s
) AS usage_
CROSS JOIN LATERAL (
    SELECT SUM(t.limit_quantity) AS total_limit
    FROM license_usage_thresholds t
    WHERE t.license_id = b.id AND t.is_active AND t.period_type = 'total'
) AS threshold
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS n, (array_agg(o.id ORDER BY o.id))[1:{LIST_LIMIT}] AS ids
    FROM licenses o
    WHERE {CONFLICT_MATCH}
) AS conflict
CROSS JOIN LATERAL (
    SELECT COUNT(*) AS n, COALESCE(SUM(c.fee_cents), 0) AS fee
    FROM licenses c
    WHERE c.parent_license_id = b.id AND c.deleted_at IS NULL AND c.status <> '{LicenseStatus.CANCELED}'
) AS renewal
ORDER BY b.id
"""


IN_FORCE_FIGURES_SQL = _figures_sql(IN_FORCE_SCOPE)
PERIOD_FIGURES_SQL = _figures_sql(PERIOD_SCOPE)

# The previous window of a snapshot: revenue of the licenses in its scope, and the
# licenses created in it with and without a conflict.
PREVIOUS_WINDOW_SQL = f"""
SELECT
    (SELECT COALESCE(SUM(dm.revenue_cents), 0)
     FROM daily_metrics dm JOIN licenses l ON l.id = dm.license_id
     WHERE {PERIOD_SCOPE} AND dm.date >= %(window_start)s AND dm.date <= %(day)s),
    (SELECT COUNT(*) FROM licenses b
     WHERE b.deleted_at IS NULL AND b.created_at >= %(period_start_ts)s AND b.created_at < %(period_end_excl)s),
    (SELECT COUNT(*) FROM licenses b
     WHERE b.deleted_at IS NULL AND b.created_at >= %(period_start_ts)s AND b.created_at < %(period_end_excl)s
       AND EXISTS (SELECT 1 FROM licenses o WHERE {CONFLICT_MATCH}))
"""

# Approval time of the licenses signed in a period (every license not deleted, whatever its term).
APPROVALS_SQL = """
SELECT COUNT(*), AVG(h), percentile_cont(0.5) WITHIN GROUP (ORDER BY h)
FROM (
    SELECT EXTRACT(EPOCH FROM (signed_at - created_at)) / 3600 AS h
    FROM licenses
    WHERE deleted_at IS NULL AND signed_at >= %(period_start_ts)s AND signed_at < %(signed_before)s
) AS signed
"""


# --- small helpers ---------------------------------------------------------------------


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def as_of_for(day: date, now: datetime) -> datetime:
    """The moment figures for `day` describe: the end of that day, or now if earlier."""
    return min(now, day_start(day + timedelta(days=1)))


def percent(numerator: float, denominator: float) -> float | None:
    """numerator / denominator x 100 rounded to 2 dp; None when the denominator is 0."""
    if not denominator:
        return None
    return round(float(numerator) * 100 / float(denominator), 2)


def growth(current: float, previous: float) -> float | None:
    """Growth % of `current` over `previous`; None when there is nothing to grow from."""
    return percent(current - previous, previous)


def trend(current: float | None, previous: float | None, *, zero_is_stable: bool = False) -> str:
    """increasing (> 1.1x), decreasing (< 0.9x) or stable.

    "insufficient_data" when a side is unknown, or both are 0 and 0 means "no data"
    (usage: nothing recorded); with `zero_is_stable` (a rate that was 0 and is still 0),
    two zeros are "stable". From 0 to anything is "increasing"."""
    if current is None or previous is None:
        return "insufficient_data"
    if not current and not previous:
        return "stable" if zero_is_stable else "insufficient_data"
    if not previous:
        return "increasing"
    ratio = current / previous
    if ratio > 1.1:
        return "increasing"
    if ratio < 0.9:
        return "decreasing"
    return "stable"


def hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _positive_number(raw: str | None) -> float | None:
    """metadata.usageLimits.maxUsageCount as a number; None when unset or not a positive number."""
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or value <= 0:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def approval_stage(status: str, signed: bool) -> str:
    """approved (signed), expired, pending_approval, pending_signature (waiting for or
    running without a recorded signature) or created (a draft, or ended unsigned)."""
    if signed:
        return "approved"
    if status == LicenseStatus.EXPIRED:
        return "expired"
    if status == LicenseStatus.PENDING_APPROVAL:
        return "pending_approval"
    if status == LicenseStatus.PENDING_SIGNATURE or status in IN_FORCE:
        return "pending_signature"
    return "created"


# --- one license's figures --------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What one run of figures is measured against."""

    day: date  # the last day counted
    as_of: datetime  # the moment the figures describe (end of `day`, or now)
    window_start: date  # first day of the snapshot window (`in_window_revenue`)

    @property
    def last_start(self) -> date:
        return self.day - timedelta(days=TREND_WINDOW_DAYS - 1)

    @property
    def prev_start(self) -> date:
        return self.day - timedelta(days=2 * TREND_WINDOW_DAYS - 1)

    def params(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "as_of": self.as_of,
            "window_start": self.window_start,
            "last_start": self.last_start,
            "prev_start": self.prev_start,
            "live": list(LIVE_STATUSES),
            "in_force": list(IN_FORCE),
        }


@dataclass(frozen=True)
class LicenseFigures:
    id: int
    ip_asset_id: int
    status: str
    fee_cents: int
    start_date: datetime
    end_date: datetime
    created_at: datetime
    signed_at: datetime | None
    royalties_cents: int
    revenue_cents: int  # all revenue up to the day
    window_revenue_cents: int  # revenue in the snapshot window
    revenue_last30: int
    revenue_prev30: int
    break_even_date: date | None
    usage_term: int  # usage over the license term, up to the day
    usage_last30: int
    usage_prev30: int
    metadata_limit: str | None
    threshold_limit: int | None
    conflict_count: int
    conflict_ids: list[int]
    live_renewals: int
    renewal_fee_cents: int
    ctx: Context = field(repr=False)

    # ROI ------------------------------------------------------------------------------
    @property
    def cost_cents(self) -> int:
        return self.fee_cents + self.royalties_cents

    @property
    def roi_percent(self) -> float | None:
        return percent(self.revenue_cents - self.cost_cents, self.cost_cents)

    @property
    def active_days(self) -> int | None:
        """Days the license has run, start day and the counted day included; None before start."""
        start = _utc_day(self.start_date)
        last = min(self.ctx.day, _utc_day(self.end_date))
        return None if last < start else (last - start).days + 1

    def roi(self) -> dict[str, Any]:
        cost = self.cost_cents
        days = self.active_days
        projected = None
        if days and cost:
            projected = percent(self.revenue_cents / days * 365 - cost, cost)
        days_to_break_even = None
        if self.break_even_date is not None:
            days_to_break_even = (self.break_even_date - _utc_day(self.start_date)).days
        return {
            "percentage": self.roi_percent,
            "totalRevenueCents": self.revenue_cents,
            "totalCostCents": cost,
            "feeCents": self.fee_cents,
            "royaltiesCents": self.royalties_cents,
            # No cost to recover -> no break-even date (None), like the ROI itself.
            "breakEvenDate": self.break_even_date.isoformat() if self.break_even_date else None,
            "daysToBreakEven": days_to_break_even,
            "projectedAnnualROI": projected,
            "revenueLast30DaysCents": self.revenue_last30,
            "revenuePrevious30DaysCents": self.revenue_prev30,
            "revenueGrowthRate": growth(self.revenue_last30, self.revenue_prev30),
        }

    # Utilisation ------------------------------------------------------------------------
    @property
    def usage_limit(self) -> tuple[float | None, str | None]:
        explicit = _positive_number(self.metadata_limit)
        if explicit is not None:
            return explicit, "metadata"
        if self.threshold_limit:
            # Several active total-period thresholds (one per usage type): their sum is the
            # total usage the license allows, compared with the total usage.
            return int(self.threshold_limit), "threshold"
        return None, None

    @property
    def utilization_percent(self) -> float | None:
        limit, _ = self.usage_limit
        return percent(self.usage_term, limit) if limit else None  # not capped: > 100 is over-utilised

    @property
    def is_over_utilized(self) -> bool:
        pct = self.utilization_percent
        return pct is not None and pct > 100

    @property
    def is_under_utilized(self) -> bool:
        pct = self.utilization_percent
        if pct is None:
            return self.usage_term < UNDER_UTILIZED_USAGE_WITHOUT_LIMIT
        return pct < UNDER_UTILIZED_PERCENT

    def utilization(self) -> dict[str, Any]:
        limit, source = self.usage_limit
        return {
            "percentage": self.utilization_percent,
            "actualUsage": self.usage_term,
            "limit": limit,
            "limitSource": source,
            "usageLast30Days": self.usage_last30,
            "usagePrevious30Days": self.usage_prev30,
            # Both windows empty: no usage recorded, so no trend ("insufficient_data").
            "trend": trend(self.usage_last30, self.usage_prev30),
            "isOverUtilized": self.is_over_utilized,
            "isUnderUtilized": self.is_under_utilized,
        }

    # Approval ---------------------------------------------------------------------------
    @property
    def signed(self) -> bool:
        return self.signed_at is not None and self.signed_at <= self.ctx.as_of

    @property
    def approval_hours(self) -> float | None:
        return hours(self.signed_at - self.created_at) if self.signed else None

    @property
    def pending_hours(self) -> float | None:
        """Hours since creation without a signature; None when signed (or not yet created)."""
        if self.signed or self.created_at > self.ctx.as_of:
            return None
        return hours(self.ctx.as_of - self.created_at)

    @property
    def is_bottleneck(self) -> bool:
        pending = self.pending_hours
        return pending is not None and pending > BOTTLENECK_HOURS and self.status in LIVE_STATUSES

    def approval(self) -> dict[str, Any]:
        pending = self.pending_hours
        bottlenecks = [f"pending {int(pending // 24)} days"] if self.is_bottleneck and pending else []
        return {
            "signed": self.signed,
            "durationHours": self.approval_hours,
            "pendingHours": pending,
            "stage": approval_stage(self.status, self.signed),
            "bottlenecks": bottlenecks,
        }

    def conflicts(self) -> dict[str, Any]:
        return {"count": self.conflict_count, "licenseIds": list(self.conflict_ids)}

    def performance_metrics(self, calculated_at: datetime) -> dict[str, Any]:
        return {
            "lastCalculated": calculated_at.isoformat(),
            "asOf": self.ctx.day.isoformat(),
            "roi": self.roi(),
            "utilization": self.utilization(),
            "approval": self.approval(),
            "conflicts": self.conflicts(),
        }


def _num(value: Any) -> int:
    return int(value) if value is not None else 0


def iter_figures(sql: str, ctx: Context, extra: dict[str, Any] | None = None) -> Iterator[list[LicenseFigures]]:
    """Batches of LicenseFigures in primary-key order: one query per batch."""
    params = {**ctx.params(), **(extra or {}), "limit": BATCH_SIZE}
    after = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, {**params, "after": after})
            rows = cursor.fetchall()
        if not rows:
            return
        yield [
            LicenseFigures(
                id=r[0],
                ip_asset_id=r[1],
                status=r[2],
                fee_cents=_num(r[3]),
                start_date=r[4],
                end_date=r[5],
                created_at=r[6],
                signed_at=r[7],
                royalties_cents=_num(r[8]),
                revenue_cents=_num(r[9]),
                window_revenue_cents=_num(r[10]),
                revenue_last30=_num(r[11]),
                revenue_prev30=_num(r[12]),
                break_even_date=r[13],
                usage_term=_num(r[14]),
                usage_last30=_num(r[15]),
                usage_prev30=_num(r[16]),
                metadata_limit=r[17],
                threshold_limit=_num(r[18]) or None,
                conflict_count=_num(r[19]),
                conflict_ids=list(r[20]),
                live_renewals=_num(r[21]),
                renewal_fee_cents=_num(r[22]),
                ctx=ctx,
            )
            for r in rows
        ]
        if len(rows) < BATCH_SIZE:
            return
        after = rows[-1][0]


# --- stage 1: every license in force ------------------------------------------------------


def update_license_metrics(day: date, *, now: datetime | None = None, progress: Progress = no_progress) -> int:
    """Store `metadata.performanceMetrics` of every license in force (atomic merge, other
    keys kept). Queries: one count, then two per batch (figures, merge)."""
    now = now or timezone.now()
    ctx = Context(day=day, as_of=as_of_for(day, now), window_start=day)
    total = License.objects.filter(deleted_at__isnull=True, status__in=IN_FORCE).count()
    done = 0
    for batch in iter_figures(IN_FORCE_FIGURES_SQL, ctx):
        merge_metadata({f.id: {"performanceMetrics": f.performance_metrics(now)} for f in batch})
        done += len(batch)
        progress(done, total, "per-license metrics")
    return done


# --- stage 2: snapshots ------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    granularity: str
    start: date
    end: date
    previous_start: date
    previous_end: date


def periods_for(day: date) -> list[Period]:
    """Daily always; weekly (Monday-Sunday) when `day` is a Sunday; monthly (the whole
    month) when `day` is the last day of its month. A snapshot's date is its last day.

    The previous window: the previous day, the previous week, the previous calendar month
    (a month is compared with the month before, not with a shifted 28-31-day window)."""
    G = LicensePerformanceSnapshot.Granularity
    one = timedelta(days=1)
    periods = [Period(G.DAILY, day, day, day - one, day - one)]
    if day.weekday() == 6:
        start = day - timedelta(days=6)
        periods.append(Period(G.WEEKLY, start, day, start - timedelta(days=7), start - one))
    if (day + one).day == 1:
        start = day.replace(day=1)
        previous_end = start - one
        periods.append(Period(G.MONTHLY, start, day, previous_end.replace(day=1), previous_end))
    return periods


def _period_params(start: date, end: date) -> dict[str, Any]:
    return {"period_start_ts": day_start(start), "period_end_excl": day_start(end + timedelta(days=1))}


@dataclass
class _Totals:
    """Running figures of one snapshot, fed batch by batch (memory: a few numbers per license)."""

    licenses: int = 0
    revenue: int = 0
    top_revenue: list[tuple[int, int]] = field(default_factory=list)  # (revenue, -id) heap
    top_roi: list[tuple[float, int, int, int]] = field(default_factory=list)
    underperforming: list[tuple[float, int, list[str]]] = field(default_factory=list)
    underperforming_count: int = 0
    roi_values: list[float] = field(default_factory=list)
    utilization_values: list[float] = field(default_factory=list)
    over: int = 0
    under: int = 0
    well: int = 0
    created: int = 0
    with_conflicts: int = 0
    conflict_assets: Counter[int] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)
    bottlenecks: list[tuple[datetime, int]] = field(default_factory=list)
    bottleneck_count: int = 0
    expiring: int = 0
    renewed: int = 0
    parent_fees: int = 0
    renewal_fees: int = 0

    def add(self, f: LicenseFigures, period: Period) -> None:
        self.licenses += 1
        self.revenue += f.window_revenue_cents
        if f.window_revenue_cents > 0:
            _push(self.top_revenue, (f.window_revenue_cents, -f.id), TOP_N)

        roi = f.roi_percent
        if roi is not None:
            self.roi_values.append(roi)
            if roi > HIGH_ROI_PERCENT:
                _push(self.top_roi, (roi, -f.id, f.revenue_cents, f.cost_cents), TOP_N)
            if roi < 0:
                self.underperforming_count += 1
                reasons = ["No revenue generated"] if f.revenue_cents == 0 else ["Revenue below cost"]
                days = f.active_days
                if days is not None and days < NEW_LICENSE_DAYS:
                    reasons.append("License is still new")
                # Keep the worst LIST_LIMIT: a max-heap on ROI via the negated value.
                _push(self.underperforming, (-roi, -f.id, reasons), LIST_LIMIT)

        pct = f.utilization_percent
        if pct is not None:
            self.utilization_values.append(pct)
        if f.is_over_utilized:
            self.over += 1
        elif f.is_under_utilized:
            self.under += 1
        else:
            self.well += 1

        start_ts, end_excl = day_start(period.start), day_start(period.end + timedelta(days=1))
        if start_ts <= f.created_at < end_excl:
            self.created += 1
            if f.conflict_count:
                self.with_conflicts += 1
                self.conflict_assets[f.ip_asset_id] += 1

        self.stages[approval_stage(f.status, f.signed)] += 1
        if f.is_bottleneck:
            self.bottleneck_count += 1
            _push(self.bottlenecks, (-f.created_at.timestamp(), -f.id), LIST_LIMIT)  # the oldest

        if start_ts <= f.end_date < end_excl:
            self.expiring += 1
            self.parent_fees += f.fee_cents
            if f.live_renewals:
                self.renewed += 1
                self.renewal_fees += f.renewal_fee_cents


def _push(heap: list, item: tuple, size: int) -> None:
    """Keep the `size` largest items of a stream in a min-heap."""
    if len(heap) < size:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def build_snapshot(period: Period, *, now: datetime | None = None) -> LicensePerformanceSnapshot:
    """Compute and upsert the snapshot of `period` (unique on date + granularity).

    Queries: one per batch of in-scope licenses, plus previous window, approvals, upsert."""
    now = now or timezone.now()
    ctx = Context(day=period.end, as_of=as_of_for(period.end, now), window_start=period.start)
    totals = _Totals()
    for batch in iter_figures(PERIOD_FIGURES_SQL, ctx, _period_params(period.start, period.end)):
        for figures in batch:
            totals.add(figures, period)

    with connection.cursor() as cursor:
        previous_ctx = Context(
            day=period.previous_end,
            as_of=as_of_for(period.previous_end, now),
            window_start=period.previous_start,
        )
        cursor.execute(
            PREVIOUS_WINDOW_SQL,
            {**previous_ctx.params(), **_period_params(period.previous_start, period.previous_end)},
        )
        previous_revenue, previous_created, previous_with_conflicts = cursor.fetchone()
        cursor.execute(APPROVALS_SQL, {**_period_params(period.start, period.end), "signed_before": ctx.as_of})
        signed_count, average_hours, median_hours = cursor.fetchone()

    conflict_rate = percent(totals.with_conflicts, totals.created)
    previous_rate = percent(previous_with_conflicts, previous_created)
    metrics = {
        "period": {
            "granularity": str(period.granularity),
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "previous_start": period.previous_start.isoformat(),
            "previous_end": period.previous_end.isoformat(),
            "as_of": ctx.as_of.isoformat(),
        },
        "licenses": totals.licenses,
        "revenue": {
            "total": totals.revenue,
            "average_per_license": round(totals.revenue / totals.licenses) if totals.licenses else None,
            "previous_total": int(previous_revenue),
            "growth_percent": growth(totals.revenue, int(previous_revenue)),
            "top": [
                {"license_id": -neg_id, "revenue": revenue}
                for revenue, neg_id in sorted(totals.top_revenue, reverse=True)
            ],
        },
        "roi": {
            "licenses_with_roi": len(totals.roi_values),  # licenses with a cost (ROI defined)
            "average": round(statistics.fmean(totals.roi_values), 2) if totals.roi_values else None,
            "median": round(statistics.median(totals.roi_values), 2) if totals.roi_values else None,
            "top": [
                {"license_id": -neg_id, "roi_percent": roi, "revenue": revenue, "cost": cost}
                for roi, neg_id, revenue, cost in sorted(totals.top_roi, reverse=True)
            ],
            "underperforming_count": totals.underperforming_count,
            "underperforming": [
                {"license_id": -neg_id, "roi_percent": -neg_roi, "reasons": reasons}
                for neg_roi, neg_id, reasons in sorted(totals.underperforming, reverse=True)
            ],
        },
        "utilization": {
            "licenses_with_limit": len(totals.utilization_values),
            "average": (round(statistics.fmean(totals.utilization_values), 2) if totals.utilization_values else None),
            "over_utilized": totals.over,
            "under_utilized": totals.under,
            "well_utilized": totals.well,
        },
        "conflicts": {
            "licenses_created": totals.created,
            "with_conflicts": totals.with_conflicts,
            "conflict_rate": conflict_rate,
            "previous_conflict_rate": previous_rate,
            "trend": trend(conflict_rate, previous_rate, zero_is_stable=True),
            "top_assets": [
                {"ip_asset_id": asset_id, "licenses_with_conflicts": n}
                for asset_id, n in sorted(totals.conflict_assets.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
            ],
            # Nothing records when a conflict is resolved, so there is no resolution time
            # to measure (the original reported a constant 48 h).
            "average_resolution_hours": None,
        },
        "approvals": {
            "signed_in_period": int(signed_count),
            "average_hours": _float(average_hours),
            "median_hours": _float(median_hours),
            "stages": {
                stage: totals.stages.get(stage, 0)
                for stage in ("approved", "pending_approval", "pending_signature", "expired", "created")
            },
            "bottleneck_count": totals.bottleneck_count,
            "bottlenecks": [-neg_id for _, neg_id in sorted(totals.bottlenecks, reverse=True)],
        },
        "renewals": {
            "expiring": totals.expiring,
            "renewed": totals.renewed,
            "renewal_rate": percent(totals.renewed, totals.expiring),
            "revenue_retention": percent(totals.renewal_fees, totals.parent_fees),
        },
    }
    snapshot = LicensePerformanceSnapshot(
        date=period.end,
        granularity=period.granularity,
        period_start=period.start,
        period_end=period.end,
        total_revenue_cents=totals.revenue,
        metrics=metrics,
        calculated_at=now,
    )
    LicensePerformanceSnapshot.objects.bulk_create(
        [snapshot],
        update_conflicts=True,
        unique_fields=["date", "granularity"],
        update_fields=["period_start", "period_end", "total_revenue_cents", "metrics", "calculated_at"],
    )
    return snapshot


# --- the whole run ------------------------------------------------------------------------


def calculate(day: date, *, progress: Progress = no_progress) -> dict[str, int]:
    """Per-license metrics, then the daily / weekly / monthly snapshots ending on `day`.

    Progress: 0-70 % over the license batches, the rest shared by the snapshots."""
    now = timezone.now()
    periods = periods_for(day)

    def license_progress(done: int, total: int | None = None, note: str = "") -> None:
        progress(70 * done // total if total else 70, 100, f"{note}: {done}/{total}")

    progress(0, 100, "per-license metrics")
    licenses = update_license_metrics(day, now=now, progress=license_progress)
    for index, period in enumerate(periods):
        progress(70 + 30 * index // len(periods), 100, f"{period.granularity} snapshot")
        build_snapshot(period, now=now)
    progress(100, 100, "done")
    return {"licenses": licenses, "snapshots": len(periods)}
