"""Telling the admins about jobs that failed for good and cron entries that stopped.

The job framework calls these through settings (JOB_FAILURE_ALERT, CRON_ALERT): it
detects, this module tells, by in-app notification and email (`alert_admins`).

Final failures are throttled per job name, so a job failing a thousand times in an hour
is two messages, not a thousand: the first failure is told at once; failures within the
hour after a message are counted, and one summary with the count goes out when the hour
is over (the `job-failure-alert.summary` job, queued with that delay). If that summary
job is lost, the next failure after the hour tells the count itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from .models import JobFailureAlert, Notification
from .services import alert_admins

log = logging.getLogger(__name__)

SUMMARY_JOB = "job-failure-alert.summary"
SUMMARY_INTERVAL = timedelta(hours=1)
MAX_ERROR_CHARS = 1000


def _locked_row(job_name: str) -> JobFailureAlert:
    JobFailureAlert.objects.get_or_create(job_name=job_name)
    return JobFailureAlert.objects.select_for_update().get(job_name=job_name)


def alert_job_failure(job_name: str, job_id: str, error: str) -> dict[str, int]:
    """A final failure of `job_name` (JOB_FAILURE_ALERT). The row lock orders concurrent
    failures of one job; a failed send rolls the count back, so the next one tells it."""
    from jobs.api import enqueue

    now = timezone.now()
    with transaction.atomic():
        row = _locked_row(job_name)
        row.last_error, row.last_job_id = error[:MAX_ERROR_CHARS], job_id
        sent = {"messages": 0}
        if row.last_alert_at is None or now >= row.last_alert_at + SUMMARY_INTERVAL:
            sent = _tell_failures(row, row.unreported + 1, now)
        else:
            row.unreported += 1
            if row.unreported == 1:  # the first of this hour: the summary goes when it ends
                delay = (row.last_alert_at + SUMMARY_INTERVAL - now).total_seconds()
                enqueue(SUMMARY_JOB, job_name=job_name, delay=max(delay, 1))
        row.save()
    return sent


def send_failure_summary(job_name: str) -> dict[str, int]:
    """The hourly summary of `job_name`'s failures since the last message; nothing when
    none are left to tell (a second run, or a failure after the hour already told them)."""
    now = timezone.now()
    with transaction.atomic():
        row = JobFailureAlert.objects.select_for_update().filter(job_name=job_name).first()
        if row is None or row.unreported == 0:
            return {"messages": 0}
        sent = _tell_failures(row, row.unreported, now)
        row.save()
    return sent


def _tell_failures(row: JobFailureAlert, count: int, now: datetime) -> dict[str, int]:
    """Send one message about `count` failures of row's job; reset the row's count."""
    since = row.last_alert_at
    if count == 1:
        title = f"Job failed: {row.job_name}"
        message = f"{row.job_name} failed for good (job {row.last_job_id}): {row.last_error}"
    else:
        title = f"Job failed {count} times: {row.job_name}"
        message = (
            f"{row.job_name} failed for good {count} times since {since:%Y-%m-%d %H:%M} UTC; "
            f"the last (job {row.last_job_id}): {row.last_error}"
        )
    sent = alert_admins(
        title=title,
        message=message,
        email_template="job_failure_alert",
        context={
            "job": row.job_name,
            "count": count,
            "since": since,
            "job_id": row.last_job_id,
            "error": row.last_error,
        },
        priority=Notification.Priority.HIGH,
        metadata={"job": row.job_name, "job_id": row.last_job_id, "failures": count},
    )
    row.last_alert_at, row.unreported = now, 0
    log.warning("job=%s final failures told to admins: %s", row.job_name, count)
    return {"messages": 1, "failures": count, **sent}


def alert_cron_state(
    entry_id: str, job_name: str, state: str, due_at: datetime, last_success_at: datetime | None
) -> dict[str, int]:
    """A cron entry became overdue, or recovered (CRON_ALERT; the framework calls it once
    per change)."""
    last = f"{last_success_at:%Y-%m-%d %H:%M} UTC" if last_success_at else "never"
    if state == "overdue":
        title = f"Cron entry not running: {entry_id}"
        message = (
            f"{entry_id} ({job_name}) has not succeeded since its run due at {due_at:%Y-%m-%d %H:%M} UTC "
            f"(last success: {last})."
        )
    else:
        title = f"Cron entry recovered: {entry_id}"
        message = f"{entry_id} ({job_name}) succeeded again (last success: {last})."
    return alert_admins(
        title=title,
        message=message,
        email_template="cron_alert",
        context={
            "entry": entry_id,
            "job": job_name,
            "state": state,
            "due_at": due_at,
            "last_success_at": last_success_at,
        },
        priority=Notification.Priority.URGENT if state == "overdue" else Notification.Priority.MEDIUM,
        metadata={"cron_entry": entry_id, "job": job_name, "state": state},
    )
