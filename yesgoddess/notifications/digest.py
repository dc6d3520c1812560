"""Daily and weekly notification digests (notification-digest), each user at most once
per period, covering what was created since the last digest sent to that user.

1. `prepare_digests` (one statement) inserts a `NotificationDigest` row, PENDING, for
   every active user with something to report: unread notifications routed to the
   digest (`email_status=DIGEST`) of a type the user wants at this frequency, created
   in the user's window. The window starts where the last digest of this frequency SENT
   (or in doubt) to the user ended, else one day (one week) back, and ends now. The row
   is unique per (user, frequency, period): a second run in the same day (ISO week)
   prepares nothing.
2. `batch_ranges` splits the period's PENDING rows into id ranges of
   NOTIFICATION_DIGEST_BATCH users; `schedule_digest_batches` (the cron job
   notification-digest, `frequency` DAILY at 09:00, WEEKLY Mondays at 09:00) prepares the
   period and enqueues one `notification-digest.batch` job per range
   (`send_digest_batch`), so a retry repeats one batch only.
3. `send_digest_batch` claims rows with the fan-out pattern (marked SENDING and committed
   before sending), reads all their notifications in one query, sends over one SMTP
   connection per EMAIL_BATCH_SIZE with List-Unsubscribe headers (category `digests`),
   and records SENT / REFUSED / back to PENDING (never attempted). The number of queries
   per batch does not depend on the number of users or notifications in it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.emailing.models import EmailCategory
from yesgoddess.emailing.services import blocked, list_unsubscribe_headers, normalise, unsubscribe_url

from .delivery import link, unreachable_reason
from .fanout import claimed_batches, deliver
from .models import DigestFrequency, DigestStatus, EmailStatus, Notification, NotificationDigest, NotificationPreference
from .services import build_email

log = logging.getLogger(__name__)

TEMPLATE = "notification_digest"
BATCH_JOB = "notification-digest.batch"
WINDOW = {DigestFrequency.DAILY: timedelta(days=1), DigestFrequency.WEEKLY: timedelta(days=7)}
# Digest statuses after which the digest may have reached the user: the next window starts
# where theirs ended (a digest in doubt is never repeated).
DELIVERED = (DigestStatus.SENT, DigestStatus.SENDING)
ANALYZE_AFTER = 5000  # rows prepared at once after which the table's statistics are refreshed
ITEMS_PER_TYPE = 10  # notifications listed per type; the rest are counted, with a link
TYPE_ORDER = {value: index for index, value in enumerate(Notification.Type.values)}
TYPE_LABELS = {
    "LICENSE": "Licenses",
    "PAYOUT": "Payouts",
    "ROYALTY": "Royalties",
    "PROJECT": "Projects",
    "SYSTEM": "System",
    "MESSAGE": "Messages",
    "POST_ASSIGNED": "Posts assigned to you",
    "POST_STATUS_CHANGED": "Post status changes",
    "BLOG": "Blog",
}


def period_key(frequency: str, now: datetime) -> str:
    day = now.astimezone(UTC).date()
    if frequency == DigestFrequency.DAILY:
        return day.isoformat()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _tables() -> dict[str, str]:
    return {
        "digests": NotificationDigest._meta.db_table,
        "notifications": Notification._meta.db_table,
        "prefs": NotificationPreference._meta.db_table,
        "users": get_user_model()._meta.db_table,
    }


SUPERSEDE_SQL = """
UPDATE {digests} SET status = %(superseded)s
WHERE frequency = %(frequency)s AND status = %(pending)s AND period_key <> %(key)s
"""

PREPARE_SQL = """
INSERT INTO {digests} (user_id, frequency, period_key, status, window_start, window_end, notification_count,
                       created_at)
SELECT u.id, %(frequency)s, %(key)s, %(pending)s, w.start, %(now)s, 0, %(now)s
FROM (SELECT DISTINCT user_id FROM {prefs} WHERE email_frequency = %(frequency)s) wanted
JOIN {users} u ON u.id = wanted.user_id
CROSS JOIN LATERAL (
    SELECT COALESCE(
        MAX(d.window_end) FILTER (WHERE d.status = ANY(%(delivered)s)),
        LEAST(%(fallback)s, MIN(d.window_start) FILTER (WHERE d.status = %(superseded)s))
    ) AS start
    FROM {digests} d
    WHERE d.user_id = u.id AND d.frequency = %(frequency)s
) w
WHERE u.is_active AND u.deleted_at IS NULL
  AND EXISTS (
    SELECT 1 FROM {prefs} p JOIN {notifications} n ON n.user_id = p.user_id AND n.type = p.type
    WHERE p.user_id = u.id AND p.email_frequency = %(frequency)s
      AND n.email_status = %(digest)s AND NOT n.read AND n.created_at >= w.start AND n.created_at < %(now)s
  )
