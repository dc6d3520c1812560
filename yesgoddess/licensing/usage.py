"""License usage tracking (spec B §5.5, defects fixed): what its modules share.

- `usage_events`: recording one usage event (the API's parsing and one INSERT), and
  the weekly purge of old raw events;
- `usage_aggregation`: the hourly daily aggregates and the licenses' usage counters;
- `usage_thresholds`: periods, usage per threshold, warnings and overages;
- `usage_forecasts`: forecasts and breach alerts.

They run as five scheduled jobs (`license-usage-tracking.*`), each one call:

- aggregate (hourly): events of yesterday and today -> daily aggregates, one statement
  (`usage_aggregation.aggregate_daily_usage`).
- thresholds (hourly, after aggregation): warnings at 50/75/90/100 % once per level per
  period, overage rows above limit + grace (`usage_thresholds.check_all_thresholds`).
- forecasts (03:00): one linear forecast per (license, usage type) and day
  (`usage_forecasts.generate_forecasts`).
- breach-alerts (09:00): brands whose usage is forecast to exceed a limit within 7 days,
  in-app and by email, at most once per (license, usage type) per 7 days
  (`usage_forecasts.send_breach_alerts`).
- cleanup (Sundays): raw events older than USAGE_EVENT_RETENTION_DAYS (aggregates stay)
  (`usage_events.purge_old_events`).

Thresholds and forecasts go through the licenses in batches: a batch that fails is
logged and the others still run; the run then raises `UsageBatchesFailed` at the end (so
the job is retried), which is safe because every step is idempotent. Breach alerts stop
at a mail-server error, after settling the batch's claims, and re-raise it: the retry
sends only what was never attempted.

Here: the aggregate column of each usage type, UTC days, and the late-event contract.
The API accepts events no older than the start of yesterday (UTC, `earliest_reportable`),
so every accepted event lands in a day that a later aggregation run re-aggregates
(`aggregation_window`: yesterday and today, reaching back 25 hours, so the first run after
midnight still covers the day before yesterday: an event accepted at 23:59 for that day
is not lost).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone

from .models import UsageType

# Aggregate column of each usage type; any other type (custom) counts in total_quantity.
TYPE_COLUMNS: dict[str, str] = {
    UsageType.VIEW: "total_views",
    UsageType.DOWNLOAD: "total_downloads",
    UsageType.IMPRESSION: "total_impressions",
    UsageType.CLICK: "total_clicks",
    UsageType.PLAY: "total_plays",
    UsageType.STREAM: "total_streams",
}
LATE_EVENT_LOOKBACK = timedelta(hours=25)


def utc_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def earliest_reportable(now: datetime) -> datetime:
    """Events may be reported late, but not before the start of yesterday (UTC): older
    days are no longer re-aggregated, so such an event would never be counted."""
    return day_start(utc_today(now) - timedelta(days=1))


def aggregation_window(now: datetime) -> tuple[date, date]:
    """(first day, day after the last) of the days a run re-aggregates: yesterday and
    today, plus the day before yesterday during the first hour after midnight."""
    return utc_today(now - LATE_EVENT_LOOKBACK), utc_today(now) + timedelta(days=1)


class UsageBatchesFailed(RuntimeError):
    """Some batches failed (each logged); the rest were processed."""


def raise_if_batches_failed(run: str, counts: dict[str, int]) -> dict[str, int]:
    """The counts of a batched run, or UsageBatchesFailed when any of its batches failed."""
    if counts.get("errors"):
        raise UsageBatchesFailed(f"{run}: {counts['errors']} batch(es) failed, see the log; counts {counts}")
    return counts
