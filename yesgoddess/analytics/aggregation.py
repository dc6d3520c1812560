"""Metric roll-ups (spec C §2.5.2, §2.5.3, §2.6; DECISIONS "Analytics, search, blog").

Each roll-up is ONE SQL statement: `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
UPDATE` over the period, whose data-modifying CTEs also delete the period's rows whose
group has no data any more (a re-aggregation replaces the period, it does not add to
it) and report how many rows were created, changed and deleted. An upsert only rewrites
a row whose figures changed, so running a period twice changes nothing, not even
`updated_at`. Periods are UTC and computed when the job runs:

- daily metrics (02:00): yesterday, [00:00, next 00:00) — the original dropped the last
  millisecond of the day. Events with an asset, grouped by (asset, project, license).
- post daily metrics (03:00): yesterday, per post with events that day. Posts published
  *during* the day count too (the original skipped them, so a post's launch day never
  had metrics); the post must be PUBLISHED and not deleted when the job runs.
- weekly (Mondays 04:00): the previous ISO week (Monday to Sunday).
- monthly (2nd, 05:00): the previous calendar month.

The jobs (`analytics-jobs.daily-metrics`, `analytics-jobs.post-daily-metrics`,
`metrics-aggregation.weekly`, `metrics-aggregation.monthly`) run `aggregate_daily_for`,
`aggregate_post_daily_for`, `rollup_week_for` and `rollup_month_for`: the default period
above, or the one they are given, which must have started (PeriodError otherwise). The
seed's `weekly-monthly-metrics-aggregation` is the same roll-up (spec C §2.7, DECISIONS):
it is the weekly and monthly jobs, not a second implementation.

Weekly and monthly sums come from the daily rows of the period; unique visitors are a
true distinct count over the period's raw events (not a sum of days). A visitor is the
event's actor, or its session for an anonymous event; events with neither are not
visitors. Growth compares with the previous period's row of the same group: NULL when
there is none; previous 0 -> 100 if the current value is above 0, else 0; otherwise the
percentage change, rounded to 2 decimals and capped at +-99,999,999.99 (the column).
`days_in_period` is the number of days that have a daily row (the spec's rule), and the
daily averages divide by it. A month's weekly breakdown lists the ISO weeks that overlap
the month and ended by the time it is rolled up (the 2nd): the week holding the month's
last days appears only when it ended on the 1st. The rule reads dates, not which weekly
rows happen to exist, so a re-run or a backfill gives the nightly result.

Every run writes a MetricsAggregationLog row: RUNNING, then COMPLETED with its counts
and duration, or FAILED with the error (and the job fails, so RQ retries it).
"""

from __future__ import annotations

import calendar
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from yesgoddess.core.errors import InvalidInput

from .models import MetricsAggregationLog

log = logging.getLogger(__name__)

INT_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
GROWTH_CAP = "99999999.99"
# Cache tags the dashboards file their cached figures under (spec C §2.5.2 step 4).
CACHE_TAG_KEY = "metrics:tag:{}"


# --- periods ------------------------------------------------------------------------------


def utc_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, dtime.min, tzinfo=UTC)


def yesterday(now: datetime | None = None) -> date:
    return utc_today(now) - timedelta(days=1)


