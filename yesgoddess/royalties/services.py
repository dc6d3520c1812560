"""Royalty run lifecycle shared by the API, the admin and the jobs (spec C §2.1; DECISIONS
"Royalties"): create, calculate once, record a failure, retry a failed run, lock.

`calculate_once` is the royalty-calculation job: a run is calculated once. A CALCULATED
(or LOCKED) run is left alone, a FAILED one is recalculated, and a second worker on the
same run steps aside (a Redis lock per run). A calculation that fails marks the run
FAILED with the reason (`mark_failed`, also the job's final-failure hook: a worker
killed mid-run) and the error goes on to the job: shares that do not sum to 10,000 bps
(`calculation.OwnershipSplitError`) are bad data that a retry cannot fix, anything else
is retried. The statement emails are `statements.py`.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.models import AuditEvent
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.core.redis import redis_connection

from . import calculation
from .models import RoyaltyRun, RoyaltyStatement

log = logging.getLogger(__name__)


class RunRefused(ValueError):
    """A run that may not be created or changed; the message says why."""


def period_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """A run covers whole UTC days: start 00:00 to the last microsecond of `end`."""
    tz = timezone.get_current_timezone()
    return (
        datetime.combine(start, time.min, tzinfo=tz),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=tz) - timedelta(microseconds=1),
    )


def create_run(start: date, end: date, created_by_id: int) -> RoyaltyRun:
    """A DRAFT run for [start, end]; refused when it ends before it starts, ends in the
    future (its revenue is not known yet) or overlaps an existing run."""
    if end < start:
        raise RunRefused("period_end is before period_start.")
    if end >= timezone.localdate():
        raise RunRefused("The period must be over: period_end must be before today.")
    period_start, period_end = period_bounds(start, end)
    with transaction.atomic():
        # Serialise run creation so two overlapping requests cannot both pass the check.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('royalty_runs.create'))")
        clash = RoyaltyRun.objects.filter(period_start__lte=period_end, period_end__gte=period_start).first()
        if clash is not None:
            raise RunRefused(
                f"The period overlaps run {clash.pk} "
                f"({timezone.localdate(clash.period_start)} to {timezone.localdate(clash.period_end)})."
            )
        return RoyaltyRun.objects.create(period_start=period_start, period_end=period_end, created_by_id=created_by_id)


def existing_run(run_id: int) -> RoyaltyRun:
    """The run; RoyaltyRun.DoesNotExist, with a message naming it, when there is none."""
    run = RoyaltyRun.objects.filter(pk=run_id).first()
    if run is None:
        raise InvalidInput(f"Royalty run {run_id} does not exist.")
    return run


def run_lock_key(run_id: int) -> str:
    return f"lock:royalty-run:{run_id}"


def calculate_once(
    run_id: int, user_id: int | None = None, *, lock_seconds: int, progress: Progress = no_progress
) -> dict[str, int]:
    """Calculate the run unless it is calculated already or being calculated; a failure
    marks it FAILED and is re-raised (see the module doc). `lock_seconds` is how long an
    attempt may hold the run: the lock outlives any attempt, and a killed worker's ends."""
    existing_run(run_id)
    lock = redis_connection().lock(run_lock_key(run_id), timeout=lock_seconds)
    if not lock.acquire(blocking=False):
        log.warning("royalty run %s is being calculated by another worker", run_id)
        return {"run_id": run_id, "skipped_locked": 1}
    try:
        if claim_for_calculation(run_id) is None:
            return {"run_id": run_id, "already_calculated": 1}
        try:
            return calculation.calculate(run_id, user_id, progress=progress)
        except calculation.OwnershipSplitError as exc:
            mark_failed(run_id, str(exc))  # the message names the assets: shown as is
            raise
        except Exception as exc:
            mark_failed(run_id, f"{type(exc).__name__}: {exc}")
            raise
    finally:
        lock.release()


def claim_for_calculation(run_id: int) -> RoyaltyRun | None:
    """DRAFT, FAILED or an interrupted CALCULATING run -> CALCULATING; None when the run
    is already CALCULATED or later (a duplicate job leaves it alone)."""
    with transaction.atomic():
        run = RoyaltyRun.objects.select_for_update().get(pk=run_id)
        if run.status in (RoyaltyRun.Status.CALCULATED, RoyaltyRun.Status.LOCKED):
            return None
        # A FAILED or interrupted run has no statements (the calculation is one
        # transaction); clear anything left by hand all the same before recalculating.
        RoyaltyStatement.objects.filter(royalty_run=run).delete()
        run.status = RoyaltyRun.Status.CALCULATING
        run.save(update_fields=["status", "updated_at"])
        return run


def mark_failed(run_id: int, message: str) -> None:
    with transaction.atomic():
        run = RoyaltyRun.objects.select_for_update().filter(pk=run_id).first()
        # FAILED already: this attempt's failure is on record (the final-failure hook
        # comes after the job's own handler); CALCULATED or later: never overwritten.
        if run is None or run.status not in (RoyaltyRun.Status.DRAFT, RoyaltyRun.Status.CALCULATING):
            return
        run.status = RoyaltyRun.Status.FAILED
        note = f"Calculation failed: {message}"
        run.notes = f"{run.notes}\n\n{note}" if run.notes else note
        run.save(update_fields=["status", "notes", "updated_at"])
        AuditEvent.objects.create(
            action="royalty.run.failed", entity_type="royalty_run", entity_id=str(run_id), after={"error": message}
        )


def enqueue_calculation(run: RoyaltyRun, user_id: int | None) -> str:
    """Queue the run's calculation (after commit; one job per run at a time) and keep its
    job id on the run, where the API and the admin find its progress."""
    job_id = enqueue("royalty-calculation", dedup_key=f"run-{run.pk}", run_id=run.pk, user_id=user_id)
    RoyaltyRun.objects.filter(pk=run.pk).update(calculation_job_id=job_id)
    run.calculation_job_id = job_id
    return job_id


def retry_failed_run(run_id: int, actor_id: int | None) -> str:
    """Calculate a FAILED run again (the calculation resets it); refused for any other
    status. Audited; returns the calculation job's id."""
    with transaction.atomic():
        run = RoyaltyRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise RunRefused(f"Royalty run {run_id} does not exist.")
        if run.status != RoyaltyRun.Status.FAILED:
            raise RunRefused(f"Only a FAILED run can be retried; run {run_id} is {run.status}.")
        AuditEvent.objects.create(
            action="royalty.run.retry_requested",
            entity_type="royalty_run",
            entity_id=str(run_id),
            actor_id=actor_id,
            before={"status": run.status},
        )
        return enqueue_calculation(run, actor_id)


def lock_run(run_id: int, actor_id: int) -> RoyaltyRun:
    with transaction.atomic():
        run = RoyaltyRun.objects.select_for_update().get(pk=run_id)
        if run.status != RoyaltyRun.Status.CALCULATED:
            raise RunRefused(f"Only a CALCULATED run can be locked; this one is {run.status}.")
        if run.statements.filter(status=RoyaltyStatement.Status.DISPUTED).exists():
            raise RunRefused("The run has disputed statements.")
        run.status = RoyaltyRun.Status.LOCKED
        run.locked_at = timezone.now()
        run.save(update_fields=["status", "locked_at", "updated_at"])
        AuditEvent.objects.create(
            action="royalty.run.locked",
            entity_type="royalty_run",
            entity_id=str(run_id),
            actor_id=actor_id,
            before={"status": RoyaltyRun.Status.CALCULATED},
            after={"status": RoyaltyRun.Status.LOCKED},
        )
        return run
