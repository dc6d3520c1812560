"""The cron table as an operator needs it (the admin page /admin/jobs/cron/): each entry of
`jobs/schedule.py` with its next run, its last run (`CronRun`) and whether a run it should
have made did not happen.

An entry is *overdue* when the latest time its cron fired, at least OVERDUE_GRACE ago,
has no run started at or after it, no run of it is queued or running, and rq-scheduler
already held the entry at that time (an entry created by `schedule_jobs` after its last
fire time owes no run yet). An entry missing from rq-scheduler never runs: it is shown as
unscheduled rather than overdue. Read-only and cheap: one query, one read of
rq-scheduler's entries, and a Redis look-up only for an entry that looks late.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import crontab
from django.utils import timezone
from redis.exceptions import RedisError

from .api import job_active
from .cron_runs import dedup_key, last_runs
from .models import CronRun
from .registry import get_spec
from .schedule import ENTRY_PREFIX, SCHEDULE, CronEntry
from .scheduling import get_scheduler, next_run, owned_entries

log = logging.getLogger(__name__)

# How long after a fire time its run may take to start (rq-scheduler's poll, the dispatcher
# job and the run itself wait in the `scheduled` queue behind other runs: at 02:00 a dozen
# daily entries fire together).
OVERDUE_GRACE = timedelta(minutes=10)
# A run recorded this much before the fire time still counts as that run: the worker that
# records the start and the web process that judges may read slightly different clocks.
CLOCK_SKEW = timedelta(seconds=30)


@dataclass(frozen=True)
class CronRow:
    entry: CronEntry
    queue: str
    next_run: datetime
    last_run: CronRun | None
    scheduled: bool | None  # whether rq-scheduler holds the entry; None: Redis unreachable
    missed_run: datetime | None  # the fire time whose run did not happen (overdue)

    @property
    def overdue(self) -> bool:
        return self.missed_run is not None

    @property
    def duration(self) -> str:
        ms = self.last_run.duration_ms if self.last_run is not None else None
        if ms is None:
            return ""
        return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def scheduled_since() -> dict[str, datetime | None] | None:
    """When rq-scheduler got each entry it holds, by entry id (None if Redis is down)."""
    try:
        entries = owned_entries(get_scheduler())
    except RedisError:
        log.warning("cron table: rq-scheduler's entries could not be read", exc_info=True)
        return None
    return {
        scheduler_id.removeprefix(ENTRY_PREFIX): _aware(job.created_at) if job.created_at else None
        for scheduler_id, (job, _when) in entries.items()
    }


def expected_run(cron: str, now: datetime, since: datetime | None = None) -> datetime | None:
    """The latest time `cron` fired at least OVERDUE_GRACE before `now`: the latest run
    that must have started by now. None if the entry was scheduled only after it."""
    fired = crontab.CronTab(cron).previous(now=now - OVERDUE_GRACE, return_datetime=True, default_utc=True)
    if since is not None and fired < since:
        return None
    return fired


def missed_run(entry: CronEntry, run: CronRun | None, now: datetime, since: datetime | None) -> datetime | None:
    """The fire time of `entry` whose run did not happen, or None if it is not overdue."""
    expected = expected_run(entry.cron, now, since)
    if expected is None:
        return None
    if run is not None and run.started_at is not None and run.started_at >= expected - CLOCK_SKEW:
        return None
    try:
        if job_active(entry.job, dedup_key(entry.id)):
            return None  # queued behind other jobs, or still running: late, not missed
    except RedisError:
        pass  # the run's state is unknown; the database says no run started
    return expected


def cron_table(now: datetime | None = None) -> list[CronRow]:
    """One row per entry of the cron table, in its order."""
    now = now or timezone.now()
    runs = last_runs()
    since = scheduled_since()
    rows = []
    for entry in SCHEDULE:
        scheduled = None if since is None else entry.id in since
        rows.append(
            CronRow(
                entry=entry,
                queue=get_spec(entry.job).queue,
                next_run=next_run(entry.cron, now),
                last_run=runs.get(entry.id),
                scheduled=scheduled,
                missed_run=None
                if scheduled is False
                else missed_run(entry, runs.get(entry.id), now, since.get(entry.id) if since else None),
            )
        )
    return rows


def find_entry(entry_id: str) -> CronEntry | None:
    return next((entry for entry in SCHEDULE if entry.id == entry_id), None)
