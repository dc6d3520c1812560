"""The whole cron table, as data. Times are UTC (settings.TIME_ZONE is UTC).

`python manage.py schedule_jobs` makes rq-scheduler match this table; no other code
registers cron entries. Each entry's `id` is stable: it names the entry in Redis
(prefixed with ENTRY_PREFIX) and the deduplication key of the runs it enqueues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Entries this project owns in rq-scheduler carry this id prefix; schedule_jobs leaves
# every other scheduled job alone. Letters, digits, - and _ only (rq >= 2.8 job ids).
ENTRY_PREFIX = "yg-cron-"


@dataclass(frozen=True)
class CronEntry:
    id: str
    cron: str  # five fields, UTC
    job: str  # registry name
    note: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def scheduler_id(self) -> str:
        return ENTRY_PREFIX + self.id


SCHEDULE: tuple[CronEntry, ...] = (
    CronEntry("idempotency-cleanup", "0 */6 * * *", "idempotency-cleanup", "Every 6 hours, on the hour."),
    CronEntry("notification-cleanup", "0 3 * * *", "notification-cleanup", "Daily at 03:00."),
    CronEntry("token-cleanup", "0 * * * *", "token-cleanup", "Hourly, on the hour."),
    CronEntry("session-cleanup", "0 */6 * * *", "session-cleanup", "Every 6 hours, on the hour."),
    CronEntry("account-deletion", "0 2 * * *", "account-deletion", "Daily at 02:00."),
    CronEntry("failed-login-monitor", "*/15 * * * *", "failed-login-monitor", "Every 15 minutes."),
    CronEntry("password-security-cleanup", "*/15 * * * *", "password-security-cleanup", "Every 15 minutes."),
    CronEntry("upload-cleanup", "0 * * * *", "upload-cleanup", "Hourly, on the hour."),
    CronEntry(
        "asset-virus-scan-sweep",
        "*/10 * * * *",
        "asset-virus-scan.sweep",
        "Every 10 minutes: once clamd answers, rescan assets whose scan failed on our side.",
    ),
    CronEntry("asset-cleanup", "0 2 * * *", "asset-cleanup", "Daily at 02:00."),
    CronEntry("ownership-verification", "0 2 * * *", "ownership-verification", "Daily at 02:00."),
    CronEntry("storage-metrics-calculation", "0 2 * * *", "storage-metrics-calculation", "Daily at 02:00."),
    CronEntry("license-expiry-monitor", "0 9 * * *", "license-expiry-monitor", "Daily at 09:00."),
    CronEntry("license-auto-expiry", "0 * * * *", "license-auto-expiry", "Hourly, on the hour."),
    CronEntry("license-management", "0 2 * * *", "license-management", "Daily at 02:00."),
    CronEntry("license-renewal-workflow", "0 2 * * *", "license-renewal-workflow", "Daily at 02:00."),
    CronEntry(
        "license-usage-aggregate",
        "5 * * * *",
        "license-usage-tracking.aggregate",
        "Hourly at :05 (re-aggregates yesterday too, so no separate final pass).",
    ),
    CronEntry(
        "license-usage-thresholds",
        "15 * * * *",
        "license-usage-tracking.thresholds",
        "Hourly at :15, after the aggregation.",
    ),
    CronEntry("license-usage-forecasts", "0 3 * * *", "license-usage-tracking.forecasts", "Daily at 03:00."),
    CronEntry("license-usage-breach-alerts", "0 9 * * *", "license-usage-tracking.breach-alerts", "Daily at 09:00."),
    CronEntry("license-usage-cleanup", "0 4 * * 0", "license-usage-tracking.cleanup", "Sundays at 04:00."),
    CronEntry("license-performance-metrics", "0 2 * * *", "license-performance-metrics", "Daily at 02:00."),
    CronEntry("brand-verification-reminder", "0 9 * * *", "brand-verification-reminder", "Daily at 09:00."),
    CronEntry("brand-inactivity-check", "0 0 * * 1", "brand-inactivity-check", "Mondays at 00:00."),
    CronEntry("brand-data-cleanup", "0 0 1 * *", "brand-data-cleanup", "1st of the month at 00:00."),
    CronEntry("creator-onboarding-reminder", "0 10 * * 1", "creator-onboarding-reminder", "Mondays at 10:00."),
    CronEntry(
        "creator-monthly-report",
        "0 9 1 * *",
        "creator-monthly-report",
        "1st of the month at 09:00: the previous calendar month; earnings of the runs locked since the last report.",
    ),
    CronEntry("project-expiry-check", "0 2 * * *", "project-expiry-check", "Daily at 02:00."),
    CronEntry(
        "notification-digest-daily",
        "0 9 * * *",
        "notification-digest",
        "Daily at 09:00: digests for DAILY preferences.",
        {"frequency": "DAILY"},
    ),
    CronEntry(
        "notification-digest-weekly",
        "0 9 * * 1",
        "notification-digest",
        "Mondays at 09:00: digests for WEEKLY preferences.",
        {"frequency": "WEEKLY"},
    ),
    CronEntry(
        "notification-delivery-sweep",
        "*/5 * * * *",
        "notification-delivery.sweep",
        "Every 5 minutes: queue a flush if pending emails were left without one.",
    ),
    CronEntry(
        "email-digest-daily",
        "0 9 * * *",
        "email-digest",
        "Daily at 09:00: daily digests of deferred bulk email.",
        {"frequency": "DAILY"},
    ),
    CronEntry(
        "email-digest-weekly",
        "0 9 * * 1",
        "email-digest",
        "Mondays at 09:00: weekly digests of deferred bulk email.",
        {"frequency": "WEEKLY"},
    ),
    CronEntry("reputation-monitoring", "0 2 * * *", "reputation-monitoring", "Daily at 02:00."),
    CronEntry(
        "message-digest-daily",
        "0 9 * * *",
        "message-digest",
        "Daily at 09:00: message digests for DAILY preferences.",
        {"frequency": "DAILY"},
    ),
    CronEntry(
        "message-digest-weekly",
        "0 9 * * 1",
        "message-digest",
        "Mondays at 09:00: message digests for WEEKLY preferences.",
        {"frequency": "WEEKLY"},
    ),
    CronEntry(
        "search-index-rebuild",
        "0 3 * * 0",
        "search-index-update.rebuild",
        "Sundays at 03:00: every search vector recomputed in primary-key batches.",
    ),
    CronEntry("scheduled-blog-publishing", "* * * * *", "scheduled-blog-publishing", "Every minute."),
    CronEntry(
        "analytics-enrich-sweep",
        "*/5 * * * *",
        "analytics-jobs.enrich-sweep",
        "Every 5 minutes: a safety net; the events API queues enrichment itself.",
    ),
    CronEntry("analytics-daily-metrics", "0 2 * * *", "analytics-jobs.daily-metrics", "Daily at 02:00 (yesterday)."),
    CronEntry(
        "analytics-post-daily-metrics",
        "0 3 * * *",
        "analytics-jobs.post-daily-metrics",
        "Daily at 03:00 (yesterday).",
    ),
    CronEntry(
        "metrics-aggregation-weekly",
        "0 4 * * 1",
        "metrics-aggregation.weekly",
        "Mondays at 04:00 (the previous ISO week).",
    ),
    CronEntry(
        "metrics-aggregation-monthly",
        "0 5 2 * *",
        "metrics-aggregation.monthly",
        "2nd of the month at 05:00 (the previous month).",
    ),
    CronEntry(
        "cron-watchdog",
        "*/5 * * * *",
        "cron-watchdog",
        "Every 5 minutes: alert once for each entry that missed its period plus a grace.",
    ),
)
