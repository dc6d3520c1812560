"""royalty-calculation and statement-notification (spec C §2.1, §2.2; DECISIONS "Royalties")."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.api import redis_connection
from jobs.errors import JobInputError
from jobs.registry import get_spec
from jobs.runtime import set_progress
from yesgoddess.notifications.fanout import claim_setting, claimed_batches, deliver_rows, release
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email
from yesgoddess.royalties import calculation, services
from yesgoddess.royalties.models import RoyaltyRun, RoyaltyStatement

log = logging.getLogger(__name__)


def run_lock_key(run_id: int) -> str:
    return f"lock:royalty-run:{run_id}"


def existing_run(run_id: int) -> RoyaltyRun:
    run = RoyaltyRun.objects.filter(pk=run_id).first()
    if run is None:
        raise JobInputError(f"Royalty run {run_id} does not exist.")
    return run


def calculate_royalties(*, run_id: int, user_id: int | None = None) -> dict[str, int]:
    """Calculate a run once: a CALCULATED (or LOCKED) run is left alone, a FAILED one is
    recalculated, and a second worker on the same run steps aside (Redis lock)."""
    existing_run(run_id)
    lock = redis_connection().lock(run_lock_key(run_id), timeout=get_spec("royalty-calculation").timeout)
    if not lock.acquire(blocking=False):
        log.warning("royalty run %s is being calculated by another worker", run_id)
        return {"run_id": run_id, "skipped_locked": 1}
    try:
        if services.claim_for_calculation(run_id) is None:
            return {"run_id": run_id, "already_calculated": 1}
        try:
            return calculation.calculate(run_id, user_id, progress=set_progress)
        except calculation.OwnershipSplitError as exc:
            services.mark_failed(run_id, str(exc))
            raise JobInputError(str(exc)) from exc  # bad data: retrying cannot fix it
        except Exception as exc:
            services.mark_failed(run_id, f"{type(exc).__name__}: {exc}")
            raise
    finally:
        lock.release()


def record_calculation_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure (also a worker killed mid-run): the run is FAILED with the reason."""
    services.mark_failed(kwargs["run_id"], error)


def statement_email_context(statement: RoyaltyStatement) -> dict[str, Any]:
    run = statement.royalty_run
    creator = statement.creator
    return {
        "creator_name": creator.display_name or creator.user.get_full_name() or "Creator",
        "period_start": timezone.localdate(run.period_start),
        "period_end": timezone.localdate(run.period_end),
        "total_earnings": calculation.dollars(statement.total_earnings_cents),
        "currency": "USD",
        "held": statement.status == RoyaltyStatement.Status.HELD,
        "threshold": calculation.dollars(statement.metadata.get("thresholdCents", 0)),
        "statement_url": f"{settings.APP_URL}/dashboard/earnings/statements/{statement.pk}",
        "dashboard_url": f"{settings.APP_URL}/dashboard/earnings",
    }


def statement_notification(statement: RoyaltyStatement) -> Notification:
    run = statement.royalty_run
    period = f"{timezone.localdate(run.period_start):%b %-d, %Y} - {timezone.localdate(run.period_end):%b %-d, %Y}"
    return Notification(
        user_id=statement.creator.user_id,
        type=Notification.Type.ROYALTY,
        title="Your earnings statement is ready",
        message=f"Your statement for {period} is now available.",
        action_url=f"/dashboard/earnings/statements/{statement.pk}",
        metadata={"statementId": statement.pk, "amountCents": statement.total_earnings_cents},
    )


def notify_statements(*, run_id: int) -> dict[str, int]:
    """One email and one in-app notification per statement of the run, each at most once.

    Through `yesgoddess.notifications.fanout`: a batch's `notified_at` is set and committed
    before it is sent; a refused or never-attempted email gets it back (the next run
    tries again), one interrupted mid-send keeps it. The in-app notification follows a
    sent email. A mail-server error is re-raised after the batch is settled (RQ retries).
    """
    run = existing_run(run_id)
    if run.status not in (RoyaltyRun.Status.CALCULATED, RoyaltyRun.Status.LOCKED):
        raise JobInputError(f"Royalty run {run_id} is {run.status}; statements exist once it is CALCULATED.")
    due = RoyaltyStatement.objects.filter(royalty_run_id=run_id, notified_at__isnull=True).select_related(
        "creator__user", "royalty_run"
    )
    total = due.count()
    notified = refused = 0
    for batch in claimed_batches(due, claim_setting("notified_at", timezone.now())):
        delivery = deliver_rows(
            batch, lambda s: [build_email("royalty_statement", s.creator.user.email, statement_email_context(s))]
        )
        with transaction.atomic():
            release(delivery.to_retry, "notified_at")
            Notification.objects.bulk_create(map(statement_notification, delivery.sent))
        notified += len(delivery.sent)
        refused += len(delivery.refused)
        set_progress(notified + refused, total, "statements")
        delivery.raise_error()
    return {"run_id": run_id, "notified": notified, "refused": refused}