def week_of(day: date) -> tuple[date, date]:
    """The ISO week (Monday, next Monday) containing `day`."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=7)


def previous_week(now: datetime | None = None) -> tuple[date, date]:
    return week_of(utc_today(now) - timedelta(days=7))


def month_of(day: date) -> tuple[date, date]:
    """(first day of the month, first day of the next month)."""
    first = day.replace(day=1)
    days = calendar.monthrange(first.year, first.month)[1]
    return first, first + timedelta(days=days)


def previous_month(now: datetime | None = None) -> tuple[date, date]:
    return month_of(utc_today(now).replace(day=1) - timedelta(days=1))


class PeriodError(InvalidInput):
    """A period argument that cannot be aggregated."""


def parse_day(value: str, what: str = "date") -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise PeriodError(f"{what} must be YYYY-MM-DD, not {value!r}.") from None


def parse_month(value: str) -> date:
    try:
        return date.fromisoformat(f"{value}-01") if len(value) == 7 else date.fromisoformat(value)
    except (TypeError, ValueError):
        raise PeriodError(f"month must be YYYY-MM, not {value!r}.") from None


def check_started(start: date, now: datetime | None = None) -> None:
    if start > utc_today(now):
        raise PeriodError(f"the period starting {start} has not started yet.")


# --- SQL pieces ------------------------------------------------------------------------------

# A visitor: the actor, else the session (anonymous); NULL (not counted) without either.
# Compared byte by byte ("C"): the same equality as the database's deterministic collation,
# without its slower comparisons in the sort behind the distinct count.
VISITOR = "(COALESCE('a:' || e.actor_id, 's:' || NULLIF(e.session_id, '')) COLLATE \"C\")"


def int_prop(key: str, alias: str = "e.props_json") -> str:
    """An integer read from props (0 when missing or not a number; clamped, never raises)."""
    return (
        f"CASE WHEN jsonb_typeof({alias} -> '{key}') = 'number' "
        f"THEN trunc(LEAST(GREATEST(({alias} ->> '{key}')::numeric, -1e15), 1e15))::bigint ELSE 0 END"
    )


def num_prop(key: str, alias: str = "e.props_json") -> str:
    """A number read from props as numeric (0 when missing or not a number)."""
    return (
        f"CASE WHEN jsonb_typeof({alias} -> '{key}') = 'number' "
        f"THEN LEAST(GREATEST(({alias} ->> '{key}')::numeric, -1e15), 1e15) ELSE 0 END"
    )


def _key(alias: str) -> str:
    """A hashable join key of the (project, asset, license) triple (NULL -> 0; ids >= 1)."""
    return f"COALESCE({alias}.project_id, 0), COALESCE({alias}.ip_asset_id, 0), COALESCE({alias}.license_id, 0)"


def _same_group(a: str, b: str) -> str:
    return " AND ".join(
        f"COALESCE({a}.{c}, 0) = COALESCE({b}.{c}, 0)" for c in ("project_id", "ip_asset_id", "license_id")
    )


def _changed(table_alias: str, columns: tuple[str, ...]) -> str:
    return (
        f"({', '.join(f'{table_alias}.{c}' for c in columns)}) IS DISTINCT FROM "
        f"({', '.join(f'EXCLUDED.{c}' for c in columns)})"
    )


def _growth(current: str, previous: str, found: str) -> str:
    return (
        f"CASE WHEN NOT {found} THEN NULL "
        f"WHEN {previous} = 0 THEN CASE WHEN {current} > 0 THEN 100 ELSE 0 END "
        f"ELSE LEAST(GREATEST(round(({current} - {previous}) * 100.0 / {previous}, 2), -{GROWTH_CAP}), "
        f"{GROWTH_CAP}) END"
    )


COUNTS = """
SELECT (SELECT count(*) FROM {source}),
       (SELECT count(*) FILTER (WHERE inserted) FROM upserted),
       (SELECT count(*) FILTER (WHERE NOT inserted) FROM upserted),
       (SELECT count(*) FROM stale)
