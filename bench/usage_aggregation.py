"""Usage aggregation: `aggregate_usage()` (license-usage-tracking.aggregate) against one
hand-written `INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE` over the same
events, measured in the same run from the same starting state.

1,000,000 usage events over 10,000 licenses, spread over yesterday and today (the
job's window), generated in SQL. Two scenarios:

- first run: no aggregates yet; both write every (license, day) row. The job also moves
  the 10,000 licenses' `total_usage_events` / `last_usage_at`, which the baseline does not.
- hourly re-run: the aggregates of a previous run are there and 1 % new events arrived;
  the baseline rewrites every row, the job only the rows whose figures changed.

Before each timed run: aggregates reset to the scenario's state, license counters reset,
VACUUM ANALYZE and CHECKPOINT. The job runs in this process on the same connection as
the baseline (Django's), so both pay the same client costs. Its own database
(`yesgoddess_bench_usage`): it truncates the license tables.
Usage: python bench/usage_aggregation.py [--events 1000000] [--licenses 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from _common import PYTHON, ROOT, child_env, median, setup_django

BENCH_DB = "yesgoddess_bench_usage"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"
TYPES = "ARRAY['view','download','impression','click','play','stream','custom']"


def ensure_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=child_env(DATABASE_URL=DB_URL), check=True
    )


def baseline_sql() -> str:
    from yesgoddess.licensing.usage import TYPE_COLUMNS

    columns = [*TYPE_COLUMNS.values(), "total_quantity", "total_revenue_cents", "unique_sessions"]
    sums = ", ".join(f"COALESCE(SUM(quantity) FILTER (WHERE usage_type = '{t}'), 0)" for t in TYPE_COLUMNS)
    return f"""
    INSERT INTO license_usage_daily_aggregates
      (license_id, date, {", ".join(columns)}, metadata, created_at, updated_at)
    SELECT license_id, (occurred_at AT TIME ZONE 'UTC')::date, {sums},
      SUM(quantity), SUM(revenue_cents), COUNT(DISTINCT session_id), '{{}}', now(), now()
    FROM license_usage_events
    WHERE occurred_at >= %s AND occurred_at < %s
    GROUP BY 1, 2
    ON CONFLICT (license_id, date) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in columns)},
      updated_at = EXCLUDED.updated_at
    """


def fill(cursor, licenses: int, events: int) -> None:
    from django.contrib.auth import get_user_model

    from yesgoddess.assets.models import IpAsset
    from yesgoddess.brands.models import Brand

    cursor.execute("TRUNCATE licenses, license_usage_events, license_usage_daily_aggregates CASCADE")
    user, _ = get_user_model().objects.get_or_create(username="bench-usage")
    brand, _ = Brand.objects.get_or_create(user=user, name="Bench")
    fields = {"title": "Bench", "type": "IMAGE", "file_size": 1, "mime_type": "image/jpeg", "created_by": user}
    asset, _ = IpAsset.objects.get_or_create(storage_key="bench/usage", defaults=fields)
    cursor.execute(
        "INSERT INTO licenses (status, auto_renew, license_type, start_date, end_date, fee_cents, rev_share_bps, "
        "scope_json, metadata, created_at, updated_at, grace_period_days, usage_tracking_enabled, "
        "total_usage_events, brand_id, ip_asset_id) "
        "SELECT 'ACTIVE', false, 'NON_EXCLUSIVE', now() - interval '200 days', now() + interval '165 days', 0, 0, "
        "'{}', '{}', now(), now(), 7, true, 0, %s, %s FROM generate_series(1, %s)",
        [brand.pk, asset.pk, licenses],
    )
    add_events(cursor, events, extra=False)


def add_events(cursor, count: int, extra: bool) -> None:
    """`count` events spread from the start of yesterday (UTC) to a minute ago: random
    license, type, quantity 1-5, revenue, session out of 200,000 (10 % without one)."""
    cursor.execute("SELECT setseed(%s)", [0.25 if extra else 0.5])
    cursor.execute(
        f"""
        WITH bounds AS (
          SELECT min(id) AS first_id, count(*) AS n,
            date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 day' AS start
          FROM licenses
        )
        INSERT INTO license_usage_events
          (license_id, occurred_at, usage_type, quantity, revenue_cents, metadata, created_at, session_id, referrer)
        SELECT b.first_id + floor(random() * b.n)::bigint,
          b.start + random() * (now() - interval '1 minute' - b.start),
          ({TYPES})[1 + floor(random() * 7)::int],
          1 + floor(random() * 5)::int,
          (floor(random() * 3) * 25)::bigint,
          '{{}}', now(),
          CASE WHEN random() < 0.1 THEN NULL ELSE 's' || floor(random() * 200000)::int END,
          %s
        FROM bounds b, generate_series(1, %s)
        """,
        ["extra" if extra else None, count],
    )


def reset(cursor, scenario: str, extra_events: int) -> None:
    """Bring the database to the scenario's starting state."""
    from jobs.handlers.license_usage import aggregate_usage

    cursor.execute("DELETE FROM license_usage_events WHERE referrer = 'extra'")
    cursor.execute("TRUNCATE license_usage_daily_aggregates")
    cursor.execute("UPDATE licenses SET total_usage_events = 0, last_usage_at = NULL")
    if scenario == "hourly re-run":
        aggregate_usage()  # the previous run
        add_events(cursor, extra_events, extra=True)
    cursor.execute("VACUUM ANALYZE licenses, license_usage_events, license_usage_daily_aggregates")
    cursor.execute("CHECKPOINT")


