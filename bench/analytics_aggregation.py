"""Daily metrics: `analytics-jobs.daily-metrics` against one hand-written
`INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE` and against a Python loop over
the rows, on the same events, in the same run, from the same starting state.

1,000,000 events in one UTC day over 10,000 assets (70 % in one of 1,000 projects, half
of the events of licensed assets with the license), generated in SQL: views, downloads,
license clicks and conversions; 80 % by one of 100,000 actors, 15 % anonymous with one
of 50,000 sessions, 5 % neither; revenue on conversions, engagement time on half.

- baseline: the statement a person would write for the same figures (same visitor rule,
  no guards against non-numeric props, no stale-row deletion, no log row), run in a
  transaction with the same `work_mem` as the job; also shown at the server default.
- job: `jobs.handlers.analytics.aggregate_daily_metrics(date=...)` through the runtime wrapper:
  the statement with its guards, stale-row deletion and unchanged-row skip, the log row
  and the cache invalidation.
- Python loop: `.values_list(...).iterator()` over the day's events, figures in dicts,
  one `bulk_create(update_conflicts=True)`.
Before each timed run: daily_metrics truncated, VACUUM ANALYZE, CHECKPOINT. All three
must produce the same rows (checksum). A last column times the job's re-run (every row
already right: nothing written).

Its own database (`yesgoddess_bench_analytics`): it truncates the events table.
Usage: python bench/analytics_aggregation.py [--events 1000000] [--rounds 3] [--python-rounds 1] [--refill]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, date, datetime, timedelta

from _common import median, prepare_bench_db, setup_django

BENCH_DB = "yesgoddess_bench_analytics"
DAY = date(2025, 3, 10)
ASSETS = 10_000
PROJECTS = 1_000
ACTORS = 100_000
SESSIONS = 50_000

BASELINE = """
INSERT INTO daily_metrics (date, project_id, ip_asset_id, license_id, views, clicks, conversions, revenue_cents,
  unique_visitors, engagement_time, created_at, updated_at)
SELECT %(day)s, project_id, ip_asset_id, license_id,
  count(*) FILTER (WHERE event_type = 'asset_viewed'),
  count(*) FILTER (WHERE event_type IN ('asset_downloaded', 'license_clicked')),
  count(*) FILTER (WHERE event_type = 'license_created'),
  COALESCE(sum((props_json ->> 'revenueCents')::bigint), 0),
  count(DISTINCT COALESCE('a:' || actor_id, 's:' || session_id)),
  COALESCE(sum((props_json ->> 'engagementTime')::int), 0),
  now(), now()
FROM events
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s AND ip_asset_id IS NOT NULL
GROUP BY project_id, ip_asset_id, license_id
ON CONFLICT ON CONSTRAINT daily_metric_key DO UPDATE SET views = EXCLUDED.views, clicks = EXCLUDED.clicks,
  conversions = EXCLUDED.conversions, revenue_cents = EXCLUDED.revenue_cents,
  unique_visitors = EXCLUDED.unique_visitors, engagement_time = EXCLUDED.engagement_time,
  updated_at = EXCLUDED.updated_at