"""

DAILY_COLUMNS = ("views", "clicks", "conversions", "revenue_cents", "unique_visitors", "engagement_time")

DAILY_SQL = f"""
WITH agg AS (
  SELECT ip_asset_id, project_id, license_id,
    count(*) FILTER (WHERE kind = 1) AS views,
    count(*) FILTER (WHERE kind = 2) AS clicks,
    count(*) FILTER (WHERE kind = 3) AS conversions,
    COALESCE(sum(revenue), 0) AS revenue_cents,
    count(DISTINCT visitor) AS unique_visitors,
    COALESCE(sum(engagement), 0) AS engagement_time
  FROM (
    -- Each event reduced to what the figures need before the rows are sorted into groups:
    -- sorting whole events (props and all) spilled 66 MB to disk at 64 MB work_mem.
    -- OFFSET 0 keeps the planner from folding this back into the grouping.
    SELECT e.ip_asset_id, e.project_id, e.license_id, {VISITOR} AS visitor,
      CASE e.event_type WHEN 'asset_viewed' THEN 1 WHEN 'asset_downloaded' THEN 2 WHEN 'license_clicked' THEN 2
        WHEN 'license_created' THEN 3 ELSE 0 END AS kind,
      {int_prop("revenueCents")} AS revenue,
      {int_prop("engagementTime")} AS engagement
    FROM events e
    WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s AND e.ip_asset_id IS NOT NULL
    OFFSET 0
  ) AS reduced
  GROUP BY 1, 2, 3
), upserted AS (
  INSERT INTO daily_metrics AS m
    (date, project_id, ip_asset_id, license_id, {", ".join(DAILY_COLUMNS)}, created_at, updated_at)
  SELECT %(day)s, project_id, ip_asset_id, license_id,
    LEAST(views, {INT_MAX}), LEAST(clicks, {INT_MAX}), LEAST(conversions, {INT_MAX}),
    LEAST(GREATEST(revenue_cents, -{BIGINT_MAX}), {BIGINT_MAX}), LEAST(unique_visitors, {INT_MAX}),
    LEAST(GREATEST(engagement_time, -{INT_MAX}), {INT_MAX}), %(now)s, %(now)s
  FROM agg
  ON CONFLICT ON CONSTRAINT daily_metric_key DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in DAILY_COLUMNS)}, updated_at = EXCLUDED.updated_at
  WHERE {_changed("m", DAILY_COLUMNS)}
  RETURNING (m.xmax = 0) AS inserted
), stale AS (
  DELETE FROM daily_metrics m
  WHERE m.date = %(day)s AND m.ip_asset_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM agg a WHERE {_same_group("a", "m")})
  RETURNING 1
)
{COUNTS.format(source="agg")}
"""

ROLLUP_COLUMNS = (
    "total_views",
    "total_clicks",
    "total_conversions",
    "total_revenue_cents",
    "unique_visitors",
    "total_engagement_time",
    "views_growth_percent",
    "clicks_growth_percent",
    "conversions_growth_percent",
    "revenue_growth_percent",
    "avg_daily_views",
    "avg_daily_clicks",
    "avg_daily_conversions",
    "avg_daily_revenue_cents",
    "days_in_period",
)


def _rollup_rows(previous_table: str, previous_filter: str) -> str:
    """CTEs `sums`, `visitors`, `prev` and `rows` of a weekly or monthly roll-up."""
    return f"""
