"""How long until a job abandoned by a SIGKILLed worker is visible as failed.

Two forking workers run with the project's settings (RQ_WORKER_TTL,
RQ_JOB_MONITORING_INTERVAL, RQ_MAINTENANCE_INTERVAL). A job that waits on a Redis key
starts on one of them; that worker and its work horse are killed with SIGKILL; the
script then only watches (it never runs a clean-up itself) until the surviving worker's
maintenance pass moves the job to the failed registry. RQ's defaults would take up to
about ten minutes (maintenance every 600 s).
Usage: python bench/abandoned_job.py [--trials N]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path

from _common import PYTHON, ROOT, child_env, median, setup_django

setup_django(EXTRA_JOB_MODULES="tests.support_jobs")

from django.conf import settings  # noqa: E402

from jobs.api import enqueue, redis_connection  # noqa: E402
from jobs.rq_classes import JSONJob  # noqa: E402


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def trial() -> float:
    conn = redis_connection()
    conn.flushdb()
    env = child_env(EXTRA_JOB_MODULES="tests.support_jobs", LOG_LEVEL="WARNING")
    args = [PYTHON, "manage.py", "rqworker", "--worker-class", "jobs.rq_classes.DjangoWorker", "default"]
    workers = [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        time.sleep(3)  # both registered and idle
        conn.set("bench:hold", 1)
        job_id = enqueue("test-hold", key="bench:hold")
        while JSONJob.fetch(job_id, connection=conn).get_status() != "started":
            time.sleep(0.05)
        worker_name = JSONJob.fetch(job_id, connection=conn).worker_name
        pid = int(conn.hget(f"rq:worker:{worker_name}", "pid"))
        victim = next(w for w in workers if w.pid == pid)
        for child in children_of(pid):
            os.kill(child, signal.SIGKILL)
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        conn.delete("bench:hold")
        while conn.zscore("rq:failed:default", job_id) is None:
            if time.monotonic() - killed_at > 900:
                raise SystemExit("not found after 15 minutes")
            time.sleep(0.5)
        return time.monotonic() - killed_at
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
            worker.wait()
        redis_connection().flushdb()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=1)
    options = parser.parse_args()
    print(
        f"abandoned job: worker_ttl={settings.RQ_WORKER_TTL}s monitoring={settings.RQ_JOB_MONITORING_INTERVAL}s "
        f"maintenance={settings.RQ_MAINTENANCE_INTERVAL}s"
    )
    times = [trial() for _ in range(options.trials)]
    print(
        f"found as failed after {', '.join(f'{t:.0f}' for t in times)} s (median {median(times):.0f} s); "
        "goal < 120 s (RQ defaults: up to ~600 s)"
    )


if __name__ == "__main__":
    main()
