"""Recording each cron entry's runs (see `CronRun`).

`dispatch` enqueues one run of an entry, tagged with its entry id (job meta `cron_entry`):
rq-scheduler's dispatcher (`jobs.runtime.dispatch_scheduled`) and the cron page's "run now"
both go through it. The runtime calls `run_started` / `run_ended` around that job. A
recording error is logged and never fails the job it describes."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError

from .api import submit
from .models import CronRun
from .registry import get_spec

log = logging.getLogger(__name__)
META_KEY = "cron_entry"


def dedup_key(entry_id: str) -> str:
    """The deduplication key of the runs of cron entry `entry_id`."""
    return f"cron-{entry_id}"


def dispatch(job_name: str, kwargs: dict[str, Any], entry_id: str) -> tuple[str, bool]:
    """Enqueue a run of cron entry `entry_id` (registered job `job_name` with `kwargs`) with
    the registry's retry policy and TTLs; return (job id, whether a new job was queued).
    Deduplicated per entry: while a run of the entry is queued or running, the answer is
    that run, whoever asks (the scheduler or an operator)."""
    return submit(get_spec(job_name), kwargs, dedup_key=dedup_key(entry_id), meta={META_KEY: entry_id})


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
