"""license-performance-metrics (spec B §5.6, defects fixed): per-license ROI, utilisation,
approval time and conflicts in `metadata.performanceMetrics`, and the daily / weekly /
monthly `LicensePerformanceSnapshot` rows. The formulas live in
`yesgoddess.licensing.performance`; this module parses the input and reports progress."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

from yesgoddess.licensing import performance

from .errors import JobInputError
from .runtime import set_progress

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def target_date(value: str | None, *, now: datetime | None = None) -> date:
    """The day to (re)compute: `value` (YYYY-MM-DD), else yesterday (UTC)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    if value is None:
        return today - timedelta(days=1)
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise JobInputError(f"date must be an ISO date (YYYY-MM-DD), got {value!r}.")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise JobInputError(f"date {value!r} is not a valid date ({exc}).") from None
    if day > today:
        raise JobInputError(f"date {value} is in the future (today is {today.isoformat()} UTC).")
    return day


def calculate_performance_metrics(*, date: str | None = None) -> dict[str, int]:
    """Metrics of every license in force and the snapshots ending on `date` (default
    yesterday, UTC). Idempotent: a second run for the same date rewrites the same rows."""
    return performance.calculate(target_date(date), progress=set_progress)