sums AS (
  SELECT d.project_id, d.ip_asset_id, d.license_id,
    sum(d.views) AS views, sum(d.clicks) AS clicks, sum(d.conversions) AS conversions,
    sum(d.revenue_cents) AS revenue, sum(d.engagement_time) AS engagement, count(*) AS days
  FROM daily_metrics d
  WHERE d.date >= %(start)s AND d.date < %(end)s
  GROUP BY 1, 2, 3
), visitors AS (
  SELECT e.project_id, e.ip_asset_id, e.license_id, count(DISTINCT {VISITOR}) AS visitors
  FROM events e
  WHERE e.occurred_at >= %(start_ts)s AND e.occurred_at < %(end_ts)s AND e.ip_asset_id IS NOT NULL
  GROUP BY 1, 2, 3
), prev AS (
  SELECT p.project_id, p.ip_asset_id, p.license_id, p.total_views, p.total_clicks, p.total_conversions,
    p.total_revenue_cents
  FROM {previous_table} p WHERE {previous_filter}
), rows AS (
  SELECT s.project_id, s.ip_asset_id, s.license_id,
    LEAST(s.views, {INT_MAX}) AS total_views, LEAST(s.clicks, {INT_MAX}) AS total_clicks,
    LEAST(s.conversions, {INT_MAX}) AS total_conversions,
    LEAST(GREATEST(s.revenue, -{BIGINT_MAX}), {BIGINT_MAX}) AS total_revenue_cents,
    LEAST(COALESCE(v.visitors, 0), {INT_MAX}) AS unique_visitors,
    LEAST(GREATEST(s.engagement, -{BIGINT_MAX}), {BIGINT_MAX}) AS total_engagement_time,
    {_growth("s.views", "p.total_views", "(p.total_views IS NOT NULL)")} AS views_growth_percent,
    {_growth("s.clicks", "p.total_clicks", "(p.total_views IS NOT NULL)")} AS clicks_growth_percent,
    {_growth("s.conversions", "p.total_conversions", "(p.total_views IS NOT NULL)")} AS conversions_growth_percent,
    {_growth("s.revenue", "p.total_revenue_cents", "(p.total_views IS NOT NULL)")} AS revenue_growth_percent,
    round(s.views::numeric / s.days, 2) AS avg_daily_views,
    round(s.clicks::numeric / s.days, 2) AS avg_daily_clicks,
    round(s.conversions::numeric / s.days, 2) AS avg_daily_conversions,
    round(s.revenue::numeric / s.days, 2) AS avg_daily_revenue_cents,
    s.days AS days_in_period
  FROM sums s
  LEFT JOIN visitors v ON ({_key("v")}) = ({_key("s")})
  LEFT JOIN prev p ON ({_key("p")}) = ({_key("s")})
)"""


WEEKLY_SQL = f"""
WITH {_rollup_rows("weekly_metrics", "p.week_start_date = %(previous)s")},
upserted AS (
  INSERT INTO weekly_metrics AS m
    (week_start_date, week_end_date, project_id, ip_asset_id, license_id, {", ".join(ROLLUP_COLUMNS)},
     aggregation_version, metadata, created_at, updated_at)
  SELECT %(start)s, %(last)s, project_id, ip_asset_id, license_id, {", ".join(ROLLUP_COLUMNS)},
    '1.0', '{{}}'::jsonb, %(now)s, %(now)s
  FROM rows
  ON CONFLICT ON CONSTRAINT weekly_metric_key DO UPDATE SET
    week_end_date = EXCLUDED.week_end_date, {", ".join(f"{c} = EXCLUDED.{c}" for c in ROLLUP_COLUMNS)},
    updated_at = EXCLUDED.updated_at
  WHERE {_changed("m", ("week_end_date", *ROLLUP_COLUMNS))}
  RETURNING (m.xmax = 0) AS inserted
), stale AS (
  DELETE FROM weekly_metrics m
  WHERE m.week_start_date = %(start)s AND NOT EXISTS (SELECT 1 FROM rows r WHERE {_same_group("r", "m")})
  RETURNING 1
)
{COUNTS.format(source="rows")}
"""

MONTHLY_SQL = f"""
WITH {_rollup_rows("monthly_metrics", "p.year = %(previous_year)s AND p.month = %(previous_month)s")},
breakdown AS (
  SELECT w.project_id, w.ip_asset_id, w.license_id, count(*) AS weeks,
    jsonb_agg(jsonb_build_object(
      'weekStart', w.week_start_date, 'weekEnd', w.week_end_date, 'views', w.total_views,
      'clicks', w.total_clicks, 'conversions', w.total_conversions, 'revenueCents', w.total_revenue_cents,
      'viewsGrowth', w.views_growth_percent) ORDER BY w.week_start_date) AS weeks_json
  FROM weekly_metrics w
  WHERE w.week_start_date >= %(first_monday)s AND w.week_end_date <= %(breakdown_until)s
  GROUP BY 1, 2, 3
), upserted AS (
  INSERT INTO monthly_metrics AS m
    (month_start_date, month_end_date, year, month, project_id, ip_asset_id, license_id,
     {", ".join(ROLLUP_COLUMNS)}, weeks_in_month, weekly_breakdown, aggregation_version, metadata,
     created_at, updated_at)
  SELECT %(start)s, %(last)s, %(year)s, %(month)s, r.project_id, r.ip_asset_id, r.license_id,
    {", ".join(f"r.{c}" for c in ROLLUP_COLUMNS)}, COALESCE(b.weeks, 0), COALESCE(b.weeks_json, '[]'::jsonb),
    '1.0', '{{}}'::jsonb, %(now)s, %(now)s
  FROM rows r LEFT JOIN breakdown b ON ({_key("b")}) = ({_key("r")})
  ON CONFLICT ON CONSTRAINT monthly_metric_key DO UPDATE SET
    month_start_date = EXCLUDED.month_start_date, month_end_date = EXCLUDED.month_end_date,
    {", ".join(f"{c} = EXCLUDED.{c}" for c in ROLLUP_COLUMNS)},
    weeks_in_month = EXCLUDED.weeks_in_month, weekly_breakdown = EXCLUDED.weekly_breakdown,
    updated_at = EXCLUDED.updated_at
  WHERE {_changed("m", ("month_start_date", "month_end_date", *ROLLUP_COLUMNS, "weeks_in_month", "weekly_breakdown"))}
  RETURNING (m.xmax = 0) AS inserted
), stale AS (
  DELETE FROM monthly_metrics m
  WHERE m.year = %(year)s AND m.month = %(month)s AND NOT EXISTS (SELECT 1 FROM rows r WHERE {_same_group("r", "m")})
  RETURNING 1
)
{COUNTS.format(source="rows")}
"""

# --- post daily metrics (spec C §2.5.3) ---------------------------------------------------

# Host of a referrer URL without a leading "www."; NULL when it is not an absolute URL.
REFERRER_DOMAIN = (
    "NULLIF(regexp_replace(lower(substring(referrer FROM "
    "'^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)')), '^www\\.', ''), '')"
)
# JavaScript truthiness of a JSON value (the original's `if (props.conversionValue)`).
TRUTHY = (
    "CASE jsonb_typeof(e.p -> 'conversionValue') WHEN 'boolean' THEN (e.p -> 'conversionValue') = 'true'::jsonb "
    "WHEN 'number' THEN (e.p ->> 'conversionValue')::numeric <> 0 "
    "WHEN 'string' THEN (e.p -> 'conversionValue') <> '\"\"'::jsonb "
    "WHEN 'object' THEN true WHEN 'array' THEN true ELSE false END"
)
SOURCE = """CASE
  WHEN NOT e.has_attribution THEN 'direct'
  WHEN e.utm_medium LIKE '%%email%%' THEN 'email'
  WHEN e.utm_medium LIKE '%%social%%' OR e.utm_source LIKE '%%facebook%%' OR e.utm_source LIKE '%%twitter%%'
    THEN 'social'
  WHEN e.utm_medium LIKE '%%organic%%' OR (e.utm_medium IS NULL AND e.referrer LIKE '%%google%%') THEN 'organic'
  WHEN e.referrer IS NOT NULL AND e.utm_medium IS NULL THEN 'referral'
  ELSE 'direct' END"""

POST_COLUMNS = (
    "views",
    "unique_visitors",
    "total_engagement_time_seconds",
    "avg_engagement_time_seconds",
    "avg_scroll_depth_percentage",
    "cta_clicks",
    "bounce_rate",
    "conversion_rate",
    "top_referrers",
    "top_cta_types",
    "device_breakdown",
    "source_breakdown",
)

POST_DAILY_SQL = f"""
WITH ev AS (
  SELECT e.post_id, e.event_type, NULLIF(e.session_id, '') AS session_id, e.props_json AS p,
    a.event_id IS NOT NULL AS has_attribution, lower(NULLIF(a.referrer, '')) AS referrer,
    lower(NULLIF(a.utm_source, '')) AS utm_source, lower(NULLIF(a.utm_medium, '')) AS utm_medium,
    lower(a.device_type) AS device_type
  FROM events e
  JOIN posts po ON po.id = e.post_id
  LEFT JOIN attribution a ON a.event_id = e.id
  WHERE e.occurred_at >= %(start)s AND e.occurred_at < %(end)s AND e.post_id IS NOT NULL
    AND po.status = 'PUBLISHED' AND po.deleted_at IS NULL AND po.published_at < %(end)s
), base AS (
  SELECT e.post_id,
    count(*) FILTER (WHERE e.event_type = 'post_viewed') AS views,
    count(DISTINCT e.session_id) FILTER (WHERE e.event_type = 'post_viewed') AS unique_visitors,
    COALESCE(sum({num_prop("engagementTimeSeconds", "e.p")}) FILTER (WHERE e.event_type = 'post_engagement_time'), 0)
      AS engagement,
    count(*) FILTER (WHERE e.event_type = 'post_engagement_time') AS engagement_events,
    COALESCE(avg({num_prop("scrollDepthPercentage", "e.p")}) FILTER (WHERE e.event_type = 'post_scroll_depth'), 0)
      AS avg_scroll,
    count(*) FILTER (WHERE e.event_type = 'post_cta_clicked') AS cta_clicks,
    count(DISTINCT COALESCE(e.session_id, '')) FILTER (
      WHERE e.event_type = 'post_engagement_time' AND {num_prop("engagementTimeSeconds", "e.p")} < 30) AS bounced,
    count(*) FILTER (WHERE e.device_type = 'desktop') AS desktop,
    count(*) FILTER (WHERE e.device_type = 'mobile') AS mobile,
    count(*) FILTER (WHERE e.device_type = 'tablet') AS tablet,
    count(*) FILTER (WHERE {SOURCE} = 'organic') AS organic,
    count(*) FILTER (WHERE {SOURCE} = 'social') AS social,
    count(*) FILTER (WHERE {SOURCE} = 'direct') AS direct,
    count(*) FILTER (WHERE {SOURCE} = 'referral') AS referral,
    count(*) FILTER (WHERE {SOURCE} = 'email') AS email
  FROM ev e
  GROUP BY e.post_id
), referrers AS (
  SELECT post_id, jsonb_agg(jsonb_build_object('domain', domain, 'visits', visits) ORDER BY visits DESC, domain)
    AS top
  FROM (
    SELECT post_id, domain, visits, row_number() OVER (PARTITION BY post_id ORDER BY visits DESC, domain) AS rank
    FROM (
      SELECT post_id, COALESCE({REFERRER_DOMAIN}, 'direct') AS domain, count(*) AS visits
      FROM ev WHERE event_type = 'post_viewed' GROUP BY 1, 2
    ) counted
  ) ranked
  WHERE rank <= 10
  GROUP BY post_id
), ctas AS (
  SELECT post_id,
    jsonb_agg(jsonb_build_object('type', type, 'clicks', clicks, 'conversions', conversions)
      ORDER BY clicks DESC, type) AS top
  FROM (
    SELECT e.post_id, COALESCE(NULLIF(e.p ->> 'ctaType', ''), 'unknown') AS type, count(*) AS clicks,
      count(*) FILTER (WHERE {TRUTHY}) AS conversions
    FROM ev e WHERE e.event_type = 'post_cta_clicked' GROUP BY 1, 2
  ) counted
  GROUP BY post_id
), rows AS (
  SELECT b.post_id, LEAST(b.views, {INT_MAX}) AS views, LEAST(b.unique_visitors, {INT_MAX}) AS unique_visitors,
    LEAST(GREATEST(round(b.engagement), -{BIGINT_MAX}), {BIGINT_MAX})::bigint AS total_engagement_time_seconds,
    CASE WHEN b.engagement_events > 0 THEN (b.engagement / b.engagement_events)::float8 ELSE 0 END
      AS avg_engagement_time_seconds,
    b.avg_scroll::float8 AS avg_scroll_depth_percentage,
    LEAST(b.cta_clicks, {INT_MAX}) AS cta_clicks,
    CASE WHEN b.unique_visitors > 0 THEN LEAST(b.bounced::numeric * 100 / b.unique_visitors, 100)::float8 ELSE 0 END
      AS bounce_rate,
    CASE WHEN b.views > 0 THEN (b.cta_clicks::numeric * 100 / b.views)::float8 ELSE 0 END AS conversion_rate,
    COALESCE(r.top, '[]'::jsonb) AS top_referrers,
    COALESCE(c.top, '[]'::jsonb) AS top_cta_types,
    jsonb_build_object('desktop', b.desktop, 'mobile', b.mobile, 'tablet', b.tablet) AS device_breakdown,
    jsonb_build_object('organic', b.organic, 'social', b.social, 'direct', b.direct, 'referral', b.referral,
      'email', b.email) AS source_breakdown
  FROM base b
  LEFT JOIN referrers r ON r.post_id = b.post_id
  LEFT JOIN ctas c ON c.post_id = b.post_id
), upserted AS (
  INSERT INTO post_daily_metrics AS m
    (date, post_id, {", ".join(POST_COLUMNS)}, shares, email_captures, email_capture_rate,
     social_share_breakdown, created_at, updated_at)
  SELECT %(day)s, post_id, {", ".join(POST_COLUMNS)}, 0, 0, 0, '{{}}'::jsonb, %(now)s, %(now)s
  FROM rows
  ON CONFLICT ON CONSTRAINT post_daily_metric_key DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in POST_COLUMNS)}, updated_at = EXCLUDED.updated_at
  WHERE {_changed("m", POST_COLUMNS)}
  RETURNING (m.xmax = 0) AS inserted
), stale AS (
  DELETE FROM post_daily_metrics m
  WHERE m.date = %(day)s AND NOT EXISTS (SELECT 1 FROM rows r WHERE r.post_id = m.post_id)
  RETURNING 1
)
{COUNTS.format(source="rows")}
"""


# --- running one roll-up ------------------------------------------------------------------


@dataclass
class RunResult:
    job_type: str
    period_start: date
    period_end: date  # last day included
    groups: int
    created: int
    updated: int
    deleted: int
    log_id: int

    def as_counts(self) -> dict[str, int | str]:
        return {
            "period": self.period_start.isoformat()
            if self.period_start == self.period_end
            else f"{self.period_start}..{self.period_end}",
            "groups": self.groups,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.groups - self.created - self.updated,
            "deleted": self.deleted,
        }


def _run(
    job_type: str,
    first: date,
    last: date,
    sql: str,
    params: dict,
    after: Callable[[], None] | None = None,
    group_scan: bool = True,
) -> RunResult:
    """Run one roll-up statement inside its log row (RUNNING -> COMPLETED / FAILED).

    `group_scan`: the statement groups a period's events by (asset, project, license)."""
    entry = MetricsAggregationLog.objects.create(
        job_type=job_type, period_start_date=first, period_end_date=last, started_at=timezone.now()
    )
    began = time.monotonic()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Room for the sort behind the distinct visitor counts.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            if group_scan:
                # No plain index scan: an index on a group column would hand the rows over
                # in group order, one random heap read each (4x slower at 1M events than
                # reading the period and sorting it). The period's rows are still found
                # through event_occurred_idx (a bitmap scan).
                cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute(sql, {**params, "now": timezone.now()})
            groups, created, updated, deleted = cursor.fetchone()
    except Exception as exc:
        MetricsAggregationLog.objects.filter(pk=entry.pk).update(
            status=MetricsAggregationLog.Status.FAILED,
            completed_at=timezone.now(),
            errors_count=1,
            duration_seconds=Decimal(f"{time.monotonic() - began:.2f}"),
            error_message=f"{type(exc).__name__}: {exc}"[:4000],
            metadata={"traceback": traceback.format_exc()[-8000:]},
        )
        raise
    MetricsAggregationLog.objects.filter(pk=entry.pk).update(
        status=MetricsAggregationLog.Status.COMPLETED,
        completed_at=timezone.now(),
        duration_seconds=Decimal(f"{time.monotonic() - began:.2f}"),
        records_processed=groups,
        records_created=created,
        records_updated=updated,
        records_deleted=deleted,
        metadata={"unchanged": groups - created - updated},
    )
    if after is not None:
        after()
    return RunResult(job_type, first, last, groups, created, updated, deleted, entry.pk)


