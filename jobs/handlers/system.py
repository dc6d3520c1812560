"""System housekeeping jobs, the framework self-check and the alerts: each cleanup is one
call to the app that owns the rows (`yesgoddess.core.idempotency`,
`yesgoddess.notifications.cleanup`); the dead-man's switch is the framework's own check
of its cron table (`jobs.alerts`), and failure summaries are the notifications app's."""

from __future__ import annotations

from jobs import alerts
from jobs.errors import JobInputError
from yesgoddess.core.idempotency import delete_expired_idempotency_keys
from yesgoddess.notifications.cleanup import delete_old_notifications
from yesgoddess.notifications.job_alerts import send_failure_summary


def cleanup_idempotency_keys() -> dict[str, int]:
    """idempotency-cleanup: Idempotency-Key records whose expiry has passed."""
    return delete_expired_idempotency_keys()


def cleanup_notifications() -> dict[str, int]:
    """notification-cleanup: read notifications past their retention; unread are kept."""
    return delete_old_notifications()


def ping() -> dict[str, str]:
    """Answer at once: proves a worker is listening (and is the no-op of bench/)."""
    return {"pong": "ok"}


def check_cron_deadlines() -> dict[str, int]:
    """cron-watchdog: tell the admins once when a cron entry stopped succeeding, and once
    when it recovers."""
    return alerts.check_cron_deadlines()


def send_job_failure_summary(*, job_name: str) -> dict[str, int]:
    """job-failure-alert.summary: the count of `job_name`'s final failures of the hour."""
    if not isinstance(job_name, str) or not job_name.strip():
        raise JobInputError(f"job_name must be a job's name, not {job_name!r}")
    return send_failure_summary(job_name)
