"""Reconciling rq-scheduler with jobs/schedule.py (what `schedule_jobs` does)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import crontab
from redis import Redis
from rq_scheduler import Scheduler

from yesgoddess.core.redis import redis_connection

from .registry import get_spec
from .rq_classes import JSONJob
from .schedule import ENTRY_PREFIX, SCHEDULE, CronEntry

DISPATCH = "jobs.runtime.dispatch_scheduled"
LOCK_NAME = "jobs:schedule_jobs:lock"


@dataclass(frozen=True)
class Change:
    action: str  # create, replace, remove, keep
    entry_id: str
    detail: str = ""


def get_scheduler(connection: Redis | None = None) -> Scheduler:
    return Scheduler(queue_name="scheduled", connection=connection or redis_connection(), job_class=JSONJob)


def _fingerprint(entry: CronEntry) -> str:
    spec = get_spec(entry.job)
    return json.dumps([entry.cron, entry.job, entry.kwargs, spec.queue], sort_keys=True)


def next_run(cron: str, now: datetime | None = None) -> datetime:
    """The next time `cron` fires after `now` (naive UTC), as rq-scheduler computes it."""
    from rq_scheduler.utils import get_next_scheduled_time

    if now is None:
        return get_next_scheduled_time(cron)
    return crontab.CronTab(cron).next(now=now, return_datetime=True, default_utc=True)


def owned_entries(scheduler: Scheduler) -> dict[str, tuple[object, datetime]]:
    return {job.id: (job, when) for job, when in scheduler.get_jobs(with_times=True) if job.id.startswith(ENTRY_PREFIX)}


def plan(scheduler: Scheduler) -> list[Change]:
    existing = owned_entries(scheduler)
    wanted = {entry.scheduler_id: entry for entry in SCHEDULE}
    changes: list[Change] = []
    for scheduler_id, entry in wanted.items():
        current = existing.get(scheduler_id)
        if current is None:
            changes.append(Change("create", entry.id, entry.cron))
        elif current[0].meta.get("fingerprint") != _fingerprint(entry):
            changes.append(Change("replace", entry.id, entry.cron))
        else:
            changes.append(Change("keep", entry.id, entry.cron))
    for scheduler_id in sorted(set(existing) - set(wanted)):
        changes.append(Change("remove", scheduler_id.removeprefix(ENTRY_PREFIX), "no longer in the table"))
    return changes


def _remove(scheduler: Scheduler, scheduler_id: str) -> None:
    scheduler.cancel(scheduler_id)
    JSONJob(scheduler_id, connection=scheduler.connection).delete(remove_from_queue=True)


def _create(scheduler: Scheduler, entry: CronEntry) -> None:
    spec = get_spec(entry.job)
    scheduler.cron(
        entry.cron,
        func=DISPATCH,
        args=[entry.job, entry.kwargs, entry.id],
        id=entry.scheduler_id,
        queue_name=spec.queue,
        # The entry's own job hash must outlive the gap between two runs, or rq-scheduler
        # finds it gone and drops the entry: keep it (it is one small hash per table row).
        # Each run's real work is a separate job with the registry's finite TTLs.
        result_ttl=-1,
        timeout=60,
        description=f"cron {entry.id}: {entry.job} at '{entry.cron}' UTC",
        meta={"fingerprint": _fingerprint(entry), "note": entry.note},
        use_local_timezone=False,
    )


def reconcile(dry_run: bool = False, lock_timeout: int = 60) -> list[Change]:
    """Make rq-scheduler's entries match SCHEDULE, under a Redis lock so that two hosts
    deploying at once serialise instead of both creating entries."""
    scheduler = get_scheduler()
    with scheduler.connection.lock(LOCK_NAME, timeout=lock_timeout, blocking_timeout=lock_timeout):
        changes = plan(scheduler)
        if dry_run:
            return changes
        wanted = {entry.id: entry for entry in SCHEDULE}
        for change in changes:
            if change.action in ("replace", "remove"):
                _remove(scheduler, ENTRY_PREFIX + change.entry_id)
            if change.action in ("create", "replace"):
                _create(scheduler, wanted[change.entry_id])
        return changes
