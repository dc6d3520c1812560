"""On-change search updates (issue 11): 100,000 asset updates indexed through the
batched flush (`search-index-update`, SEARCH_UPDATE_BATCH objects per job, one UPDATE
per type) against one job per update (`search-index-update.item`), both run by the
same two worker processes (DjangoSimpleWorker, the production class) in the same run.

For each path: the vectors of the 100,000 assets are reset to NULL (so every update
really writes), the updates are produced with workers stopped (one mark per update,
as 100,000 saves would: `mark_for_reindex`; or one `enqueue()` per update), then two
workers start and drain them. Figures: the producer's rate, and rows indexed per second
from the first job's start to the last job's end (so worker start-up is not counted).
The data of search_rebuild.py (same database).
Usage: python bench/search_updates.py [--updates 100000] [--per-item 100000] [--batch 1000] [--conn-max-age 0]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from datetime import datetime

from _common import PYTHON, ROOT, child_env, prepare_bench_db, setup_django
from search_rebuild import BENCH_DB, ensure_assets, settle

WORKER = "jobs.rq_classes.DjangoSimpleWorker"


def start_workers(db_url: str, batch: int, conn_max_age: int, processes: int = 2) -> list[subprocess.Popen]:
    env = child_env(
        DATABASE_URL=db_url,
        LOG_LEVEL="WARNING",
        SEARCH_FLUSH_DELAY_SECONDS="0",
        SEARCH_UPDATE_BATCH=str(batch),
        DB_CONN_MAX_AGE=str(conn_max_age),
    )
    args = [PYTHON, "manage.py", "rqworker", "--worker-class", WORKER, "default"]
    return [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()  # warm shutdown: finishes the job in hand
    for proc in procs:
        proc.wait(timeout=120)


def wait_drained(ids_sql_bound: int, timeout: float) -> None:
    from django.db import connection

    from jobs.api import get_queue
    from yesgoddess.search import pending

    queue = get_queue("default")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if queue.count or queue.started_job_registry.count or pending.status().total:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM ip_assets WHERE id <= %s AND search_vector IS NULL AND deleted_at IS NULL",
                [ids_sql_bound],
            )
            if cursor.fetchone()[0] == 0:
                return
    raise SystemExit("timed out waiting for the workers")


def job_window(job_name: str) -> tuple[float, int]:
    """Seconds from the first start to the last end of finished jobs named `job_name`."""
    from jobs.api import get_queue, redis_connection

    conn = redis_connection()
    ids = get_queue("default").finished_job_registry.get_job_ids()
    starts, ends, count = [], [], 0
    for offset in range(0, len(ids), 2000):
        with conn.pipeline(transaction=False) as pipe:
            for job_id in ids[offset : offset + 2000]:
                pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at", "description")
            for started, ended, description in pipe.execute():
                if started and ended and description and description.decode().split(" ")[0] == job_name:
                    starts.append(datetime.fromisoformat(started.decode().rstrip("Z")))
                    ends.append(datetime.fromisoformat(ended.decode().rstrip("Z")))
                    count += 1
    return (max(ends) - min(starts)).total_seconds(), count


def reset(first_id: int, last_id: int) -> None:
    from django.db import connection

    from yesgoddess.core.redis import redis_connection

    redis_connection().flushdb()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ip_assets SET search_vector = NULL WHERE id BETWEEN %s AND %s", [first_id, last_id])
    settle()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=200_000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--per-item", type=int, default=100_000, help="updates for the one-job-per-update run")
    parser.add_argument("--batch", type=int, default=1000, help="SEARCH_UPDATE_BATCH of the workers")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="DB_CONN_MAX_AGE of the workers (0, the default: a new connection per job)",
    )
    options = parser.parse_args()
    db_url = prepare_bench_db(BENCH_DB)
    os.environ["SEARCH_FLUSH_DELAY_SECONDS"] = "0"
    setup_django(DATABASE_URL=db_url)
    from django.db import connection

    from jobs.api import enqueue
    from yesgoddess.search import pending
    from yesgoddess.search.services import mark_for_reindex

    ensure_assets(options.assets)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM ip_assets WHERE storage_key LIKE 'bench/search/%%' ORDER BY id")
        all_ids = [row[0] for row in cursor.fetchall()]
    print(
        f"search updates: two {WORKER.rsplit('.', 1)[1]} processes, batch {options.batch}, "
        f"DB_CONN_MAX_AGE={options.conn_max_age}"
    )
    print(f"{'path':22} {'updates':>8} {'produce/s':>10} {'jobs':>7} {'worker s':>9} {'rows/s':>8}")
    results = {}
    for path, n in (("flush (batched)", options.updates), ("one job per update", options.per_item)):
        ids = all_ids[:n]
        reset(ids[0], ids[-1])
        began = time.perf_counter()
        if path.startswith("flush"):
            for pk in ids:
                mark_for_reindex("asset", [pk])
            enqueue("search-index-update")  # a second flush, so both workers start at once
        else:
            for pk in ids:
                enqueue("search-index-update.item", object_type="asset", object_id=pk)
        produce_rate = n / (time.perf_counter() - began)
        assert path.startswith("one") or pending.status().total == n
        workers = start_workers(db_url, options.batch, options.conn_max_age)
        try:
            wait_drained(ids[-1], timeout=3600)
        finally:
            stop_workers(workers)
        name = "search-index-update" if path.startswith("flush") else "search-index-update.item"
        seconds, jobs = job_window(name)
        results[path] = n / seconds
        print(f"{path:22} {n:8d} {produce_rate:10.0f} {jobs:7d} {seconds:8.1f}s {n / seconds:8.0f}")
    flush, per_item = results["flush (batched)"], results["one job per update"]
    print(f"flush / one-job-per-update: {flush / per_item:.1f}x")
    print("goal: >= 10x the one-job-per-update figure")


if __name__ == "__main__":
    main()