"""


def window() -> dict:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    return {"day": DAY, "start": start, "end": start + timedelta(days=1)}


def fill(cursor, events: int) -> None:
    from django.contrib.auth import get_user_model

    from yesgoddess.assets.models import IpAsset
    from yesgoddess.brands.models import Brand
    from yesgoddess.licensing.models import License
    from yesgoddess.projects.models import Project

    cursor.execute("TRUNCATE events, daily_metrics, licenses, ip_assets, projects CASCADE")
    user, _ = get_user_model().objects.get_or_create(username="bench-analytics")
    brand, _ = Brand.objects.get_or_create(user=user, name="Bench")
    projects = Project.objects.bulk_create(Project(brand=brand, name=f"P{n}") for n in range(PROJECTS))
    assets = IpAsset.objects.bulk_create(
        IpAsset(
            title=f"A{n}",
            type="IMAGE",
            storage_key=f"bench/analytics/{n}",
            file_size=1,
            mime_type="image/jpeg",
            created_by=user,
            project=projects[n % PROJECTS] if n % 10 < 7 else None,
        )
        for n in range(ASSETS)
    )
    start = datetime(2025, 1, 1, tzinfo=UTC)
    licenses = License.objects.bulk_create(
        License(
            brand=brand,
            ip_asset=asset,
            project=asset.project,
            start_date=start,
            end_date=start + timedelta(days=365),
            status="ACTIVE",
        )
        for asset in assets[::2]
    )
    licensed = {lic.ip_asset_id: lic.pk for lic in licenses}
    cursor.execute(
        "CREATE TEMP TABLE bench_assets (idx int PRIMARY KEY, asset_id bigint, project_id bigint, lic bigint)"
    )
    cursor.execute(
        "INSERT INTO bench_assets SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bigint[], %s::bigint[])",
        [
            list(range(ASSETS)),
            [a.pk for a in assets],
            [a.project_id for a in assets],
            [licensed.get(a.pk) for a in assets],
        ],
    )
    cursor.execute("SELECT setseed(0.42)")
    cursor.execute(
        """
        INSERT INTO events (occurred_at, source, event_type, actor_type, actor_id, project_id, ip_asset_id,
          license_id, props_json, session_id, created_at, enrich_pending)
        SELECT %(start)s + g.r1 * interval '1 day',
          'bench', t.event_type,
          CASE WHEN g.r2 < 0.8 THEN 'user' END,
          CASE WHEN g.r2 < 0.8 THEN 'u' || floor(g.r3 * %(actors)s)::int END,
          a.project_id, a.asset_id,
          CASE WHEN a.lic IS NOT NULL AND g.r4 < 0.5 THEN a.lic END,
          CASE WHEN t.event_type = 'license_created'
                 THEN jsonb_build_object('revenueCents', 100 + floor(g.r3 * 900)::int)
               WHEN g.r4 < 0.5 THEN jsonb_build_object('engagementTime', floor(g.r5 * 300)::int)
               ELSE '{}'::jsonb END,
          CASE WHEN g.r2 >= 0.8 AND g.r2 < 0.95 THEN 's' || floor(g.r5 * %(sessions)s)::int END,
          now(), false
        FROM (
          SELECT floor(random() * %(assets)s)::int AS idx, random() AS r1, random() AS r2, random() AS r3,
            random() AS r4, random() AS r5, random() AS r6
          FROM generate_series(1, %(events)s)
        ) g
        JOIN bench_assets a ON a.idx = g.idx
        CROSS JOIN LATERAL (
          SELECT CASE WHEN g.r6 < 0.7 THEN 'asset_viewed' WHEN g.r6 < 0.85 THEN 'asset_downloaded'
                      WHEN g.r6 < 0.95 THEN 'license_clicked' ELSE 'license_created' END AS event_type
        ) t
        """,
        {**window(), "actors": ACTORS, "sessions": SESSIONS, "assets": ASSETS, "events": events},
    )
    cursor.execute("DROP TABLE bench_assets")


# The job closes the connection when it ends (the runtime wrapper): a cursor per step.


def reset(keep_rows: bool = False) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if not keep_rows:
            cursor.execute("TRUNCATE daily_metrics")
        cursor.execute("VACUUM ANALYZE events, daily_metrics")
        cursor.execute("CHECKPOINT")


def checksum() -> tuple:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(views), sum(clicks), sum(conversions), sum(revenue_cents), sum(unique_visitors), "
            "sum(engagement_time) FROM daily_metrics WHERE date = %s",
            [DAY],
        )
        return cursor.fetchone()


def baseline(work_mem: str | None) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        if work_mem:
            cursor.execute(f"SET LOCAL work_mem = '{work_mem}'")
        cursor.execute(BASELINE, window())


def python_loop(instances: bool) -> None:
    """The figures in Python from the rows (model instances, as the original and most ORM
    code would; or tuples from values_list), then one upsert."""
    from yesgoddess.analytics.models import DailyMetric, Event

    w = window()
    columns = ("project_id", "ip_asset_id", "license_id", "event_type", "actor_id", "session_id", "props_json")
    events = Event.objects.filter(occurred_at__gte=w["start"], occurred_at__lt=w["end"], ip_asset__isnull=False)
    if instances:
        rows = ((getattr(e, c) for c in columns) for e in events.only(*columns).iterator(chunk_size=5000))
    else:
        rows = events.values_list(*columns).iterator(chunk_size=20_000)
    groups: dict[tuple, list] = {}
    for project_id, asset_id, license_id, event_type, actor_id, session_id, props in rows:
        group = groups.get((project_id, asset_id, license_id))
        if group is None:
            group = groups[(project_id, asset_id, license_id)] = [0, 0, 0, 0, set(), 0]
        if event_type == "asset_viewed":
            group[0] += 1
        elif event_type in ("asset_downloaded", "license_clicked"):
            group[1] += 1
        elif event_type == "license_created":
            group[2] += 1
        revenue = props.get("revenueCents")
        if isinstance(revenue, int):
            group[3] += revenue
        visitor = f"a:{actor_id}" if actor_id is not None else (f"s:{session_id}" if session_id else None)
        if visitor is not None:
            group[4].add(visitor)
        engagement = props.get("engagementTime")
        if isinstance(engagement, int):
            group[5] += engagement
    DailyMetric.objects.bulk_create(
        [
            DailyMetric(
                date=DAY,
                project_id=project_id,
                ip_asset_id=asset_id,
                license_id=license_id,
                views=g[0],
                clicks=g[1],
                conversions=g[2],
                revenue_cents=g[3],
                unique_visitors=len(g[4]),
                engagement_time=g[5],
            )
            for (project_id, asset_id, license_id), g in groups.items()
        ],
        batch_size=5000,
        update_conflicts=True,
        unique_fields=["date", "project", "ip_asset", "license"],
        update_fields=["views", "clicks", "conversions", "revenue_cents", "unique_visitors", "engagement_time"],
    )


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python-rounds", type=int, default=1)
    parser.add_argument("--refill", action="store_true", help="make the events again even if they are there")
    options = parser.parse_args()
    setup_django(DATABASE_URL=prepare_bench_db(BENCH_DB))
    from django.db import connection

    from jobs.runtime import execute

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM events WHERE source = 'bench'")
        if cursor.fetchone()[0] == options.events and not options.refill:
            print(f"reusing the {options.events:,} events already filled (--refill to make them again)")
        else:
            began = time.perf_counter()
            fill(cursor, options.events)
            seconds = time.perf_counter() - began
            print(f"filled {options.events:,} events of {DAY} over {ASSETS:,} assets in {seconds:.1f} s")

    results: dict[str, list[float]] = {"baseline": [], "baseline default work_mem": [], "job": [], "job re-run": []}
    python_times: dict[str, list[float]] = {"instances": [], "tuples": []}
    sums = set()
    job_result = {}
    for round_no in range(options.rounds):
        reset()
        results["baseline"].append(timed(lambda: baseline("64MB")))
        sums.add(checksum())
        reset()
        results["baseline default work_mem"].append(timed(lambda: baseline(None)))
        reset()

        def job() -> None:
            nonlocal job_result
            job_result = execute("analytics-jobs.daily-metrics", date=DAY.isoformat())

        results["job"].append(timed(job))
        sums.add(checksum())
        reset(keep_rows=True)
        results["job re-run"].append(timed(job))
        assert job_result["created"] == job_result["updated"] == job_result["deleted"] == 0, job_result
        if round_no < options.python_rounds:
            for kind in python_times:
                reset()
                python_times[kind].append(timed(lambda kind=kind: python_loop(kind == "instances")))
                sums.add(checksum())
    assert len(sums) == 1, f"the methods disagree: {sums}"
    groups = next(iter(sums))[0]
    base, ours = median(results["baseline"]), median(results["job"])
    loop, tuples = median(python_times["instances"]), median(python_times["tuples"])
    rounds = len(python_times["instances"])
    print(f"daily metrics of {options.events:,} events -> {groups:,} rows; median of {options.rounds} rounds, seconds")
    print(f"  hand-written INSERT ... ON CONFLICT (work_mem 64MB):  {base:6.2f}")
    print(f"  hand-written, server default work_mem:               {median(results['baseline default work_mem']):6.2f}")
    print(f"  job (analytics-jobs.daily-metrics):                  {ours:6.2f}  ratio {ours / base:.2f}x")
    print(f"  job re-run (nothing changed, nothing written):       {median(results['job re-run']):6.2f}")
    for label, seconds in (
        (f"Python loop over Event rows, .iterator() ({rounds} round):", loop),
        (f"Python loop over values_list tuples ({rounds} round):", tuples),
    ):
        print(f"  {label:52} {seconds:6.2f}  job is {seconds / ours:.1f}x faster")
    print("goals: job <= 1.2x the hand-written statement; >= 10x faster than the Python loop")


if __name__ == "__main__":
    main()
