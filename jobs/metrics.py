"""Prometheus metrics of the job system, served at `GET /metrics`.

- RQ's own figures (jobs by queue and status, workers and their counts) come from
  django-rq's collector, which reads them from Redis at scrape time.
- Ours are recorded once per run by the runtime wrapper (`record_run`):
  `yesgoddess_job_runs_total{job,outcome}`, `yesgoddess_job_duration_seconds{job}` and
  `yesgoddess_job_queue_wait_seconds{job}` (histograms).
- `yesgoddess_cron_last_success_timestamp{entry}` is read from `CronRun` at scrape time,
  for the entries of the cron table that have succeeded at least once.

Ours are kept in Redis hashes rather than in prometheus_client's per-process files
(its multi-process mode), because:
- the figures are recorded by worker processes and served by gunicorn workers, which in
  production run in other containers or on other machines (Procfile process types, many
  worker hosts): a directory shared on one machine would show that machine's jobs only;
  Redis is what every process already shares, and where RQ keeps its own counts;
- the forking worker runs every job in a new process, and multi-process mode writes a
  file per process id that is never merged: one more file per job for every scrape to read.
Recording costs one pipelined round trip per run (see `record_run`); a scrape reads
three hashes. A Redis wipe resets the counters, which Prometheus' rate() treats as a
counter reset.
"""

from __future__ import annotations

import hmac
import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.utils import floatToGoString
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq.job import Job

from yesgoddess.core.redis import redis_connection

from .cron_runs import last_runs
from .schedule import SCHEDULE

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the histogram buckets: from a 5 ms no-op to the hour-long
# timeouts of bulk jobs, for run durations and queue waits alike.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)
RUNS_KEY = "jobs:metrics:runs"  # field "<job>|<outcome>": count
DURATION_KEY = "jobs:metrics:duration"  # fields "<job>|<bucket index>": count, "<job>|sum": seconds
QUEUE_WAIT_KEY = "jobs:metrics:queue_wait"
SEP = "|"  # registry names and outcomes never contain it
SUM = "sum"


def queue_wait_seconds(job: Job | None) -> float | None:
    """How long the running job waited in its queue: from (re-)enqueueing to its start.

    A retry or a delayed job is enqueued again when it becomes due, so only its time
    on the queue counts. Clocks of two machines may disagree slightly: never below 0."""
    if job is None or job.enqueued_at is None or job.started_at is None:
        return None
    return max(0.0, (job.started_at - job.enqueued_at).total_seconds())


def record_run(job_name: str, outcome: str, duration: float, queue_wait: float | None) -> None:
    """Count one run of `job_name` (one round trip to Redis). Never raises: a job's
    outcome does not depend on its metrics."""
    try:
        with redis_connection().pipeline(transaction=False) as pipe:
            pipe.hincrby(RUNS_KEY, f"{job_name}{SEP}{outcome}", 1)
            _observe(pipe, DURATION_KEY, job_name, duration)
            if queue_wait is not None:
                _observe(pipe, QUEUE_WAIT_KEY, job_name, queue_wait)
            pipe.execute()
    except RedisError as exc:
        log.warning("job=%s metrics not recorded: %s", job_name, exc)


def _observe(pipe: Pipeline, key: str, job_name: str, seconds: float) -> None:
    # The bucket the value falls in (len(BUCKETS) is +Inf); cumulated when collected.
    pipe.hincrby(key, f"{job_name}{SEP}{bisect_left(BUCKETS, seconds)}", 1)
    pipe.hincrbyfloat(key, f"{job_name}{SEP}{SUM}", seconds)


def _split(field: bytes) -> tuple[str, str]:
    name, _, rest = field.decode().rpartition(SEP)
    return name, rest


def _histogram(name: str, documentation: str, fields: dict[bytes, bytes]) -> HistogramMetricFamily:
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
    sums: dict[str, float] = defaultdict(float)
    for field, value in fields.items():
        job_name, part = _split(field)
        if part == SUM:
            sums[job_name] = float(value)
        elif part.isdigit() and int(part) <= len(BUCKETS):
            counts[job_name][int(part)] += int(value)
    family = HistogramMetricFamily(name, documentation, labels=["job"])
    for job_name in sorted(counts):
        cumulative, buckets = 0, []
        for bound, count in zip((*map(floatToGoString, BUCKETS), "+Inf"), counts[job_name], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([job_name], buckets, sums[job_name])
    return family


class JobMetricsCollector:
    """Our per-job figures, read from Redis at scrape time."""

    def collect(self) -> Iterator[Metric]:
        with redis_connection().pipeline(transaction=False) as pipe:
            pipe.hgetall(RUNS_KEY)
            pipe.hgetall(DURATION_KEY)
            pipe.hgetall(QUEUE_WAIT_KEY)
            runs, durations, waits = pipe.execute()
        counter = CounterMetricFamily(
            "yesgoddess_job_runs", "Job runs by registry name and outcome.", labels=["job", "outcome"]
        )
        for field, value in sorted(runs.items()):
            counter.add_metric(list(_split(field)), int(value))
        yield counter
        yield _histogram("yesgoddess_job_duration_seconds", "Time a job run took, by registry name.", durations)
        yield _histogram(
            "yesgoddess_job_queue_wait_seconds", "Time a job waited in its queue before it started.", waits
        )


class CronMetricsCollector:
    """When each cron entry last succeeded (CronRun, in PostgreSQL). Entries that left the
    table are not reported: a stale series would look like an entry that stopped."""

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "yesgoddess_cron_last_success_timestamp",
            "Unix time of the last successful run of each cron entry (absent until its first success).",
            labels=["entry"],
        )
        runs = last_runs()
        for entry in SCHEDULE:
            run = runs.get(entry.id)
            if run is not None and run.last_success_at is not None:
                gauge.add_metric([entry.id], run.last_success_at.timestamp())
        yield gauge


@cache
def metrics_registry() -> CollectorRegistry:
    """What /metrics serves. Not prometheus_client's default registry: its process
    figures would describe whichever gunicorn worker happened to answer."""
    from django_rq.contrib.prometheus import RQCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RQCollector())
    registry.register(JobMetricsCollector())
    registry.register(CronMetricsCollector())
    return registry


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time; bytes, because compare_digest refuses non-ASCII str.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` in the Prometheus text format, for `Authorization: Bearer
    <METRICS_TOKEN>`; without a METRICS_TOKEN setting the URL does not exist (404)."""
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse({"error": "Not found."}, status=404)
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"error": "Use GET."}, status=405, headers={"Allow": "GET, HEAD"})
    if not _authorized(request, token):
        return JsonResponse(
            {"error": "Send 'Authorization: Bearer <METRICS_TOKEN>'."},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return HttpResponse(
        generate_latest(metrics_registry()),
        content_type=CONTENT_TYPE_PLAIN_0_0_4,
        headers={"Cache-Control": "no-store"},
    )
