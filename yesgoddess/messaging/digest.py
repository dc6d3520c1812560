"""The message digest (spec C §2.12 as settled by DECISIONS.md): the `message-digest` job
runs `send_period_digests` daily at 09:00 (DAILY) and Mondays at 09:00 (WEEKLY).

Who: active, undeleted users with an address whose notification preference for type
MESSAGE is DAILY (or WEEKLY). What: their unread, undeleted messages in threads that are
neither deleted nor muted by them, posted since the last message digest that reported to
them (any frequency; the first one looks back one day or one week), grouped by thread:
count, senders, the latest message cut at 200 characters. Subject "You have N unread
message(s)", template `message_digest`, List-Unsubscribe headers (category "messages");
addresses that are suppressed or opted out of "messages" (or "all") get nothing.

How, once per user and period (the day, or the Monday of the week):

1. One INSERT ... SELECT creates a PENDING `MessageDigest` row, with the window it covers,
   for every such user who has something unread in it (ON CONFLICT DO NOTHING: a rerun
   in the same period adds nobody twice).
2. `fanout.claimed_batches` locks PENDING rows in batches and, in the same transaction,
   reads what their emails need (one grouped query for their threads, the suppression
   list), builds the emails and marks each row SENDING, or EMPTY / BLOCKED / FAILED. Only
   then does the claim commit: a database error before the send (a dropped connection, a
   failover) rolls the claim back with it, so the rows stay PENDING for RQ's retry
   instead of SENDING for good (SENDING counts as reported). `fanout.deliver` sends the
   batch over one connection, and one UPDATE per batch records SENT / REFUSED, or
   releases to PENDING what was never attempted (the retry sends it). A message in doubt
   stays SENDING: never sent twice. Queries per batch are constant.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import DatabaseError, connection
from django.db.models.functions import Substr

from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.emailing.services import blocked, list_unsubscribe_headers, normalise
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.models import EmailFrequency, Notification, NotificationPreference
from yesgoddess.notifications.services import build_email

from .models import (
    COVERING,
    DigestFrequency,
    DigestStatus,
    Message,
    MessageDigest,
    MessageThread,
    ThreadParticipant,
)

log = logging.getLogger(__name__)

LOOKBACK = {DigestFrequency.DAILY: timedelta(days=1), DigestFrequency.WEEKLY: timedelta(days=7)}
PREFERENCE = {DigestFrequency.DAILY: EmailFrequency.DAILY, DigestFrequency.WEEKLY: EmailFrequency.WEEKLY}
EXCERPT = 200


def period_of(frequency: str, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    return today if frequency == DigestFrequency.DAILY else today - timedelta(days=today.weekday())


# Unread, visible messages to `recipient` in [since, until): the condition both steps use.
UNREAD = """
    m.read_at IS NULL AND m.deleted_at IS NULL AND t.deleted_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM {participants} tp
                    WHERE tp.thread_id = m.thread_id AND tp.user_id = m.recipient_id AND tp.muted_at IS NOT NULL)
"""

PREPARE_SQL = """
INSERT INTO {digests} (user_id, frequency, period, status, covers_from, covers_until, message_count, thread_count,
                       created_at)
SELECT u.id, %(frequency)s, %(period)s, %(pending)s, w.since, %(now)s, 0, 0, %(now)s
FROM {users} u
JOIN {preferences} p ON p.user_id = u.id AND p.type = %(type)s AND p.email_frequency = %(preference)s
CROSS JOIN LATERAL (
    SELECT COALESCE(MAX(d.covers_until), %(lookback)s) AS since
    FROM {digests} d WHERE d.user_id = u.id AND d.status = ANY(%(covering)s)
) w
WHERE u.is_active AND u.deleted_at IS NULL AND u.email <> ''
  AND EXISTS (
    SELECT 1 FROM {messages} m JOIN {threads} t ON t.id = m.thread_id
    WHERE m.recipient_id = u.id AND m.created_at >= w.since AND m.created_at < %(now)s AND {unread}
  )