def checksum(cursor) -> tuple:
    cursor.execute(
        "SELECT count(*), sum(total_quantity), sum(total_views), sum(total_revenue_cents), sum(unique_sessions) "
        "FROM license_usage_daily_aggregates"
    )
    return cursor.fetchone()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--licenses", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    ensure_database()
    setup_django(DATABASE_URL=DB_URL)
    from django.db import connection
    from django.utils import timezone

    from jobs.handlers.license_usage import aggregate_usage
    from yesgoddess.licensing.usage import aggregation_window, day_start

    with connection.cursor() as cursor:
        began = time.perf_counter()
        fill(cursor, options.licenses, options.events)
        seconds = time.perf_counter() - began
        print(f"filled {options.events:,} events over {options.licenses:,} licenses in {seconds:.1f} s")
    first_day, end_day = aggregation_window(timezone.now())
    window = [day_start(first_day), day_start(end_day)]
    sql = baseline_sql()
    extra = options.events // 100

    print("usage aggregation: aggregate_usage() vs one hand-written INSERT ... ON CONFLICT (same data, same run)")
    print(f"{'scenario':16} {'rows':>7} {'baseline s':>10} {'job s':>7} {'ratio':>6}  job result")
    for scenario in ("first run", "hourly re-run"):
        base, ours = [], []
        result: dict = {}
        sums = set()
        for _ in range(options.rounds):
            with connection.cursor() as cursor:
                reset(cursor, scenario, extra)
                began = time.perf_counter()
                cursor.execute(sql, window)
                base.append(time.perf_counter() - began)
                sums.add(checksum(cursor))
                reset(cursor, scenario, extra)
                began = time.perf_counter()
                result = aggregate_usage()
                ours.append(time.perf_counter() - began)
                sums.add(checksum(cursor))
        assert len(sums) == 1, f"the job and the baseline disagree: {sums}"
        rows = next(iter(sums))[0]
        print(
            f"{scenario:16} {rows:7d} {median(base):10.2f} {median(ours):7.2f} "
            f"{median(ours) / median(base):5.2f}x  {result}"
        )
    print("goal: ratio <= 1.3x")


if __name__ == "__main__":
    main()
