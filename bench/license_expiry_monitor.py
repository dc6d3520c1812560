"""license-expiry-monitor over 100,000 licenses: queries per stage, against the number of
licenses the stage handles. The claim: each batch of EMAIL_BATCH_SIZE licenses costs the
same handful of queries whatever the owners, offers or brands (no query per license), so
a stage costs (batches x constant) + the sends. Emails go to the locmem backend.
Usage: python bench/license_expiry_monitor.py [--licenses 100000]
"""

from __future__ import annotations

import argparse
import time

from _common import prepare_bench_db, setup_django


def build(licenses: int) -> None:
    """Brands, creators, assets with two owners each, licenses ending 0-400 days out."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE licenses, license_status_history, license_renewal_offers, ip_ownerships, ip_assets, "
            "creators, brands, notifications, events, audit_events, users CASCADE"
        )
        cursor.execute(
            "INSERT INTO users (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined, role, lock_reason) "
            "SELECT '!', false, 'u' || g, 'U' || g, '', 'u' || g || '@example.com', false, true, now(), "
            "'BRAND', '' FROM generate_series(1, 3000) g"
        )
        cursor.execute(
            "INSERT INTO brands (user_id, name, created_at) SELECT id, 'Brand ' || id, now() "
            "FROM users WHERE id <= (SELECT min(id) + 999 FROM users)"
        )
        cursor.execute(
            "INSERT INTO creators (user_id, display_name, created_at) SELECT id, 'Creator ' || id, now() "
            "FROM users WHERE id > (SELECT min(id) + 999 FROM users)"
        )
        cursor.execute(
            "INSERT INTO ip_assets (title, type, storage_key, original_filename, file_size, mime_type, "
            "declared_mime_type, version, metadata, status, scan_status, created_by_id, created_at, updated_at) "
            "SELECT 'Asset ' || g, 'IMAGE', 'bench/' || g, '', 1, 'image/jpeg', '', 1, '{}', 'PUBLISHED', "
            "'CLEAN', (SELECT min(id) FROM users), now(), now() FROM generate_series(1, 10000) g"
        )
        cursor.execute(
            "INSERT INTO ip_ownerships (ip_asset_id, creator_id, share_bps, ownership_type, start_date, disputed, "
            "created_at, updated_at) SELECT a.id, c.min + (a.id * 2 + k) %% 2000, 5000, 'PRIMARY', "
            "now() - interval '1 year', false, now(), now() "
            "FROM ip_assets a, generate_series(0, 1) k, (SELECT min(id) FROM creators) c",
            [],
        )
        cursor.execute(
            "INSERT INTO licenses (status, auto_renew, brand_id, ip_asset_id, license_type, start_date, end_date, "
            "fee_cents, rev_share_bps, scope_json, metadata, created_at, updated_at, grace_period_days, "
            "usage_tracking_enabled, total_usage_events) "
            "SELECT 'ACTIVE', false, b.min + g %% 1000, a.min + g %% 10000, 'NON_EXCLUSIVE', "
            "now() - interval '1 year', now() + (g %% 400) * interval '1 day' + interval '6 hours', "
            "100000, 0, '{}', '{}', now(), now(), 7, "
            "true, 0 FROM generate_series(1, %s) g, (SELECT min(id) FROM brands) b, (SELECT min(id) FROM ip_assets) a",
            [licenses],
        )
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--licenses", type=int, default=100_000)
    options = parser.parse_args()
    setup_django(DATABASE_URL=prepare_bench_db(), EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    from django.conf import settings
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, setup_test_environment
    from django.utils import timezone

    from yesgoddess.licensing import expiry

    setup_test_environment()  # mail.outbox for the locmem backend
    build(options.licenses)
    now = timezone.now()
    print(
        f"license-expiry-monitor over {options.licenses} licenses (batch = EMAIL_BATCH_SIZE = "
        f"{settings.EMAIL_BATCH_SIZE}):"
    )
    print(f"  {'stage':<16}{'licenses':>9}{'batches':>9}{'queries':>9}{'per batch':>11}{'emails':>8}{'seconds':>9}")
    for stage in expiry.NOTICE_STAGES:
        mail.outbox = []
        batches = handled = 0
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            for batch in expiry.notice_batches(stage, now):
                handled += expiry.send_notice_batch(stage, batch, now)
                batches += 1
        seconds = time.perf_counter() - began
        per_batch = len(queries) / max(batches, 1)
        print(
            f"  {f'{stage.days}-day notice':<16}{handled:>9}{batches:>9}{len(queries):>9}{per_batch:>11.1f}"
            f"{len(mail.outbox):>8}{seconds:>9.2f}"
        )
    began = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        moved = expiry.mark_expiring_soon(now)
    print(f"  {'expiring soon':<16}{moved:>9}{'':>9}{len(queries):>9}{'':>11}{0:>8}{time.perf_counter() - began:>9.2f}")
    print(
        "  (a notice batch: the claim (lock the batch with brand and asset, offers, the renewal price at 60 and "
        "30 days, owners, the markers), then after the send the release of what did not go, events, audits, and "
        "for 30 days the in-app rows; the transactions' own statements included)"
    )


if __name__ == "__main__":
    main()