ON CONFLICT (user_id, frequency, period) DO NOTHING
"""

# Per claimed digest and thread: how many unread, the latest message, the senders
# newest first. One statement for the whole batch.
THREADS_SQL = """
SELECT d.id, m.thread_id, COUNT(*),
       (ARRAY_AGG(m.id ORDER BY m.created_at DESC, m.id DESC))[1],
       (ARRAY_AGG(m.sender_id ORDER BY m.created_at DESC, m.id DESC))[1:%(senders)s]
FROM {digests} d
JOIN {messages} m ON m.recipient_id = d.user_id AND m.created_at >= d.covers_from AND m.created_at < d.covers_until
JOIN {threads} t ON t.id = m.thread_id
WHERE d.id = ANY(%(ids)s) AND {unread}
GROUP BY d.id, m.thread_id
ORDER BY d.id, MAX(m.created_at) DESC, m.thread_id
"""

# How many sender ids per thread are read back to name the (distinct) senders.
SENDER_IDS = 100


def _tables() -> dict[str, str]:
    tables = {
        "digests": MessageDigest._meta.db_table,
        "users": get_user_model()._meta.db_table,
        "preferences": NotificationPreference._meta.db_table,
        "messages": Message._meta.db_table,
        "threads": MessageThread._meta.db_table,
        "participants": ThreadParticipant._meta.db_table,
    }
    return {**tables, "unread": UNREAD.format(**tables)}


def prepare_digests(frequency: str, period: date, now: datetime) -> int:
    """Create this period's PENDING digests for every user with something unread to report
    (one statement); return how many were added. Older PENDING rows of this frequency
    (a run that never finished) are SKIPPED: their messages fall into this window."""
    MessageDigest.objects.filter(frequency=frequency, period__lt=period, status=DigestStatus.PENDING).update(
        status=DigestStatus.SKIPPED
    )
    params = {
        "frequency": frequency,
        "period": period,
        "pending": DigestStatus.PENDING,
        "now": now,
        "type": Notification.Type.MESSAGE,
        "preference": PREFERENCE[frequency],
        "lookback": now - LOOKBACK[frequency],
        "covering": [str(status) for status in COVERING],
    }
    with connection.cursor() as cursor:
        cursor.execute(PREPARE_SQL.format(**_tables()), params)
        return cursor.rowcount


def display_name(user: Any) -> str:
    return user.get_full_name() or user.username or "Unknown"


def excerpt(body: str) -> str:
    return body if len(body) <= EXCERPT else body[:EXCERPT] + "..."


def thread_summaries(digests: list[MessageDigest]) -> dict[int, list[dict[str, Any]]]:
    """The threads to report per digest id (three queries, whatever the batch size)."""
    with connection.cursor() as cursor:
        cursor.execute(THREADS_SQL.format(**_tables()), {"ids": [d.pk for d in digests], "senders": SENDER_IDS})
        rows = cursor.fetchall()
    latest = {
        m["id"]: m
        for m in Message.objects.filter(pk__in=[row[3] for row in rows])
        .annotate(snippet=Substr("body", 1, EXCERPT + 1))
        .values("id", "snippet", "created_at", "sender_id", "thread__subject")
    }
    people = {sender for row in rows for sender in row[4]} | {m["sender_id"] for m in latest.values()}
    names = {user.pk: display_name(user) for user in get_user_model().objects.filter(pk__in=people)}
    summaries: dict[int, list[dict[str, Any]]] = {}
    for digest_id, thread_id, count, latest_id, senders in rows:
        message = latest[latest_id]
        sender_names = list(dict.fromkeys(names.get(sender, "Unknown") for sender in senders))
        summaries.setdefault(digest_id, []).append(
            {
                "thread_id": thread_id,
                "subject": message["thread__subject"] or "(no subject)",
                "message_count": count,
                "senders": sender_names,
                "latest": {
                    "sender_name": names.get(message["sender_id"], "Unknown"),
                    "body": excerpt(message["snippet"]),
                    "created_at": message["created_at"],
                },
                "url": f"{settings.APP_URL}/messages/{thread_id}",
            }
        )
    return summaries


def digest_context(digest: MessageDigest, threads: list[dict[str, Any]]) -> dict[str, Any]:
    user = digest.user
    return {
        "recipient_name": user.first_name or user.get_full_name() or "there",
        "frequency": digest.frequency.lower(),
        "threads": threads,
        "thread_count": len(threads),
        "total_unread_count": sum(t["message_count"] for t in threads),
        "inbox_url": f"{settings.APP_URL}/messages",
        "preferences_url": f"{settings.APP_URL}/settings/notifications",
    }


def build_digest(digest: MessageDigest, threads: list[dict[str, Any]]):
    email = digest.user.email
    return build_email(
        "message_digest", email, digest_context(digest, threads), headers=list_unsubscribe_headers(email, "messages")
    )


def send_digests(frequency: str, period: date, now: datetime, *, progress: Progress = no_progress) -> dict[str, int]:
    """Claim, build, send and record the period's PENDING digests batch by batch."""
    counts = dict.fromkeys(("sent", "refused", "unsent", "in_doubt", "empty", "blocked", "failed"), 0)
    due = MessageDigest.objects.filter(frequency=frequency, period=period, status=DigestStatus.PENDING)
    total = due.count()
    processed = 0
    outgoing: dict[int, EmailMessage] = {}

    def claim(rows: list[MessageDigest]) -> list[MessageDigest]:
        # Runs inside the claim's transaction: every read the emails need happens before
        # it commits, so a database error here rolls the claim back (rows stay PENDING).
        nonlocal processed
        sending = prepare_batch(rows, outgoing)
        MessageDigest.objects.bulk_update(rows, ["status", "message_count", "thread_count"])
        for status in (DigestStatus.EMPTY, DigestStatus.BLOCKED, DigestStatus.FAILED):
            counts[status.lower()] += sum(d.status == status for d in rows)
        processed += len(rows) - len(sending)
        return sending

    for batch in claimed_batches(due.select_related("user"), claim):
        result = deliver([outgoing.pop(digest.pk) for digest in batch])
        for index in result.sent:
            batch[index].status, batch[index].sent_at = DigestStatus.SENT, now
        for index in result.refused:
            batch[index].status = DigestStatus.REFUSED
        for index in result.unsent:  # never attempted: the retry sends it
            batch[index].status = DigestStatus.PENDING
        # In doubt: stays SENDING.
        MessageDigest.objects.bulk_update(batch, ["status", "sent_at"])
        result.tally(counts)
        processed += len(batch)
        progress(processed, total, "digests")
        result.raise_error()
    return counts


