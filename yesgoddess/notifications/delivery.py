"""Immediate notification emails (notification-delivery), at most once each.

`notify()` marks a notification's email PENDING and makes sure one flush job is queued;
the flush takes up to NOTIFICATION_DELIVERY_BATCH pending rows with the fan-out claim
pattern (`fanout.claimed_batches`: rows are marked SENDING and committed before anything
is sent), sends them over one connection per EMAIL_BATCH_SIZE and records each outcome:

- SENT (`emailed_at` = when the server accepted it);
- FAILED with `email_error` for a poison row: no address, inactive or deleted account,
  suppressed address, a template that does not render, a message the server refused.
  The rest of the batch goes on;
- back to PENDING when never attempted (the server could not be reached, or the
  connection broke earlier in the batch): the retry sends it;
- left SENDING, with `email_error` saying so, when the connection broke while it was
  being sent: it may have gone out, so it is never sent again.

The job notification-delivery runs `flush_and_requeue` (without arguments: the flush,
queued deduplicated by `notify()` after commit, and re-queued while pending rows remain)
or `deliver_one` (with `notification_id`: exactly that notification, for operators and
tests). notification-delivery.sweep runs `sweep`, a safety net for a flush that was never
queued or failed for good, which also settles rows a killed worker left claimed.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from jobs.api import release_own_dedup
from yesgoddess.emailing.models import EmailSuppression
from yesgoddess.emailing.services import normalise

from .fanout import claimed_batches, deliver, journal_outcomes
from .models import EmailStatus, Notification
from .services import FLUSH_DEDUP_KEY, FLUSH_JOB, build_email, schedule_flush

log = logging.getLogger(__name__)

TEMPLATE = "notification_email"
IN_DOUBT = "in doubt: the connection broke while this message was being sent; not re-sent"
MAX_ERROR = 1000
# A flush claims at most NOTIFICATION_DELIVERY_BATCH rows and runs within its job timeout;
# a row claimed longer ago than this belongs to a worker that died.
STRANDED_AFTER = timedelta(minutes=15)


class _Enough(Exception):
    """Raised inside a claim once the flush has taken its share of rows."""


def pending() -> QuerySet:
    return Notification.objects.filter(email_status=EmailStatus.PENDING)


def link(url: str | None) -> str | None:
    """An action URL made absolute against APP_URL (already absolute ones are kept)."""
    if not url:
        return None
    if url.startswith(("http://", "https://")):
        return url
    return f"{settings.APP_URL}/{url.lstrip('/')}"


def unreachable_reason(user: Any) -> str | None:
    if not user.is_active or user.deleted_at is not None:
        return "account inactive or deleted"
    if not user.email:
        return "no email address"
    return None


def email_context(notification: Notification) -> dict[str, Any]:
    user = notification.user
    return {
        "user_name": user.first_name or "there",
        "title": notification.title,
        "message": notification.message,
        "type": notification.type,
        "type_label": Notification.Type(notification.type).label,
        "priority": notification.priority,
        "action_link": link(notification.action_url),
        "notifications_url": f"{settings.APP_URL}/notifications",
        "preferences_url": f"{settings.APP_URL}/settings/notifications",
    }


def build_message(notification: Notification):
    message = build_email(TEMPLATE, notification.user.email, email_context(notification))
    message.journal_key = journal_key(notification.pk)
    return message


def journal_key(notification_id: int) -> str:
    return f"notification:{notification_id}"


def recover_stranded(now: datetime | None = None) -> dict[str, int]:
    """Rows left SENDING by a worker that died mid-flush (claimed more than
    STRANDED_AFTER ago, not marked in doubt by a live worker): settled from the send
    journal: accepted -> SENT, attempted -> in doubt (never re-sent), never attempted ->
    PENDING again, so the next flush sends it. Nothing lost, nothing sent twice."""
    now = now or timezone.now()
    stranded = list(
        Notification.objects.filter(
            email_status=EmailStatus.SENDING, email_error="", emailed_at__lt=now - STRANDED_AFTER
        ).values_list("pk", flat=True)[:10_000]
    )
    outcomes = journal_outcomes([journal_key(pk) for pk in stranded])
    by = {
        state: [pk for pk in stranded if outcomes[journal_key(pk)] == state]
        for state in ("sent", "in_doubt", "unattempted")
    }
    Notification.objects.filter(pk__in=by["sent"], email_status=EmailStatus.SENDING).update(
        email_status=EmailStatus.SENT
    )
    Notification.objects.filter(pk__in=by["in_doubt"], email_status=EmailStatus.SENDING).update(email_error=IN_DOUBT)
    Notification.objects.filter(pk__in=by["unattempted"], email_status=EmailStatus.SENDING).update(
        email_status=EmailStatus.PENDING, emailed_at=None
    )
    return {f"stranded_{state}": len(ids) for state, ids in by.items()}


def _fail(rows: list[Notification], reasons: dict[int, str]) -> None:
    failed = [row for row in rows if row.pk in reasons]
    for row in failed:
        row.email_status = EmailStatus.FAILED
        row.email_error = reasons[row.pk][:MAX_ERROR]
    if failed:
        Notification.objects.bulk_update(failed, ["email_status", "email_error"])


def deliver_pending(queryset: QuerySet, *, limit: int) -> dict[str, int]:
    """Email up to `limit` rows of `queryset` (PENDING/FAILED notifications), each at most
    once; return the counts. A delivery error is re-raised after the batch is settled."""
    counts = {"claimed": 0, "sent": 0, "failed": 0, "refused": 0, "unsent": 0, "in_doubt": 0}
    taken = 0

    def claim(rows: list[Notification]) -> list[Notification]:
        nonlocal taken
        if taken >= limit:
            raise _Enough
        rows = rows[: limit - taken]
        taken += len(rows)
        reasons = {row.pk: reason for row in rows if (reason := unreachable_reason(row.user))}
        addresses = {normalise(row.user.email) for row in rows if row.pk not in reasons}
        suppressed = set(EmailSuppression.objects.filter(email__in=addresses).values_list("email", flat=True))
        for row in rows:
            if row.pk not in reasons and normalise(row.user.email) in suppressed:
                reasons[row.pk] = "address suppressed (bounce, complaint or manual)"
        _fail(rows, reasons)
        counts["failed"] += len(reasons)
        sending = [row for row in rows if row.pk not in reasons]
        Notification.objects.filter(pk__in=[row.pk for row in sending]).update(
            email_status=EmailStatus.SENDING, emailed_at=timezone.now(), email_error=""
        )
        counts["claimed"] += len(sending)
        return sending

    size = min(settings.EMAIL_BATCH_SIZE, limit)
    with contextlib.suppress(_Enough):  # the claim says the flush has taken its share
        for batch in claimed_batches(queryset.select_related("user"), claim, batch=size):
            messages, broken = [], {}
            for row in batch:
                try:
                    messages.append(build_message(row))
                except Exception as exc:  # a poison row: recorded, the batch goes on
                    log.warning("notification=%s email not built: %s", row.pk, type(exc).__name__)
                    messages.append(None)
                    broken[row.pk] = f"email not built: {type(exc).__name__}: {exc}"
            result = deliver(messages)
            _fail(batch, broken)
            _settle(batch, result)
            counts["failed"] += len(broken) + len(result.refused)
            result.tally(counts)
            result.raise_error()
            if taken >= limit:
                break
    return counts


def _settle(batch: list[Notification], result: Any) -> None:
    def ids(indexes: list[int]) -> list[int]:
        return [batch[i].pk for i in indexes]

    if result.sent:
        Notification.objects.filter(pk__in=ids(result.sent)).update(
            email_status=EmailStatus.SENT, emailed_at=timezone.now()
        )
    if result.refused:
        Notification.objects.filter(pk__in=ids(result.refused)).update(
            email_status=EmailStatus.FAILED, email_error="refused by the mail server"
        )
    if result.unsent:  # never attempted: the retry (or the next flush) sends them
        Notification.objects.filter(pk__in=ids(result.unsent)).update(email_status=EmailStatus.PENDING, emailed_at=None)
    if result.in_doubt:  # keeps its SENDING marker: a crash may lose it, never send it twice
        Notification.objects.filter(pk__in=ids(result.in_doubt)).update(email_error=IN_DOUBT)


def flush(limit: int | None = None) -> dict[str, int]:
    """Email up to `limit` (NOTIFICATION_DELIVERY_BATCH) pending notifications."""
    return deliver_pending(pending(), limit=limit or settings.NOTIFICATION_DELIVERY_BATCH)


def release_flush_marker() -> None:
    """Let the next `notify()` queue a new flush while this one runs.

    `notify()` asks for a flush after its rows are committed. Until this flush has
    released the deduplication marker, such a request returns this job, which has not
    claimed yet and so will see those rows; from the release on, a request queues a new
    flush. Either way no pending row is left without a flush coming for it."""
    release_own_dedup(FLUSH_JOB, FLUSH_DEDUP_KEY)


def flush_and_requeue() -> dict[str, Any]:
    """The flush job: release its marker, email one batch of pending notifications, and
    queue the next flush while some remain."""
    release_flush_marker()
    counts: dict[str, Any] = flush()
    counts["requeued"] = pending().exists()
    if counts["requeued"]:
        schedule_flush()
    return counts


def sweep() -> dict[str, Any]:
    """The safety net: `notify()` queues the flush after commit; if that failed (Redis
    unreachable at that moment) or the flush failed for good, pending rows would wait for
    the next notification. Settle the rows a killed worker left claimed (from the send
    journal), then queue a flush if any row is pending."""
    recovered = recover_stranded()
    is_pending = pending().exists()
    return {"pending": is_pending, "flush_job": schedule_flush() if is_pending else None, **recovered}


def deliver_one(notification_id: int) -> dict[str, Any] | None:
    """Email one notification now if it is PENDING (or FAILED: an operator's retry);
    None when there is no such notification."""
    status = Notification.objects.filter(pk=notification_id).values_list("email_status", flat=True).first()
    if status is None:
        return None
    if status not in (EmailStatus.PENDING, EmailStatus.FAILED):
        return {"notification_id": notification_id, "skipped": f"email status is {status}"}
    due = Notification.objects.filter(pk=notification_id, email_status__in=(EmailStatus.PENDING, EmailStatus.FAILED))
    return {"notification_id": notification_id, **deliver_pending(due, limit=1)}
