"""notification-digest for 50,000 users: the period prepared in one statement, then one
batch job per NOTIFICATION_DIGEST_BATCH users, each run here in turn (locmem email
backend, no rate limit). Prints users, batches, the queries of every batch job (the same
number whatever the users and notifications in it) and the seconds.

Usage: python bench/notification_digest.py [--users 50000] [--per-user 4]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from _common import prepare_bench_db, setup_django

PREFIX = "ndbench-"


def build(users: int, per_user: int) -> None:
    """Users with DAILY preferences and unread notifications routed to the digest, plus
    read ones and immediate ones that the digest must ignore. Only this bench's rows are
    replaced (the bench database is shared)."""
    from django.db import connection

    mine = f"SELECT id FROM users WHERE username LIKE '{PREFIX}%%'"
    with connection.cursor() as cursor:
        for table in ("notification_digests", "notifications", "notification_preferences"):
            cursor.execute(f"DELETE FROM {table} WHERE user_id IN ({mine})")
        cursor.execute(f"DELETE FROM users WHERE id IN ({mine})")
        cursor.execute(
            "INSERT INTO users (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined, role, lock_reason) SELECT '!', false, %s || g, 'User' || g, '', "
            "%s || g || '@example.com', false, true, now(), 'CREATOR', '' FROM generate_series(1, %s) g",
            [PREFIX, PREFIX, users],
        )
        # LICENSE daily for everyone, PAYOUT daily for a third, SYSTEM weekly for a fifth.
        cursor.execute(
            "INSERT INTO notification_preferences (user_id, type, email_frequency, updated_at) "
            "SELECT id, 'LICENSE', 'DAILY', now() FROM users WHERE username LIKE %s "
            "UNION ALL SELECT id, 'PAYOUT', 'DAILY', now() FROM users WHERE username LIKE %s AND id %% 3 = 0 "
            "UNION ALL SELECT id, 'SYSTEM', 'WEEKLY', now() FROM users WHERE username LIKE %s AND id %% 5 = 0",
            [PREFIX + "%"] * 3,
        )
        cursor.execute(
            "INSERT INTO notifications (user_id, type, title, message, action_url, priority, read, metadata, "
            "created_at, email_status) "
            "SELECT u.id, CASE WHEN k %% 4 = 3 THEN 'PAYOUT' ELSE 'LICENSE' END, 'Notice ' || k, "
            "'Something happened to license ' || (u.id + k), '/licenses/' || (u.id + k), 'MEDIUM', false, NULL, "
            "now() - (k + 1) * interval '1 hour', 'DIGEST' "
            "FROM users u, generate_series(0, %s) k WHERE u.username LIKE %s",
            [per_user - 1, PREFIX + "%"],
        )
        # Noise: read digest rows, rows already emailed, and weekly rows.
        cursor.execute(
            "INSERT INTO notifications (user_id, type, title, message, priority, read, created_at, email_status) "
            "SELECT u.id, t.type, 'Noise', 'm', 'MEDIUM', t.read, now() - interval '2 hours', t.status "
            "FROM users u, (VALUES ('LICENSE', true, 'DIGEST'), ('ROYALTY', false, 'SENT'), "
            "('SYSTEM', false, 'DIGEST')) AS t(type, read, status) WHERE u.username LIKE %s",
            [PREFIX + "%"],
        )
        cursor.execute("ANALYZE users, notifications, notification_preferences, notification_digests")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=4, help="digest notifications per user")
    options = parser.parse_args()
    db_url = prepare_bench_db()
    setup_django(
        DATABASE_URL=db_url,
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        EMAIL_RATE_LIMIT_PER_SECOND="0",
        # As in production: DEBUG off, so Django's cached template loader is on (with
        # DEBUG=1 every email re-reads and re-parses its three templates).
        DEBUG="0",
        SECRET_KEY="bench-only-secret-key",
    )
    from django.conf import settings
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from yesgoddess.notifications import digest

    mail.outbox = []
    began = time.perf_counter()
    build(options.users, options.per_user)
    print(
        f"notification-digest: {options.users} users, {options.per_user} digest notifications each "
        f"(+3 ignored rows each), built in {time.perf_counter() - began:.1f} s"
    )

    began = time.perf_counter()
    with CaptureQueriesContext(connection) as prepare_queries:
        key, prepared = digest.prepare_digests("DAILY", timezone.now())
        ranges = digest.batch_ranges("DAILY", key, settings.NOTIFICATION_DIGEST_BATCH)
    prepare_seconds = time.perf_counter() - began
    print(
        f"  prepare: {prepared} digests in {len(ranges)} batches of {settings.NOTIFICATION_DIGEST_BATCH} users, "
        f"{len(prepare_queries)} queries, {prepare_seconds:.2f} s"
    )

    per_batch: list[int] = []
    sent = 0
    began = time.perf_counter()
    for first, last in ranges:
        with CaptureQueriesContext(connection) as queries:
            sent += digest.send_digest_batch("DAILY", key, first, last)["sent"]
        per_batch.append(len(queries))
        mail.outbox = []
    send_seconds = time.perf_counter() - began
    shapes = ", ".join(f"{queries} queries x {jobs} jobs" for queries, jobs in sorted(Counter(per_batch).items()))
    print(
        f"  batch jobs: {len(ranges)}; queries per batch job: {shapes} "
        f"(claims of EMAIL_BATCH_SIZE={settings.EMAIL_BATCH_SIZE}; no per-user query)"
    )
    print(
        f"  sent {sent} digests in {send_seconds:.1f} s ({sent / send_seconds:.0f} digests/s); "
        f"total {prepare_seconds + send_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