def prepare_batch(rows: list[MessageDigest], outgoing: dict[int, EmailMessage]) -> list[MessageDigest]:
    """Read the batch's threads and stop list, settle the rows that send nothing (EMPTY,
    BLOCKED, FAILED to build) and build the others' emails into `outgoing`; return the
    rows to send, marked SENDING (the caller writes every row's state)."""
    stopped = blocked([d.user.email for d in rows], "messages")
    summaries = thread_summaries(rows)
    sending = []
    for digest in rows:
        threads = summaries.get(digest.pk, [])
        digest.thread_count = len(threads)
        digest.message_count = sum(t["message_count"] for t in threads)
        if normalise(digest.user.email) in stopped:
            digest.status = DigestStatus.BLOCKED
            continue
        if not threads:
            digest.status = DigestStatus.EMPTY
            continue
        try:
            outgoing[digest.pk] = build_digest(digest, threads)
        except DatabaseError:  # not a poison digest: the whole claim must roll back
            raise
        except Exception:  # a poison digest must not block its batch
            log.exception("message digest %s could not be built", digest.pk)
            digest.status = DigestStatus.FAILED
            continue
        digest.status = DigestStatus.SENDING
        sending.append(digest)
    return sending


def send_period_digests(frequency: str, now: datetime, *, progress: Progress = no_progress) -> dict[str, Any]:
    """Prepare this period's digests of `frequency` (DAILY or WEEKLY), then send them."""
    period = period_of(frequency, now)
    prepared = prepare_digests(frequency, period, now)
    return {
        "frequency": frequency,
        "period": period.isoformat(),
        "prepared": prepared,
        **send_digests(frequency, period, now, progress=progress),
    }
