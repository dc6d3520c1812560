"""statement-notification (spec C §2.2; DECISIONS "Royalties"): once a run is CALCULATED
(or LOCKED), one email and one in-app notification per statement, each at most once.

Through `yesgoddess.notifications.fanout`: a batch's `notified_at` is set and committed
before it is sent; a refused or never-attempted email gets it back (the next run tries
again), one interrupted mid-send keeps it. The in-app notification follows a sent
email. A mail-server error is re-raised after the batch is settled (the job is retried).

What the email says about the amount follows the statement's status when it is sent: a
HELD balance waits for the threshold, a CARRIED one (already moved into a later run's
statement, say when this run is announced late) names the statement that carries it,
and only the others "will be paid out".
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

from .models import RoyaltyLine, RoyaltyRun, RoyaltyStatement
from .services import existing_run

TEMPLATE = "royalty_statement"
NOTIFIABLE = (RoyaltyRun.Status.CALCULATED, RoyaltyRun.Status.LOCKED)


class StatementsNotReady(InvalidInput):
    """The run has no statements to announce yet (it is not CALCULATED)."""


def statement_url(statement_id: int) -> str:
    return f"{settings.APP_URL}/dashboard/earnings/statements/{statement_id}"


def carrying_statements(statements: list[RoyaltyStatement]) -> dict[int, RoyaltyStatement]:
    """For each CARRIED statement of `statements`, the later statement whose CARRYOVER line
    took its balance (with its run), in one query."""
    carried = [s.pk for s in statements if s.status == RoyaltyStatement.Status.CARRIED]
    if not carried:
        return {}
    lines = RoyaltyLine.objects.filter(
        line_type=RoyaltyLine.LineType.CARRYOVER, metadata__carriedStatementId__in=carried
    ).select_related("royalty_statement__royalty_run")
    return {line.metadata["carriedStatementId"]: line.royalty_statement for line in lines}


def statement_email_context(
    statement: RoyaltyStatement, carried_into: RoyaltyStatement | None = None
) -> dict[str, Any]:
    """The email's variables; `carried_into` is the statement that carries a CARRIED
    statement's balance (`carrying_statements`)."""
    run = statement.royalty_run
    creator = statement.creator
    carried = statement.status == RoyaltyStatement.Status.CARRIED
    later = carried_into.royalty_run if carried and carried_into is not None else None
    return {
        "creator_name": creator.display_name or creator.user.get_full_name() or "Creator",
        "period_start": timezone.localdate(run.period_start),
        "period_end": timezone.localdate(run.period_end),
        "total_earnings": dollars(statement.total_earnings_cents),
        "currency": "USD",
        # Not paid with this statement: held below the threshold, or carried since.
        "held": statement.status in (RoyaltyStatement.Status.HELD, RoyaltyStatement.Status.CARRIED),
        "carried": carried,
        "carried_into_start": timezone.localdate(later.period_start) if later else None,
        "carried_into_end": timezone.localdate(later.period_end) if later else None,
        "carried_into_url": statement_url(carried_into.pk) if later else "",
        "threshold": dollars(statement.metadata.get("thresholdCents", 0)),
        "statement_url": statement_url(statement.pk),
        "dashboard_url": f"{settings.APP_URL}/dashboard/earnings",
    }


def statement_email(statement: RoyaltyStatement, carried_into: RoyaltyStatement | None = None) -> EmailMessage:
    return build_email(TEMPLATE, statement.creator.user.email, statement_email_context(statement, carried_into))


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
        carriers = carrying_statements(batch)
        delivery = deliver_rows(
            batch, lambda statement, carriers=carriers: [statement_email(statement, carriers.get(statement.pk))]
        )
        with transaction.atomic():
            release(delivery.to_retry, "notified_at")
            Notification.objects.bulk_create(map(statement_notification, delivery.sent))
        notified += len(delivery.sent)
        refused += len(delivery.refused)
        progress(notified + refused, total, "statements")
        delivery.raise_error()
    return {"run_id": run_id, "notified": notified, "refused": refused}
