"""analytics-jobs and metrics-aggregation (spec C §2.5-§2.7, issue 11).

Enrichment (`yesgoddess.analytics.enrichment`):
- `analytics-jobs.enrich-events`: one flush of up to ANALYTICS_ENRICH_BATCH pending
  events; queued by the events API (one per burst, never one per event) and re-queued
  while events remain.
- `analytics-jobs.enrich-sweep` (every 5 minutes): a safety net that queues a flush when
  events are pending and none is queued (a flush lost with Redis, say).
- `analytics-jobs.enrich-event`: one event by id, whatever its state (operators, tests).

Roll-ups (`yesgoddess.analytics.aggregation`), one SQL statement each, the period
computed when the job runs (an explicit one re-aggregates that period):
- `analytics-jobs.daily-metrics` (02:00): yesterday's DailyMetric rows.
- `analytics-jobs.post-daily-metrics` (03:00): yesterday's PostDailyMetric rows.
- `metrics-aggregation.weekly` (Mondays 04:00): the previous ISO week.
- `metrics-aggregation.monthly` (2nd, 05:00): the previous month.
The seed's `weekly-monthly-metrics-aggregation` is the same roll-up (spec C §2.7,
DECISIONS): it is these two jobs, not a second implementation.
"""

from __future__ import annotations

from datetime import date

from yesgoddess.analytics import aggregation
from yesgoddess.analytics.enrichment import enrich_event_by_id, ensure_flush_queued, flush_pending, more_pending_than

from .errors import JobInputError


def enrich_pending_events() -> dict[str, int]:
    """Enrich the next batch of pending events (`analytics-jobs.enrich-events`)."""
    return flush_pending()


def sweep_pending_events() -> dict[str, int]:
    """Queue a flush if events are pending and none is queued (`analytics-jobs.enrich-sweep`)."""
    pending = more_pending_than(0)
    return {"pending": int(pending), "queued": int(pending and ensure_flush_queued())}


def enrich_event(*, event_id: int) -> dict[str, int | str]:
    """Enrich one event (`analytics-jobs.enrich-event`); a missing id fails once."""
    result = enrich_event_by_id(event_id)
    if result is None:
        raise JobInputError(f"event {event_id} does not exist")
    counts: dict[str, int | str] = dict(result.as_counts())
    if result.errors:
        counts["error"] = result.errors[event_id]
    return counts


def _day(value: str | None) -> date:
    if value is None:
        return aggregation.yesterday()
    try:
        day = aggregation.parse_day(value)
        aggregation.check_started(day)
    except aggregation.PeriodError as exc:
        raise JobInputError(str(exc)) from None
    return day


def aggregate_daily_metrics(*, date: str | None = None) -> dict[str, int | str]:
    """Yesterday's (or `date`'s) DailyMetric rows (`analytics-jobs.daily-metrics`)."""
    return aggregation.aggregate_daily(_day(date)).as_counts()


def aggregate_post_daily_metrics(*, date: str | None = None) -> dict[str, int | str]:
    """Yesterday's (or `date`'s) PostDailyMetric rows (`analytics-jobs.post-daily-metrics`)."""
    return aggregation.aggregate_post_daily(_day(date)).as_counts()


def rollup_weekly_metrics(*, week_start: str | None = None) -> dict[str, int | str]:
    """The previous ISO week (or the week containing `week_start`) (`metrics-aggregation.weekly`)."""
    day = aggregation.previous_week()[0] if week_start is None else _day(week_start)
    return aggregation.rollup_week(day).as_counts()


def rollup_monthly_metrics(*, month: str | None = None) -> dict[str, int | str]:
    """The previous month (or `month`, YYYY-MM) (`metrics-aggregation.monthly`)."""
    if month is None:
        day = aggregation.previous_month()[0]
    else:
        try:
            day = aggregation.parse_month(month)
            aggregation.check_started(day)
        except aggregation.PeriodError as exc:
            raise JobInputError(str(exc)) from None
    return aggregation.rollup_month(day).as_counts()
