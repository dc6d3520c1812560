"""Job overhead: no-op jobs through our enqueue() + runtime wrapper + worker classes,
against bare RQ running a bare function, in the same run, on the same Redis.

For each worker set-up (forking Worker, SimpleWorker, two SimpleWorker processes) it
enqueues N jobs, runs burst workers until the queue is empty, and computes jobs/s from
the first job's start to the last job's end (so process start-up is not counted).
A middle column runs the bare function in our Django worker process without the
wrapper, which separates what the wrapper costs from what a Django-sized process
costs (a fork copies, and an exit tears down, a bigger process).
Usage: python bench/job_overhead.py [--jobs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _common import BENCH_REDIS_URL, PYTHON, ROOT, child_env, median, setup_django

setup_django()

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402

from jobs.api import enqueue, get_queue  # noqa: E402
from jobs.rq_classes import JSONJob  # noqa: E402

BARE_QUEUE = "bench-bare"
OURS_QUEUE = "default"
SETUPS = {
    # name: (our worker class, bare worker class, processes)
    "forking": ("jobs.rq_classes.DjangoWorker", "rq.Worker", 1),
    "simple": ("jobs.rq_classes.DjangoSimpleWorker", "rq.SimpleWorker", 1),
    "2x simple": ("jobs.rq_classes.DjangoSimpleWorker", "rq.SimpleWorker", 2),
}


def enqueue_bare(conn: Redis, n: int) -> tuple[list[str], float]:
    queue = Queue(BARE_QUEUE, connection=conn)
    began = time.perf_counter()
    ids = [queue.enqueue("noop.noop", result_ttl=600).id for _ in range(n)]
    return ids, time.perf_counter() - began


def enqueue_ours(n: int) -> tuple[list[str], float]:
    began = time.perf_counter()
    ids = [enqueue("ping") for _ in range(n)]
    return ids, time.perf_counter() - began


def run_workers(args: list[str], processes: int, env: dict[str, str]) -> None:
    procs = [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    for proc in procs:
        if proc.wait(timeout=900) != 0:
            raise SystemExit(f"worker failed: {' '.join(args)}")


def throughput(conn: Redis, ids: list[str], job_class: type[Job], serializer: object) -> float:
    jobs = (
        Job.fetch_many(ids, connection=conn, serializer=serializer)
        if job_class is Job
        else [JSONJob.fetch(i, connection=conn) for i in ids]
    )
    assert all(j is not None and j.get_status() == "finished" for j in jobs), "not every job finished"
    first = min(j.started_at for j in jobs)
    last = max(j.ended_at for j in jobs)
    return len(jobs) / (last - first).total_seconds()


def measure_bare(conn: Redis, n: int, worker_class: str, processes: int) -> tuple[float, float]:
    ids, enqueue_s = enqueue_bare(conn, n)
    args = [
        PYTHON,
        "-m",
        "rq.cli",
        "worker",
        "--burst",
        "--url",
        BENCH_REDIS_URL,
        "-w",
        worker_class,
        "--path",
        str(ROOT / "bench"),
        BARE_QUEUE,
    ]
    run_workers(args, processes, child_env())
    return throughput(conn, ids, Job, None), n / enqueue_s


def measure_django_bare(conn: Redis, n: int, worker_class: str, processes: int) -> float:
    queue = Queue(OURS_QUEUE, connection=conn, serializer=JSONSerializer)
    ids = [queue.enqueue("noop.noop", result_ttl=600).id for _ in range(n)]
    args = [PYTHON, "manage.py", "rqworker", "--burst", "--worker-class", worker_class, OURS_QUEUE]
    run_workers(args, processes, child_env(PYTHONPATH=f"{ROOT}:{ROOT / 'bench'}"))
    return throughput(conn, ids, JSONJob, JSONSerializer)


def measure_ours(conn: Redis, n: int, worker_class: str, processes: int) -> tuple[float, float]:
    ids, enqueue_s = enqueue_ours(n)
    args = [PYTHON, "manage.py", "rqworker", "--burst", "--worker-class", worker_class, OURS_QUEUE]
    run_workers(args, processes, child_env(LOG_LEVEL="INFO"))
    return throughput(conn, ids, JSONJob, JSONSerializer), n / enqueue_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    conn = Redis.from_url(BENCH_REDIS_URL)
    print(f"job overhead: {options.jobs} no-op jobs per run, median of {options.rounds} rounds, jobs/s")
    print(
        f"{'set-up':10} {'bare RQ':>8} {'django+bare fn':>15} {'ours':>6} {'ours/bare':>10} "
        f"{'ours/django+bare':>17}   enqueue/s bare / ours"
    )
    for name, (ours_class, bare_class, processes) in SETUPS.items():
        n = options.jobs // 3 if name == "forking" else options.jobs
        bare, middle, ours, bare_enq, ours_enq = [], [], [], [], []
        for _ in range(options.rounds):
            conn.flushdb()
            b, be = measure_bare(conn, n, bare_class, processes)
            conn.flushdb()
            middle.append(measure_django_bare(conn, n, ours_class, processes))
            conn.flushdb()
            o, oe = measure_ours(conn, n, ours_class, processes)
            bare.append(b), ours.append(o), bare_enq.append(be), ours_enq.append(oe)
        print(
            f"{name:10} {median(bare):8.0f} {median(middle):15.0f} {median(ours):6.0f} "
            f"{median(ours) / median(bare):9.2f}x {median(ours) / median(middle):16.2f}x   "
            f"{median(bare_enq):7.0f} / {median(ours_enq):.0f}"
        )
    conn.flushdb()
    get_queue(OURS_QUEUE).empty()
    print("goal: the wrapper costs at most 10% (ours/bare and ours/django+bare >= 0.90x)")


if __name__ == "__main__":
    sys.exit(main())
