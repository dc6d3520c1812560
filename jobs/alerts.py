"""What operators must hear about: a job's final failure, and a cron entry that stopped
succeeding (the dead-man's switch).

The framework detects; the domain tells people. The functions that tell are dotted paths
in settings (the framework imports no domain app): JOB_FAILURE_ALERT is called as
`alert(job_name, job_id, error)` on every final failure (it throttles), CRON_ALERT as
`alert(entry_id, job_name, state, due_at, last_success_at)` once when an entry becomes
"overdue" and once when it has "recovered". Empty: nobody is told.

An entry is overdue when the latest run that should have finished by now has not
succeeded: the run that fired at `due`, the latest firing at least its grace before now
(CRON_ALERT_GRACE_SECONDS for the wait in the queue, plus the job's timeout on every
attempt and the waits between them). An entry that never succeeded is judged from when
the switch first saw it, so a new entry or a fresh database alerts nobody at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import crontab
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import CronRun
from .registry import JobSpec, get_spec
from .schedule import SCHEDULE, CronEntry

log = logging.getLogger(__name__)


def job_failed(job_name: str, job_id: str, error: str) -> None:
    """Tell JOB_FAILURE_ALERT about a final failure. Never raises: RQ would report the
    alert's error in place of the job's (the failure is logged instead)."""
    if not settings.JOB_FAILURE_ALERT:
        return
    try:
        import_string(settings.JOB_FAILURE_ALERT)(job_name, job_id, error)
    except Exception:
        log.exception("job=%s id=%s: the final-failure alert failed", job_name, job_id)


def worst_case_seconds(spec: JobSpec) -> int:
    """How long a run may legitimately take to succeed: every attempt to its timeout."""
    return spec.timeout * (1 + len(spec.retry_intervals)) + sum(spec.retry_intervals)


def due_run(entry: CronEntry, now: datetime) -> datetime:
    """When the latest run of `entry` that should have succeeded by `now` fired."""
    grace = settings.CRON_ALERT_GRACE_SECONDS + worst_case_seconds(get_spec(entry.job))
    return crontab.CronTab(entry.cron).previous(now=now - timedelta(seconds=grace), return_datetime=True)


def check_cron_deadlines(now: datetime | None = None) -> dict[str, int]:
    """The dead-man's switch: tell CRON_ALERT of each entry that became overdue or
    recovered since the last check. Running it twice (or twice at once) tells nothing twice."""
    now = now or timezone.now()
    ids = [entry.id for entry in SCHEDULE]
    # First sight of an entry: the baseline for an entry that never succeeded.
    CronRun.objects.bulk_create([CronRun(entry_id=i, watched_since=now) for i in ids], ignore_conflicts=True)
    CronRun.objects.filter(entry_id__in=ids, watched_since__isnull=True).update(watched_since=now)
    runs = CronRun.objects.in_bulk(ids)
    counts = {"entries": len(ids), "overdue": 0, "newly_overdue": 0, "recovered": 0, "alert_errors": 0}
    for entry in SCHEDULE:
        run = runs[entry.id]
        due = due_run(entry, now)
        overdue = due > (run.last_success_at or run.watched_since)
        counts["overdue"] += overdue
        state = _transition(entry, run, due, overdue)
        if state == "error":
            counts["alert_errors"] += 1
        elif state:
            counts["newly_overdue" if state == "overdue" else "recovered"] += 1
    return counts


def _transition(entry: CronEntry, run: CronRun, due: datetime, overdue: bool) -> str | None:
    """Record and tell a change of state, in one transaction: if telling fails, nothing
    is recorded and the next check tries again. The conditional UPDATE makes a second
    check (or one running at the same time) find nothing to change."""
    rows = CronRun.objects.filter(entry_id=entry.id, overdue_since__isnull=overdue)
    state = "overdue" if overdue else "recovered"
    try:
        with transaction.atomic():
            if not rows.update(overdue_since=due if overdue else None):
                return None
            if settings.CRON_ALERT:
                import_string(settings.CRON_ALERT)(entry.id, entry.job, state, due, run.last_success_at)
    except Exception:
        log.exception("cron=%s: the %s alert failed; the next check tries again", entry.id, state)
        return "error"
    level = logging.WARNING if overdue else logging.INFO
    log.log(level, "cron=%s %s (due run %s, last success %s)", entry.id, state, due, run.last_success_at)
    return state
