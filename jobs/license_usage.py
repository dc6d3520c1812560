"""license-usage-tracking (spec B §5.5, defects fixed): five scheduled jobs.

The rules (SQL, periods, levels, overages, forecast maths, alerts) are in the
`yesgoddess.licensing.usage*` modules; these functions pick what to process and count.

- aggregate (hourly): events of yesterday and today -> daily aggregates, one statement.
- thresholds (hourly, after aggregation): warnings at 50/75/90/100 % once per level per
  period, overage rows above limit + grace.
- forecasts (03:00): one linear forecast per (license, usage type) and day.
- breach-alerts (09:00): brands whose usage is forecast to exceed a limit within 7 days,
  in-app and by email, at most once per (license, usage type) per 7 days.
- cleanup (Sundays): raw events older than USAGE_EVENT_RETENTION_DAYS (aggregates stay).

Thresholds and forecasts: a batch that fails is logged and the others still run; the
job then fails at the end (so the runtime retries it), which is safe because every step
is idempotent. Breach alerts stop at a mail-server error, after settling the batch's
claims, and re-raise it: the retry sends only what was never attempted.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from yesgoddess.licensing import usage, usage_aggregation, usage_forecasts, usage_thresholds
from yesgoddess.licensing.models import LicenseUsageEvent

from .sweeps import delete_in_chunks

log = logging.getLogger(__name__)


class UsageBatchesFailed(RuntimeError):
    """Some batches failed (each logged); the rest were processed."""


def _finish(job: str, counts: dict[str, int]) -> dict[str, int]:
    if counts.get("errors"):
        raise UsageBatchesFailed(f"{job}: {counts['errors']} batch(es) failed, see the log; counts {counts}")
    return counts


def aggregate_usage() -> dict[str, int]:
    """Re-aggregate the window's days into `license_usage_daily_aggregates` and move the
    licenses' `last_usage_at` / `total_usage_events` (`license-usage-tracking.aggregate`)."""
    return usage_aggregation.aggregate_daily_usage()


def check_usage_thresholds() -> dict[str, int]:
    """Warnings and overages for every eligible license (`license-usage-tracking.thresholds`)."""
    now = timezone.now()
    today = usage.utc_today(now)
    counts = {"licenses": 0, "checked": 0, "warnings": 0, "overages_created": 0, "overages_updated": 0}
    counts |= {"overage_notices": 0, "errors": 0}
    for license_ids in usage_thresholds.license_batches(now):
        try:
            states = usage_thresholds.load_thresholds(license_ids, today)
            for key, value in usage_thresholds.check_thresholds_batch(states, now).items():
                counts[key] += value
        except Exception:
            log.exception("usage thresholds: batch of licenses %s..%s failed", license_ids[0], license_ids[-1])
            counts["errors"] += 1
            continue
        counts["licenses"] += len(license_ids)
        counts["checked"] += len(states)
    return _finish("thresholds", counts)


def generate_usage_forecasts() -> dict[str, int]:
    """Upsert today's forecast per (license, usage type) (`license-usage-tracking.forecasts`)."""
    now = timezone.now()
    today = usage.utc_today(now)
    counts = {"licenses": 0, "thresholds": 0, "generated": 0, "errors": 0}
    for license_ids in usage_thresholds.license_batches(now):
        try:
            states = usage_thresholds.load_thresholds(license_ids, today)
            counts["generated"] += usage_forecasts.forecast_batch(states, today, now)
        except Exception:
            log.exception("usage forecasts: batch of licenses %s..%s failed", license_ids[0], license_ids[-1])
            counts["errors"] += 1
            continue
        counts["licenses"] += len(license_ids)
        counts["thresholds"] += len(states)
    return _finish("forecasts", counts)


def send_forecast_breach_alerts() -> dict[str, int]:
    """Alert brands of forecast breaches within 7 days (`license-usage-tracking.breach-alerts`)."""
    return usage_forecasts.send_breach_alerts(timezone.now())


def purge_usage_events() -> dict[str, int]:
    """Delete raw usage events that occurred more than USAGE_EVENT_RETENTION_DAYS ago
    (`license-usage-tracking.cleanup`). An event exactly that old is kept (strictly
    older ones go), matching the spec's `occurredAt < now - 90 days`."""
    cutoff = timezone.now() - timedelta(days=settings.USAGE_EVENT_RETENTION_DAYS)
    old = LicenseUsageEvent.objects.filter(occurred_at__lt=cutoff)
    return delete_in_chunks(old, settings.CLEANUP_BATCH_SECONDS).as_counts()