def invalidate_metric_caches(tags: list[str]) -> None:
    """Delete the cached figures filed under each tag, then the tag set itself."""
    from yesgoddess.core.redis import redis_connection

    conn = redis_connection()
    for tag in tags:
        key = CACHE_TAG_KEY.format(tag)
        members = conn.smembers(key)
        with conn.pipeline() as pipe:
            if members:
                pipe.delete(*members)
            pipe.delete(key)
            pipe.execute()


def aggregate_daily(day: date) -> RunResult:
    params = {"day": day, "start": day_start(day), "end": day_start(day + timedelta(days=1))}
    tags = [f"daily:{day.isoformat()}", "weekly:current", "monthly:current", "dashboard:all"]
    return _run("daily", day, day, DAILY_SQL, params, after=lambda: invalidate_metric_caches(tags))


def aggregate_post_daily(day: date) -> RunResult:
    params = {"day": day, "start": day_start(day), "end": day_start(day + timedelta(days=1))}
    # Index scans stay on: each event's attribution row is looked up by its event id.
    return _run("post_daily", day, day, POST_DAILY_SQL, params, group_scan=False)


def rollup_week(any_day: date) -> RunResult:
    start, end = week_of(any_day)
    params = {
        "start": start,
        "end": end,
        "last": end - timedelta(days=1),
        "start_ts": day_start(start),
        "end_ts": day_start(end),
        "previous": start - timedelta(days=7),
    }
    return _run("weekly", start, end - timedelta(days=1), WEEKLY_SQL, params)


