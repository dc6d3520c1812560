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
    CronEntry("asset-cleanup", "0 2 * * *", "asset-cleanup", "Daily at 02:00."),
    CronEntry("ownership-verification", "0 2 * * *", "ownership-verification", "Daily at 02:00."),
    CronEntry("storage-metrics-calculation", "0 2 * * *", "storage-metrics-calculation", "Daily at 02:00."),
)
