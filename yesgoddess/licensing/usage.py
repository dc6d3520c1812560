"""License usage tracking (spec B §5.5, defects fixed): what its modules share.

- `usage_events`: recording one usage event (the API's parsing and one INSERT);
- `usage_aggregation`: the hourly daily aggregates and the licenses' usage counters;
- `usage_thresholds`: periods, usage per threshold, warnings and overages;
- `usage_forecasts`: forecasts and breach alerts.
The jobs in `jobs/license_usage.py` are thin; the rules live in those modules.

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
