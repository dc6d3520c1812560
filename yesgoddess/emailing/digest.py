"""The email digest: one email per user with the bulk emails kept for their digest.

Definition (DECISIONS: "digests of pending emails per user, same 'since last sent' rule").
A user may take a category of bulk email (today: campaigns) as a DAILY or WEEKLY digest
instead of one message each (`EmailDeliveryPreference`; no row = IMMEDIATE). For such a
user the campaign sender (`yesgoddess.campaigns.sending`) stores a `DeferredEmail`
(subject, summary, link) instead of sending. The `email-digest` job runs
`send_due_digests` daily at 09:00 (`frequency="DAILY"`) and Mondays at 09:00
(`frequency="WEEKLY"`); it sends each user one digest of their deferred emails since
their last digest:

1. One INSERT ... SELECT ... ON CONFLICT DO NOTHING opens an `EmailDigest` row per user
   and category with deferred emails not yet in a digest, for this period (the run's UTC
   date, or the Monday of its week): the per-user per-period record, so a second run in
   the same period opens nothing and sends nothing. The WEEKLY run takes users whose
   preference is WEEKLY; the DAILY run takes everybody else with pending items (DAILY,
   or a user who went back to IMMEDIATE: nothing is stranded).
2. Batches of PENDING digests are claimed with the fan-out claim
   (`yesgoddess.notifications.fanout`): in the claim transaction the deferred emails
   created up to the digest's cutoff and not yet in a digest are attached to it ("since
   the last digest" is exact: every item goes into exactly one digest), read back, and
   the emails built; the row becomes SENDING (or SKIPPED: address suppressed/opted out,
   user inactive, nothing to send; or FAILED: its email could not be built). That
   commits before the send, and nothing is read after it: a database error before the
   send rolls the claim back with it, so no digest is left SENDING with its items.
3. The batch goes over one SMTP connection with List-Unsubscribe headers; accepted ->
   SENT, refused -> FAILED, never attempted -> PENDING again (its items stay attached)
   and the delivery error is raised so RQ retries; the message in flight when the
   connection broke is FAILED ("in doubt"): never sent twice.

A constant number of queries per batch. A run that has worked JOB_SECONDS queues its own
continuation (`resume=True`, which opens no new digests) instead of running for hours.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from yesgoddess.campaigns.models import DeferredEmail, DigestFrequency, DigestStatus, EmailDigest
from yesgoddess.campaigns.sending import IN_DOUBT, requeue_self
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.notifications.fanout import Delivery, claimed_batches, deliver
from yesgoddess.notifications.services import build_email

from .services import blocked, list_unsubscribe_headers, normalise, unsubscribe_url

log = logging.getLogger(__name__)

JOB = "email-digest"
TEMPLATE = "email_digest"
FREQUENCIES = (DigestFrequency.DAILY, DigestFrequency.WEEKLY)
JOB_SECONDS = 300  # work this long, then queue the continuation
MAX_ITEMS_SHOWN = 50


def period_of(frequency: str, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    return today - timedelta(days=today.weekday()) if frequency == DigestFrequency.WEEKLY else today


def open_digests(frequency: str, now: datetime) -> int:
    """Create this period's digest rows for users with pending deferred emails (one
    statement); return how many were created."""
    weekly = frequency == DigestFrequency.WEEKLY
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO email_digests (user_id, category, frequency, period, cutoff, status, item_count, error,
                                       created_at)
            SELECT d.user_id, d.category, %(frequency)s, %(period)s, %(now)s, 'PENDING', 0, '', %(now)s
            FROM deferred_emails d
            LEFT JOIN email_delivery_preferences p ON p.user_id = d.user_id AND p.category = d.category
            WHERE d.digest_id IS NULL AND d.created_at <= %(now)s
              AND {"p.frequency = 'WEEKLY'" if weekly else "p.frequency IS DISTINCT FROM 'WEEKLY'"}
            GROUP BY d.user_id, d.category
            ON CONFLICT (user_id, category, frequency, period) DO NOTHING
            """,
            {"frequency": frequency, "period": period_of(frequency, now), "now": now},
        )
        return cursor.rowcount


def attach_items(digest_ids: list[int]) -> None:
    """Put each digest's items in it: deferred emails of its user and category, created up
    to its cutoff and in no digest yet (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE deferred_emails d SET digest_id = g.id
            FROM email_digests g
            WHERE g.id = ANY(%s) AND d.user_id = g.user_id AND d.category = g.category
              AND d.digest_id IS NULL AND d.created_at <= g.cutoff
            """,
            [digest_ids],
        )


def digest_context(digest: EmailDigest, items: list[DeferredEmail]) -> dict[str, Any]:
    user = digest.user
    shown = items[:MAX_ITEMS_SHOWN]
    return {
        "user_name": user.first_name or user.username or "there",
        "frequency": digest.frequency.lower(),
        "period_word": "today" if digest.frequency == DigestFrequency.DAILY else "this week",
        "count": len(items),
        "items": [
            {"subject": item.subject, "summary": item.summary, "link": item.link, "date": f"{item.created_at:%b %d}"}
            for item in shown
        ],
        "more": len(items) - len(shown),
        "app_url": settings.APP_URL,
        "unsubscribe_url": unsubscribe_url(user.email, digest.category),
    }


def digest_message(digest: EmailDigest, items: list[DeferredEmail]):
    message = build_email(TEMPLATE, normalise(digest.user.email), digest_context(digest, items))
    message.extra_headers.update(list_unsubscribe_headers(digest.user.email, digest.category))
    message.tags = ["email-digest"]
    message.metadata = {"email_digest_id": str(digest.pk)}
    return message


