"""statement-notification (spec C §2.2; DECISIONS "Royalties"): once a run is CALCULATED
(or LOCKED), one email and one in-app notification per statement, each at most once.

Through `yesgoddess.notifications.fanout`: a batch's `notified_at` is set and committed
before it is sent; a refused or never-attempted email gets it back (the next run tries
again), one interrupted mid-send keeps it. The in-app notification follows a sent
email. A mail-server error is re-raised after the batch is settled (the job is retried).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.money import dollars
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.notifications.fanout import claim_setting, claimed_batches, deliver_rows, release
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email

from .models import RoyaltyRun, RoyaltyStatement
from .services import existing_run

TEMPLATE = "royalty_statement"
NOTIFIABLE = (RoyaltyRun.Status.CALCULATED, RoyaltyRun.Status.LOCKED)


class StatementsNotReady(InvalidInput):
    """The run has no statements to announce yet (it is not CALCULATED)."""


def statement_email_context(statement: RoyaltyStatement) -> dict[str, Any]:
    run = statement.royalty_run
    creator = statement.creator
    return {
        "creator_name": creator.display_name or creator.user.get_full_name() or "Creator",
        "period_start": timezone.localdate(run.period_start),
        "period_end": timezone.localdate(run.period_end),
        "total_earnings": dollars(statement.total_earnings_cents),
        "currency": "USD",
        "held": statement.status == RoyaltyStatement.Status.HELD,
        "threshold": dollars(statement.metadata.get("thresholdCents", 0)),
        "statement_url": f"{settings.APP_URL}/dashboard/earnings/statements/{statement.pk}",
        "dashboard_url": f"{settings.APP_URL}/dashboard/earnings",
    }


def statement_email(statement: RoyaltyStatement) -> EmailMessage:
    return build_email(TEMPLATE, statement.creator.user.email, statement_email_context(statement))


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


def notify_statements(run_id: int, *, progress: Progress = no_progress) -> dict[str, int]:
    """Email and notify every statement of the run not notified yet (see the module doc).
    Raises RoyaltyRun.DoesNotExist for an unknown run, StatementsNotReady before the run
    is CALCULATED."""
    run = existing_run(run_id)
    if run.status not in NOTIFIABLE:
        raise StatementsNotReady(f"Royalty run {run_id} is {run.status}; statements exist once it is CALCULATED.")
    due = RoyaltyStatement.objects.filter(royalty_run_id=run_id, notified_at__isnull=True).select_related(
        "creator__user", "royalty_run"
    )
    total = due.count()
    notified = refused = 0
    for batch in claimed_batches(due, claim_setting("notified_at", timezone.now())):
        delivery = deliver_rows(batch, lambda statement: [statement_email(statement)])
        with transaction.atomic():
            release(delivery.to_retry, "notified_at")
            Notification.objects.bulk_create(map(statement_notification, delivery.sent))
        notified += len(delivery.sent)
        refused += len(delivery.refused)
        progress(notified + refused, total, "statements")
        delivery.raise_error()
    return {"run_id": run_id, "notified": notified, "refused": refused}