def rollup_month(any_day: date) -> RunResult:
    start, end = month_of(any_day)
    last = end - timedelta(days=1)
    previous = month_of(start - timedelta(days=1))[0]
    params = {
        "start": start,
        "end": end,
        "last": last,
        "start_ts": day_start(start),
        "end_ts": day_start(end),
        "year": start.year,
        "month": start.month,
        "previous_year": previous.year,
        "previous_month": previous.month,
        "first_monday": week_of(start)[0],
        "breakdown_until": end,
    }
    return _run("monthly", start, last, MONTHLY_SQL, params)


# --- the jobs' periods: the default one, or the one asked for --------------------------------


def requested_day(value: str | None, now: datetime | None = None) -> date:
    """`value` (YYYY-MM-DD, a day that has started), else yesterday."""
    if value is None:
        return yesterday(now)
    day = parse_day(value)
    check_started(day, now)
    return day


def requested_month(value: str | None, now: datetime | None = None) -> date:
    """The first day of `value` (YYYY-MM, a month that has started), else of the previous month."""
    if value is None:
        return previous_month(now)[0]
    day = parse_month(value)
    check_started(day, now)
    return day


def aggregate_daily_for(day: str | None = None) -> RunResult:
    """DailyMetric rows of `day` (default yesterday)."""
    return aggregate_daily(requested_day(day))


