"""Recording each cron entry's runs (see `CronRun`).

`dispatch_scheduled` tags the job it enqueues with its entry id (job meta `cron_entry`);
the runtime calls `run_started` / `run_ended` around that job. A recording error is
logged and never fails the job it describes."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import DatabaseError

from .models import CronRun

log = logging.getLogger(__name__)
META_KEY = "cron_entry"


def run_started(entry_id: str, job_id: str, at: datetime) -> None:
    try:
        CronRun.objects.update_or_create(
            entry_id=entry_id,
            defaults={
                "job_id": job_id,
                "started_at": at,
                "finished_at": None,
                "outcome": CronRun.Outcome.RUNNING,
                "duration_ms": None,
            },
        )
    except DatabaseError:
        log.exception("cron=%s: could not record the start of job %s", entry_id, job_id)


def run_ended(entry_id: str, job_id: str, outcome: str, duration_ms: int, at: datetime) -> None:
    fields: dict[str, object] = {"finished_at": at, "outcome": outcome, "duration_ms": duration_ms}
    if outcome == CronRun.Outcome.OK:
        fields["last_success_at"] = at
    try:
        CronRun.objects.filter(entry_id=entry_id, job_id=job_id).update(**fields)
    except DatabaseError:
        log.exception("cron=%s: could not record the end of job %s", entry_id, job_id)


def last_runs() -> dict[str, CronRun]:
    """The latest run of every entry that ever ran, by entry id."""
    return {run.entry_id: run for run in CronRun.objects.all()}
