"""royalty-calculation over 10,000 licenses, 3,000 creators and 1,000,000 usage aggregate
rows: wall time, number of queries (constant, not one per license) and peak memory of
the process that calculates. Usage: python bench/royalty_run.py [--licenses 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import PYTHON, ROOT, child_env, prepare_bench_db, setup_django


def build(licenses: int, creators: int, aggregates: int) -> int:
    from django.db import connection

    days = max(aggregates // licenses, 1)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE royalty_lines, royalty_statements, royalty_runs, license_usage_daily_aggregates, licenses, "
            "ip_ownerships, ip_assets, creators, brands, users CASCADE"
        )
        cursor.execute(
            "INSERT INTO users (password, is_superuser, username, first_name, last_name, email, is_staff, "
            "is_active, date_joined, role, lock_reason) SELECT '!', false, 'u' || g, '', '', "
            "'u' || g || '@example.com', g = 1, true, now(), 'CREATOR', '' FROM generate_series(1, %s) g",
            [creators + 1],
        )
        cursor.execute("INSERT INTO brands (user_id, name, created_at) SELECT min(id), 'Brand', now() FROM users")
        cursor.execute(
            "INSERT INTO creators (user_id, display_name, created_at, vip_status) "
            "SELECT id, 'Creator ' || id, now(), id %% 50 = 0 FROM users WHERE id > (SELECT min(id) FROM users)",
            [],
        )
        cursor.execute(
            "INSERT INTO ip_assets (title, type, storage_key, original_filename, file_size, mime_type, "
            "declared_mime_type, version, metadata, status, scan_status, created_by_id, created_at, updated_at) "
            "SELECT 'Asset ' || g, 'IMAGE', 'bench/' || g, '', 1, 'image/jpeg', '', 1, '{}', 'PUBLISHED', "
            "'CLEAN', (SELECT min(id) FROM users), now(), now() FROM generate_series(1, %s) g",
            [licenses],
        )
        # Three owners per asset: 3,334 / 3,333 / 3,333 bps (remainders on every split).
        cursor.execute(
            "INSERT INTO ip_ownerships (ip_asset_id, creator_id, share_bps, ownership_type, start_date, disputed, "
            "created_at, updated_at) SELECT a.id, c.min + (a.id * 3 + k) %% %s, "
            "CASE WHEN k = 0 THEN 3334 ELSE 3333 END, 'PRIMARY', '2020-01-01', false, now(), now() "
            "FROM ip_assets a, generate_series(0, 2) k, (SELECT min(id) FROM creators) c",
            [creators],
        )
        cursor.execute(
            "INSERT INTO licenses (status, auto_renew, brand_id, ip_asset_id, license_type, start_date, end_date, "
            "fee_cents, rev_share_bps, scope_json, metadata, created_at, updated_at, grace_period_days, "
            "usage_tracking_enabled, total_usage_events) "
            "SELECT 'ACTIVE', false, (SELECT min(id) FROM brands), a.id, 'NON_EXCLUSIVE', "
            "'2025-12-01'::timestamptz + (a.id %% 60) * interval '1 day', '2026-06-30', 100000 + a.id, "
            "(a.id %% 5) * 1000, '{}', '{}', now(), now(), 7, true, 0 FROM ip_assets a",
            [],
        )
        cursor.execute(
            "INSERT INTO license_usage_daily_aggregates (license_id, date, total_views, total_downloads, "
            "total_impressions, total_clicks, total_plays, total_streams, total_quantity, total_revenue_cents, "
            "unique_sessions, metadata, created_at, updated_at) "
            "SELECT l.id, '2026-01-01'::date + d, 0, 0, 0, 0, 0, 0, 10, 37 + (l.id + d) %% 91, 0, '{}', now(), now() "
            "FROM licenses l, generate_series(0, %s) d",
            [days - 1],
        )
        cursor.execute("ANALYZE")
        cursor.execute(
            "INSERT INTO royalty_runs (period_start, period_end, status, total_revenue_cents, total_royalties_cents, "
            "created_by_id, created_at, updated_at) VALUES ('2026-01-01', '2026-03-31 23:59:59.999999', 'DRAFT', 0, "
            "0, (SELECT min(id) FROM users), now(), now()) RETURNING id"
        )
        return cursor.fetchone()[0]


def calculate(run_id: int) -> None:
    """Child process: calculate and print seconds, queries and peak RSS as JSON."""
    setup_django(DATABASE_URL=sys.argv[sys.argv.index("--db") + 1])
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.handlers.royalties import calculate_royalties

    began = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        result = calculate_royalties(run_id=run_id)
    seconds = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "queries": len(queries), "peak_mb": peak_mb, "result": result}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--licenses", type=int, default=10_000)
    parser.add_argument("--creators", type=int, default=3_000)
    parser.add_argument("--aggregates", type=int, default=1_000_000)
    parser.add_argument("--calculate", type=int)
    parser.add_argument("--db")
    options = parser.parse_args()
    if options.calculate:
        calculate(options.calculate)
        return
    db_url = prepare_bench_db()
    setup_django(DATABASE_URL=db_url)
    print(
        f"royalty-calculation: {options.licenses} licenses, {options.creators} creators, "
        f"{options.aggregates} usage aggregate rows, a 90-day period"
    )
    for licenses in (options.licenses // 10, options.licenses):
        run_id = build(licenses, options.creators, options.aggregates * licenses // options.licenses)
        child = subprocess.run(
            [PYTHON, __file__, "--calculate", str(run_id), "--db", db_url],
            cwd=ROOT,
            env=child_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        result = figures["result"]
        print(
            f"  {licenses:>6} licenses: {figures['seconds']:.2f} s, {figures['queries']} queries, "
            f"peak RSS {figures['peak_mb']:.0f} MB; {result['statements']} statements, "
            f"revenue {result['revenue_cents']} cents = royalties {result['royalties_cents']} cents"
        )
    print("goal: under 60 s, constant queries, under 500 MB")


if __name__ == "__main__":
    main()