def can_email(user) -> bool:
    return bool(user.email) and user.is_active and user.deleted_at is None


def set_states(rows: list[EmailDigest]) -> None:
    """Write each row's status, error and item count in one UPDATE."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE email_digests AS g SET status = v.status, error = v.error, item_count = v.item_count "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::int[]) AS v(id, status, error, item_count) "
            "WHERE g.id = v.id",
            [[r.pk for r in rows], [r.status for r in rows], [r.error for r in rows], [r.item_count for r in rows]],
        )


def send_digests(frequency: str, now: datetime, deadline: float, *, progress: Progress = no_progress) -> dict[str, Any]:
    """Claim, send and settle the PENDING digests of `frequency` batch by batch; past
    `deadline` (a `time.monotonic()` value) queue the continuation and stop."""
    counts = {"sent": 0, "failed": 0, "skipped": 0, "released": 0, "in_doubt": 0, "items": 0}
    outgoing: dict[int, Any] = {}

    def claim(rows: list[EmailDigest]) -> list[EmailDigest]:
        # Runs inside the claim's transaction: a database error here rolls it back.
        sending, poison = claim_batch(rows, outgoing)
        counts["skipped"] += len(rows) - len(sending) - poison
        counts["failed"] += poison
        return sending

    pending = EmailDigest.objects.filter(frequency=frequency, status=DigestStatus.PENDING).select_related("user")
    total = pending.count()
    done = 0
    for batch in claimed_batches(pending, claim):
        result = deliver([outgoing.pop(digest.pk) for digest in batch])
        settle(batch, result, timezone.now())
        counts["sent"] += len(result.sent)
        counts["failed"] += len(result.refused) + len(result.in_doubt)
        counts["released"] += len(result.unsent)
        counts["in_doubt"] += len(result.in_doubt)
        counts["items"] += sum(batch[i].item_count for i in result.sent)
        result.raise_error()
        done += len(batch)
        progress(done, total, f"{frequency.lower()} email digests")
        if time.monotonic() > deadline:
            counts["continued_by"] = requeue_self(
                JOB, f"email-digest-{frequency}", None, frequency=frequency, resume=True
            )
            break
    return counts


def claim_batch(rows: list[EmailDigest], outgoing: dict[int, Any]) -> tuple[list[EmailDigest], int]:
    """In the claim transaction: attach each digest's items, read them back, decide who is
    skipped and build the others' emails into `outgoing`; write every row's state (one
    UPDATE). Return the rows to send (SENDING) and how many failed to build (FAILED)."""
    ids = [row.pk for row in rows]
    attach_items(ids)
    items: dict[int, list[DeferredEmail]] = defaultdict(list)
    for item in DeferredEmail.objects.filter(digest_id__in=ids).order_by("created_at", "pk"):
        items[item.digest_id].append(item)
    no: set[str] = set()
    for category in {row.category for row in rows}:
        no |= blocked([row.user.email for row in rows if row.category == category and row.user.email], category)
    sending, poison = [], 0
    for row in rows:
        row.item_count = len(items[row.pk])
        if not can_email(row.user):
            row.status, row.error = DigestStatus.SKIPPED, "user inactive or without an email address"
        elif normalise(row.user.email) in no:
            row.status, row.error = DigestStatus.SKIPPED, "suppressed or unsubscribed"
        elif row.item_count == 0:
            row.status, row.error = DigestStatus.SKIPPED, "nothing to send"
        else:
            try:
                outgoing[row.pk] = digest_message(row, items[row.pk])
            except DatabaseError:  # not a poison row: the whole claim must roll back
                raise
            except Exception as exc:  # one bad row must not block the batch
                log.warning("digest=%s message not built: %s", row.pk, type(exc).__name__)
                reason = f"message could not be built: {type(exc).__name__}: {exc}"
                row.status, row.error = DigestStatus.FAILED, reason[:2000]
                poison += 1
                continue
            row.status = DigestStatus.SENDING
            sending.append(row)
    set_states(rows)
    return sending, poison


def settle(batch: list[EmailDigest], result: Delivery, now: datetime) -> None:
    if result.sent:
        EmailDigest.objects.filter(pk__in=[batch[i].pk for i in result.sent]).update(
            status=DigestStatus.SENT, sent_at=now
        )
    failures = [(batch[i], "refused by the mail server") for i in result.refused]
    failures += [(batch[i], IN_DOUBT) for i in result.in_doubt]
    for digest, error in failures:
        digest.status, digest.error = DigestStatus.FAILED, error
    set_states([digest for digest, _ in failures])
    if result.unsent:  # never attempted: the retry sends them, with the same items
        EmailDigest.objects.filter(pk__in=[batch[i].pk for i in result.unsent]).update(status=DigestStatus.PENDING)


def send_due_digests(
    frequency: str, *, resume: bool = False, now: datetime | None = None, progress: Progress = no_progress
) -> dict[str, Any]:
    """Send each user due a `frequency` digest one email of their deferred bulk emails.
    `resume` (a continuation) opens no new digests; it sends the ones still PENDING."""
    now = now or timezone.now()
    opened = 0 if resume else open_digests(frequency, now)
    counts = send_digests(frequency, now, time.monotonic() + JOB_SECONDS, progress=progress)
    return {"frequency": frequency, "opened": opened, **counts}
