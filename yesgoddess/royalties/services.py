"""Royalty run lifecycle shared by the API and the jobs: create, claim for calculation,
record a failure, lock."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from yesgoddess.core.models import AuditEvent

from .models import RoyaltyRun, RoyaltyStatement


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
