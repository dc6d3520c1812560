"""creator-monthly-report for 10,000 creators over 1,000,000 licenses and 1,000,000 analytics
events: wall time, the number of queries that compute the figures (three statements for
all creators, whatever their number: the figures, the earnings claimed, their sums) and
the total (a constant handful per batch of EMAIL_BATCH_SIZE emails), emails through the
locmem backend. Runs at 1/10 the size first, to show the counts do not grow per creator.
Set EMAIL_RATE_LIMIT_PER_SECOND=0 to time the job rather than the rate limit.
Usage: python bench/creator_monthly_report.py [--creators 10000] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime

import _common
from _common import PYTHON, ROOT, child_env, setup_django

# Its own database: the build truncates users, licenses and events.
_common.BENCH_DB = "yesgoddess_bench_creator_report"
_common.BENCH_DB_URL = f"postgres://postgres@127.0.0.1:5432/{_common.BENCH_DB}"


def report_month() -> date:
    today = datetime.now(UTC).date()
    first = today.replace(day=1)
    return date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)


def build(creators: int, rows: int, month: date) -> None:
    """Creators (approved), 2 owners per asset, `rows` licenses and `rows` events spread
    over the month before, the month reported on and the month after; one royalty run
    (one statement per creator) locked in the month."""
    from django.db import connection

    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    assets = max(creators * 2, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE creator_monthly_reports, royalty_lines, royalty_statements, royalty_runs, licenses, "
            "ip_ownerships, ip_assets, creators, brands, events, users CASCADE"
        )
        cursor.execute(
            "INSERT INTO users (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined, role, lock_reason) SELECT '!', false, 'u' || g, 'U' || g, '', "
            "'u' || g || '@example.com', g = 1, true, now(), 'CREATOR', '' FROM generate_series(1, %s) g",
            [creators + 1],
        )
        cursor.execute("INSERT INTO brands (user_id, name, created_at) SELECT min(id), 'Brand', now() FROM users")
        cursor.execute(
            "INSERT INTO creators (user_id, display_name, created_at, verification_status) "
            "SELECT id, 'Creator ' || id, '2020-01-01', 'approved' FROM users "
            "WHERE id > (SELECT min(id) FROM users)"
        )
        cursor.execute(
            "INSERT INTO ip_assets (title, type, storage_key, original_filename, file_size, mime_type, "
            "declared_mime_type, version, metadata, status, scan_status, created_by_id, created_at, updated_at) "
            "SELECT 'Asset ' || g, 'IMAGE', 'bench/' || g, '', 1, 'image/jpeg', '', 1, '{}', 'PUBLISHED', "
            "'CLEAN', (SELECT min(id) FROM users), now(), now() FROM generate_series(1, %s) g",
            [assets],
        )
        cursor.execute(
            "INSERT INTO ip_ownerships (ip_asset_id, creator_id, share_bps, ownership_type, start_date, disputed, "
            "created_at, updated_at) SELECT a.id, c.min + (a.id * 2 + k) %% %s, 5000, 'PRIMARY', '2020-01-01', "
            "false, now(), now() FROM ip_assets a, generate_series(0, 1) k, (SELECT min(id) FROM creators) c",
            [creators],
        )
        # Created uniformly over three months around the reported one; 70 % in force.
        cursor.execute(
            "INSERT INTO licenses (status, auto_renew, brand_id, ip_asset_id, license_type, start_date, end_date, "
            "fee_cents, rev_share_bps, scope_json, metadata, created_at, updated_at, grace_period_days, "
            "usage_tracking_enabled, total_usage_events) "
            "SELECT CASE WHEN g %% 10 < 7 THEN 'ACTIVE' ELSE 'EXPIRED' END, false, (SELECT min(id) FROM brands), "
            "a.min + g %% %s, 'NON_EXCLUSIVE', '2020-01-01', '2030-01-01', 1000, 0, '{}', '{}', "
            "%s::timestamptz - interval '1 month' + (g::float / %s) * interval '90 days', now(), 7, true, 0 "
            "FROM generate_series(1, %s) g, (SELECT min(id) FROM ip_assets) a",
            [assets, start, rows, rows],
        )
        cursor.execute(
            "INSERT INTO events (occurred_at, source, event_type, creator_id, props_json, created_at) "
            "SELECT %s::timestamptz - interval '1 month' + (g::float / %s) * interval '90 days', 'web', "
            "CASE WHEN g %% 5 = 0 THEN 'asset_viewed' ELSE 'creator_profile_viewed' END, "
            "c.min + (g::bigint * 7919) %% %s, '{}', now() "
            "FROM generate_series(1, %s) g, (SELECT min(id) FROM creators) c",
            [start, rows, creators, rows],
        )
        # The previous month's run, locked in the month reported on: the report counts it.
        cursor.execute(
            "INSERT INTO royalty_runs (period_start, period_end, status, total_revenue_cents, "
            "total_royalties_cents, created_by_id, locked_at, created_at, updated_at) VALUES ("
            "%s::timestamptz - interval '1 month', %s::timestamptz - interval '1 microsecond', 'LOCKED', 0, 0, "
            "(SELECT min(id) FROM users), %s::timestamptz + interval '3 days', now(), now()) RETURNING id",
            [start, start, start],
        )
        run_id = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO royalty_statements (royalty_run_id, creator_id, total_earnings_cents, platform_fee_cents, "
            "net_payable_cents, status, metadata, created_at, updated_at) "
            "SELECT %s, id, 1000 + id %% 5000, 0, 0, 'PENDING', '{\"carriedCents\": 0}', now(), now() "
            "FROM creators",
            [run_id],
        )
        cursor.execute("ANALYZE")


def report(month: str) -> None:
    """Child process: run the job for `month`; print seconds, queries and emails as JSON."""
    setup_django(
        DATABASE_URL=sys.argv[sys.argv.index("--db") + 1], EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"
    )
    from django.conf import settings
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from yesgoddess.creators.reports import monthly_reports

    began = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        result = monthly_reports(month)
    seconds = time.perf_counter() - began
    # The figures (one INSERT for all creators) and the earnings (one INSERT, one UPDATE).
    figure_sql = (
        "INSERT INTO creator_monthly_reports",
        "INSERT INTO creator_report_earnings",
        "UPDATE creator_monthly_reports rep SET earnings_cents",
    )
    figures = [q for q in queries if q["sql"].lstrip().startswith(figure_sql)]
    figure_seconds = sum(float(q["time"]) for q in figures)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "queries": len(queries),
                "figure_queries": len(figures),
                "figure_seconds": figure_seconds,
                "emails": len(mail.outbox),
                "batch": settings.EMAIL_BATCH_SIZE,
                "result": result,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creators", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--report")
    parser.add_argument("--db")
    options = parser.parse_args()
    if options.report:
        report(options.report)
        return
    db_url = _common.prepare_bench_db()
    setup_django(DATABASE_URL=db_url)
    month = report_month()
    print(
        f"creator-monthly-report for {month:%B %Y}: {options.creators} creators, {options.rows} licenses and "
        f"{options.rows} events (80 % profile views) over three months, emails to locmem"
    )
    for scale in (10, 1):
        creators, rows = options.creators // scale, options.rows // scale
        began = time.perf_counter()
        build(creators, rows, month)
        built = time.perf_counter() - began
        child = subprocess.run(
            [PYTHON, __file__, "--report", f"{month:%Y-%m}", "--db", db_url],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        result = figures["result"]
        print(
            f"  {creators:>6} creators, {rows:>7} licenses + events (built in {built:.0f} s): "
            f"{figures['seconds']:.2f} s, {figures['emails']} emails; figures: {figures['figure_queries']} "
            f"queries ({figures['figure_seconds']:.2f} s); all queries: {figures['queries']} "
            f"(batches of {figures['batch']}); sent {result['sent']}"
        )
    print("goal: under 30 s for 10,000 creators; figure queries constant (not one per creator)")


if __name__ == "__main__":
    main()