def aggregate_post_daily_for(day: str | None = None) -> RunResult:
    """PostDailyMetric rows of `day` (default yesterday)."""
    return aggregate_post_daily(requested_day(day))


def rollup_week_for(week_start: str | None = None) -> RunResult:
    """The ISO week containing `week_start` (default the previous week)."""
    return rollup_week(previous_week()[0] if week_start is None else requested_day(week_start))


def rollup_month_for(month: str | None = None) -> RunResult:
    """The month `month` (YYYY-MM, default the previous month)."""
    return rollup_month(requested_month(month))


# --- backfill ------------------------------------------------------------------------------


def backfill(first: date, last: date, *, posts: bool = True, now: datetime | None = None) -> list[RunResult]:
    """Re-aggregate every day of [first, last] and every ISO week and calendar month that
    overlaps the range and has ended, in the order the nightly schedule runs them (a day
    at 02:00 the next day, its posts at 03:00, a week the next Monday at 04:00, a month on
    the 2nd at 05:00), so the result is the one the nightly jobs produce: a period's growth
    reads the period before, and a month's weekly breakdown the weeks rolled up by then."""
    if last < first:
        raise PeriodError("--to is before --from.")
    today = utc_today(now)
    if last >= today:
        raise PeriodError(f"--to must be before today ({today}): a day is aggregated once it has ended.")
    runs: list[tuple[datetime, Callable[[date], RunResult], date]] = []
    day = first
    while day <= last:
        runs.append((day_start(day + timedelta(days=1)) + timedelta(hours=2), aggregate_daily, day))
        if posts:
            runs.append((day_start(day + timedelta(days=1)) + timedelta(hours=3), aggregate_post_daily, day))
        day += timedelta(days=1)
    week, week_end = week_of(first)
    while week <= last and week_end <= today:
        runs.append((day_start(week_end) + timedelta(hours=4), rollup_week, week))
        week, week_end = week_end, week_end + timedelta(days=7)
    month, month_end = month_of(first)
    while month <= last and month_end <= today:
        runs.append((day_start(month_end + timedelta(days=1)) + timedelta(hours=5), rollup_month, month))
        month, month_end = month_end, month_of(month_end)[1]
    runs.sort(key=lambda run: run[0])
    return [run(period) for _, run, period in runs]