ON CONFLICT (user_id, frequency, period_key) DO NOTHING
"""


def prepare_digests(frequency: str, now: datetime) -> tuple[str, int]:
    """Create this period's digest rows (two statements); return (period key, rows added).

    A row of an earlier period still PENDING is SUPERSEDED first, and the new window
    covers it: it starts where the last digest delivered ended or, when none was, at the
    earlier of the frequency's window and the superseded rows' start."""
    key = period_key(frequency, now)
    params = {
        "frequency": frequency,
        "key": key,
        "now": now,
        "fallback": now - WINDOW[frequency],
        "pending": DigestStatus.PENDING,
        "superseded": DigestStatus.SUPERSEDED,
        "delivered": list(DELIVERED),
        "digest": EmailStatus.DIGEST,
    }
    with connection.cursor() as cursor:
        cursor.execute(SUPERSEDE_SQL.format(**_tables()), params)
        cursor.execute(PREPARE_SQL.format(**_tables()), params)
        created = cursor.rowcount
        if created >= ANALYZE_AFTER:
            # The batch jobs start at once; with statistics from before this insert (an
            # empty table, on the first run) PostgreSQL hashes the whole table per batch.
            cursor.execute(f"ANALYZE {_tables()['digests']}")
        return key, created


RANGES_SQL = """
SELECT MIN(id), MAX(id) FROM (
    SELECT id, (row_number() OVER (ORDER BY id) - 1) / %(size)s AS bucket
    FROM {digests} WHERE frequency = %(frequency)s AND status = %(pending)s AND period_key = %(key)s
) numbered GROUP BY bucket ORDER BY bucket
"""


def batch_ranges(frequency: str, key: str, size: int) -> list[tuple[int, int]]:
    """Inclusive id ranges of `size` PENDING digests of the period (one query)."""
    params = {"frequency": frequency, "key": key, "size": size, "pending": DigestStatus.PENDING}
    with connection.cursor() as cursor:
        cursor.execute(RANGES_SQL.format(**_tables()), params)
        return [(first, last) for first, last in cursor.fetchall()]


CONTENTS_SQL = """
SELECT x.digest_id, x.type, x.total, x.title, x.message, x.action_url, x.created_at
FROM (
    SELECT d.id AS digest_id, n.type, n.title, n.message, n.action_url, n.created_at,
           row_number() OVER (PARTITION BY d.id, n.type ORDER BY n.created_at DESC, n.id DESC) AS rank,
           count(*) OVER (PARTITION BY d.id, n.type) AS total
    FROM unnest(%(ids)s::bigint[]) AS wanted(id)
    JOIN {digests} d ON d.id = wanted.id
    JOIN {prefs} p ON p.user_id = d.user_id AND p.email_frequency = d.frequency
    JOIN {notifications} n ON n.user_id = d.user_id AND n.type = p.type
    WHERE n.email_status = %(digest)s AND NOT n.read
      AND n.created_at >= d.window_start AND n.created_at < d.window_end
) x
WHERE x.rank <= %(items)s
ORDER BY x.digest_id, x.created_at DESC
"""


def schedule_digest_batches(frequency: str, now: datetime | None = None) -> dict[str, Any]:
    """Prepare this period's digests, then enqueue one batch job per
    NOTIFICATION_DIGEST_BATCH users (deduplicated per range: a re-run queues nothing twice)."""
    key, prepared = prepare_digests(frequency, now or timezone.now())
    ranges = batch_ranges(frequency, key, settings.NOTIFICATION_DIGEST_BATCH)
    for first_id, last_id in ranges:
        enqueue(
            BATCH_JOB,
            dedup_key=f"{frequency}-{key}-{first_id}-{last_id}",
            frequency=frequency,
            period_key=key,
            first_id=first_id,
            last_id=last_id,
        )
    return {"frequency": frequency, "period": key, "prepared": prepared, "batches": len(ranges)}


def when(moment: datetime) -> str:
    """ "Mar 2, 08:00 UTC" (formatted here: the template's date filter is a tenth of the
    time spent on a digest)."""
    moment = moment.astimezone(UTC)
    return f"{moment:%b} {moment.day}, {moment:%H:%M} UTC"


def digest_sections(digest_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each digest's sections (one query for all of them): per type, in the types'
    declared order, the count and the newest ITEMS_PER_TYPE notifications."""
    params = {"ids": digest_ids, "digest": EmailStatus.DIGEST, "items": ITEMS_PER_TYPE}
    sections: dict[int, dict[str, dict[str, Any]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(CONTENTS_SQL.format(**_tables()), params)
        for digest_id, type_, total, title, message, action_url, created_at in cursor.fetchall():
            section = sections.setdefault(digest_id, {}).setdefault(
                type_, {"type": type_, "label": TYPE_LABELS.get(type_, type_), "count": total, "items": []}
            )
            section["items"].append(
                {"title": title, "message": message, "url": link(action_url), "when": when(created_at)}
            )
    result = {}
    for digest_id, by_type in sections.items():
        ordered = sorted(by_type.values(), key=lambda s: TYPE_ORDER.get(s["type"], len(TYPE_ORDER)))
        for section in ordered:
            section["more"] = section["count"] - len(section["items"])
        result[digest_id] = ordered
    return result


def digest_context(digest: NotificationDigest, sections: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "user_name": digest.user.first_name or "there",
        "frequency": digest.frequency.lower(),
        "total_count": sum(section["count"] for section in sections),
        "sections": sections,
        "dashboard_url": f"{settings.APP_URL}/notifications",
        "preferences_url": f"{settings.APP_URL}/settings/notifications",
        "unsubscribe_url": unsubscribe_url(digest.user.email, EmailCategory.DIGESTS),
    }


def build_digest_email(digest: NotificationDigest, sections: list[dict[str, Any]]):
    email = digest.user.email
    headers = list_unsubscribe_headers(email, EmailCategory.DIGESTS)
    return build_email(TEMPLATE, email, digest_context(digest, sections), headers=headers)


def send_digest_batch(
    frequency: str,
    key: str,
    first_id: int,
    last_id: int,
    progress: Progress = no_progress,
) -> dict[str, int]:
    """Send the PENDING digests of the period with ids in [first_id, last_id], each at most
    once; return the counts. A delivery error is re-raised once the batch is settled."""
    counts = {"sent": 0, "refused": 0, "unsent": 0, "in_doubt": 0, "blocked": 0, "no_address": 0, "empty": 0}
    counts["failed"] = 0
    due = NotificationDigest.objects.filter(
        frequency=frequency, period_key=key, status=DigestStatus.PENDING, pk__gte=first_id, pk__lte=last_id
    ).select_related("user")
    sections: dict[int, list[dict[str, Any]]] = {}
    processed = 0
    # The count is one more query: only made when someone listens.
    total = due.count() if progress is not no_progress else None

    def claim(rows: list[NotificationDigest]) -> list[NotificationDigest]:
        nonlocal processed
        found = digest_sections([row.pk for row in rows])
        refused = blocked([row.user.email for row in rows if row.user.email], EmailCategory.DIGESTS)
        for row in rows:
            row_sections = found.get(row.pk, [])
            row.notification_count = sum(section["count"] for section in row_sections)
            if unreachable_reason(row.user):
                row.status = DigestStatus.NO_ADDRESS
            elif not row_sections:
                row.status = DigestStatus.EMPTY
            elif normalise(row.user.email) in refused:
                row.status = DigestStatus.BLOCKED
            else:
                row.status = DigestStatus.SENDING
                sections[row.pk] = row_sections
            if row.status != DigestStatus.SENDING:
                counts[row.status.lower()] += 1
        _mark(rows)
        processed += len(rows)
        return [row for row in rows if row.status == DigestStatus.SENDING]

    for batch in claimed_batches(due, claim):
        messages, broken = [], []
        for row in batch:
            try:
                messages.append(build_digest_email(row, sections.pop(row.pk)))
            except Exception as exc:  # a poison row: recorded, the batch goes on
                log.warning("digest=%s email not built: %s", row.pk, type(exc).__name__)
                messages.append(None)
                broken.append(row.pk)
        result = deliver(messages)
        _settle(batch, result, broken)
        counts["failed"] += len(broken)
        result.tally(counts)
        progress(processed, total)
        result.raise_error()
    return counts


MARK_SQL = """
UPDATE {digests} d SET status = v.status, notification_count = v.n
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(counts)s::int[]) AS v(id, status, n)
WHERE d.id = v.id
"""


def _mark(rows: list[NotificationDigest]) -> None:
    """Each row's status and count in one statement (bulk_update's CASE is slow to build)."""
    params = {
        "ids": [row.pk for row in rows],
        "statuses": [row.status for row in rows],
        "counts": [row.notification_count for row in rows],
    }
    with connection.cursor() as cursor:
        cursor.execute(MARK_SQL.format(**_tables()), params)


def _settle(batch: list[NotificationDigest], result: Any, broken: list[int]) -> None:
    def ids(indexes: list[int]) -> list[int]:
        return [batch[i].pk for i in indexes]

    if result.sent:
        NotificationDigest.objects.filter(pk__in=ids(result.sent)).update(
            status=DigestStatus.SENT, sent_at=timezone.now()
        )
    if result.refused:
        NotificationDigest.objects.filter(pk__in=ids(result.refused)).update(status=DigestStatus.REFUSED)
    if broken:
        NotificationDigest.objects.filter(pk__in=broken).update(status=DigestStatus.FAILED)
    if result.unsent:  # never attempted: the retry sends them
        NotificationDigest.objects.filter(pk__in=ids(result.unsent)).update(status=DigestStatus.PENDING)
    # In doubt: stays SENDING; never sent again, and the next window starts after it.
