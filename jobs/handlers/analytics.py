"""analytics-jobs and metrics-aggregation (spec C §2.5-§2.7, issue 11).

Enrichment lives in `yesgoddess.analytics.enrichment`, the roll-ups (one SQL statement
each, the period computed when the job runs) in `yesgoddess.analytics.aggregation`.
"""

from __future__ import annotations

from collections.abc import Callable

from yesgoddess.analytics import aggregation, enrichment


def enrich_pending_events() -> dict[str, int]:
    """analytics-jobs.enrich-events: enrich the next batch of pending events."""
    return enrichment.flush_pending()


def sweep_pending_events() -> dict[str, int]:
    """analytics-jobs.enrich-sweep: queue a flush if events are pending and none is queued."""
    return enrichment.sweep()


def enrich_event(*, event_id: int) -> dict[str, int | str]:
    """analytics-jobs.enrich-event: enrich one event; a missing id fails once."""
    return enrichment.enrich_event(event_id)


def _roll_up(run: Callable[[str | None], aggregation.RunResult], period: str | None) -> dict[str, int | str]:
    return run(period).as_counts()  # a malformed or future period fails once (PeriodError)


def aggregate_daily_metrics(*, date: str | None = None) -> dict[str, int | str]:
    """analytics-jobs.daily-metrics: yesterday's (or `date`'s) DailyMetric rows."""
    return _roll_up(aggregation.aggregate_daily_for, date)


def aggregate_post_daily_metrics(*, date: str | None = None) -> dict[str, int | str]:
    """analytics-jobs.post-daily-metrics: yesterday's (or `date`'s) PostDailyMetric rows."""
    return _roll_up(aggregation.aggregate_post_daily_for, date)


def rollup_weekly_metrics(*, week_start: str | None = None) -> dict[str, int | str]:
    """metrics-aggregation.weekly: the previous ISO week (or the week containing `week_start`)."""
    return _roll_up(aggregation.rollup_week_for, week_start)


def rollup_monthly_metrics(*, month: str | None = None) -> dict[str, int | str]:
    """metrics-aggregation.monthly: the previous month (or `month`, YYYY-MM)."""
    return _roll_up(aggregation.rollup_month_for, month)
