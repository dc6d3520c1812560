"""GET /metrics (jobs/metrics.py): Bearer METRICS_TOKEN, RQ's figures through django-rq's
collector, ours recorded once per run by the runtime wrapper, across real worker
processes and a real gunicorn with two workers, and the cron entries' last success."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.api import enqueue
from jobs.metrics import record_run
from jobs.models import CronRun
from jobs.rq_classes import JSONJob
from jobs.runtime import dispatch_scheduled, execute
from yesgoddess.core.redis import redis_connection

from .conftest import FORKING, ROOT, SIMPLE, wait_until, worker_env

TOKEN = "metrics-token-for-tests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def metrics_token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape() -> Samples:
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def status(job_id: str) -> str:
    return JSONJob.fetch(job_id, connection=redis_connection()).get_status()


# --- access ------------------------------------------------------------------------------


def test_the_url_does_not_exist_without_a_token_setting(settings):
    settings.METRICS_TOKEN = ""
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
        response = Client().get("/metrics", headers=headers)
        assert response.status_code == 404
        assert response.json() == {"error": "Not found."}


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", "Bearer ", f"Bearer {TOKEN}x", f"{TOKEN}", "Bearer tökén"],
)
def test_a_missing_or_wrong_token_is_refused(metrics_token, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert "METRICS_TOKEN" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_the_right_token_gets_the_prometheus_text(metrics_token):
    response = Client().get("/metrics", headers={"Authorization": f"bearer  {TOKEN} "})
    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE rq_jobs gauge" in text  # django-rq's collector
    assert "# TYPE yesgoddess_job_runs_total counter" in text
    assert "# TYPE yesgoddess_job_duration_seconds histogram" in text
    assert "# TYPE yesgoddess_job_queue_wait_seconds histogram" in text
    assert "# TYPE yesgoddess_cron_last_success_timestamp gauge" in text


def test_other_methods_are_refused(metrics_token):
    response = Client().post("/metrics", b"{}", content_type="application/json", headers={"Authorization": "Bearer x"})
    assert response.status_code == 405
    assert response.json()["error"]


# --- what is recorded --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_recorded_run_becomes_a_counter_and_two_cumulative_histograms(metrics_token):
    record_run("ping", "ok", 0.2, 3.0)
    record_run("ping", "ok", 7.0, None)
    record_run("ping", "failed", 4000.0, 0.001)
    samples = scrape()

    assert value(samples, "yesgoddess_job_runs_total", job="ping", outcome="ok") == 2
    assert value(samples, "yesgoddess_job_runs_total", job="ping", outcome="failed") == 1
    duration = "yesgoddess_job_duration_seconds"
    assert value(samples, f"{duration}_bucket", job="ping", le="0.1") == 0
    assert value(samples, f"{duration}_bucket", job="ping", le="0.25") == 1
    assert value(samples, f"{duration}_bucket", job="ping", le="10.0") == 2
    assert value(samples, f"{duration}_bucket", job="ping", le="3600.0") == 2  # 4000 s is past the last bound
    assert value(samples, f"{duration}_bucket", job="ping", le="+Inf") == 3
    assert value(samples, f"{duration}_count", job="ping") == 3
    assert value(samples, f"{duration}_sum", job="ping") == pytest.approx(4007.2)
    wait = "yesgoddess_job_queue_wait_seconds"
    assert value(samples, f"{wait}_count", job="ping") == 2  # the run without a queue wait is not observed
    assert value(samples, f"{wait}_bucket", job="ping", le="0.005") == 1
    assert value(samples, f"{wait}_sum", job="ping") == pytest.approx(3.001)


@pytest.mark.django_db
def test_each_outcome_of_an_inline_run_is_counted_once(metrics_token):
    execute("ping")
    with pytest.raises(RuntimeError):
        execute("test-always-fail", user_id=1)
    with pytest.raises(Exception, match="does not exist"):
        execute("test-reject-input", user_id=999_999)
    samples = scrape()
    runs = series(samples, "yesgoddess_job_runs_total")
    assert runs == {
        (("job", "ping"), ("outcome", "ok")): 1,
        (("job", "test-always-fail"), ("outcome", "failed")): 1,
        (("job", "test-reject-input"), ("outcome", "rejected")): 1,
    }
    # An inline run (run_job, a shell) was never queued: no queue wait.
    assert series(samples, "yesgoddess_job_queue_wait_seconds_count") == {}


def test_a_job_still_succeeds_when_its_metrics_cannot_be_recorded(settings, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens here once the socket is closed
    original = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{dead}/0"
    redis_connection.cache_clear()
    try:
        assert execute("ping") == {"pong": "ok"}
    finally:
        settings.REDIS_URL = original
        redis_connection.cache_clear()
    assert "job=ping metrics not recorded" in caplog.text


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_run_is_counted_once_with_its_queue_wait(metrics_token, run_worker):
    ok_id = enqueue("ping")
    failing_id = enqueue("test-always-fail", user_id=1)  # retries: this attempt will be retried
    time.sleep(1.0)
    run_worker("default", worker_class=SIMPLE)
    assert status(ok_id) == "finished" and status(failing_id) == "scheduled"

    samples = scrape()
    assert series(samples, "yesgoddess_job_runs_total") == {
        (("job", "ping"), ("outcome", "ok")): 1,
        (("job", "test-always-fail"), ("outcome", "failed-will-retry")): 1,
    }
    assert value(samples, "yesgoddess_job_duration_seconds_count", job="ping") == 1
    wait = "yesgoddess_job_queue_wait_seconds"
    assert value(samples, f"{wait}_count", job="ping") == 1
    assert value(samples, f"{wait}_bucket", job="ping", le="0.5") == 0  # it waited >= 1 s for a worker
    assert value(samples, f"{wait}_sum", job="ping") >= 1.0
    # RQ's own figures, through django-rq's collector.
    assert value(samples, "rq_jobs", queue="default", status="finished") == 1
    assert value(samples, "rq_jobs", queue="default", status="scheduled") == 1


# --- several processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(workers: int = 2) -> Iterator[str]:
    """The Procfile's web process (real gunicorn, `workers` processes) on a port of its own."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "yesgoddess.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        cwd=ROOT,
        env={**worker_env(), "METRICS_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(up, timeout=60, what="gunicorn to answer /healthz")
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def scrape_over_http(base: str) -> Samples:
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return parse(response.read().decode())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_jobs_run_by_two_worker_processes_show_up_in_one_scrape_from_any_gunicorn_worker(
    metrics_token, background_worker
):
    conn = redis_connection()
    conn.set("hold-a", 1)
    conn.set("hold-b", 1)
    first, second = enqueue("test-hold", key="hold-a"), enqueue("test-hold", key="hold-b")
    # Each worker is held by one job until both have one: two processes, one run each.
    background_worker("default", worker_class=FORKING, with_scheduler=False)
    wait_until(lambda: status(first) == "started", timeout=60, what="the forking worker to take a job")
    background_worker("default", worker_class=SIMPLE, with_scheduler=False)
    wait_until(lambda: status(second) == "started", timeout=60, what="the simple worker to take a job")
    conn.delete("hold-a", "hold-b")
    wait_until(lambda: status(first) == status(second) == "finished", timeout=60, what="both jobs to finish")

    samples = scrape()
    assert value(samples, "yesgoddess_job_runs_total", job="test-hold", outcome="ok") == 2
    assert value(samples, "yesgoddess_job_duration_seconds_count", job="test-hold") == 2
    assert value(samples, "yesgoddess_job_queue_wait_seconds_count", job="test-hold") == 2
    # django-rq's figures tell the two workers apart: one successful job each.
    per_worker = series(samples, "rq_job_successful_total")
    assert sorted(per_worker.values()) == [1, 1]
    assert len(series(samples, "rq_workers")) == 2

    # The web process: every gunicorn worker serves the same figures.
    with gunicorn(workers=2) as base:
        scrapes = [scrape_over_http(base) for _ in range(6)]
    for over_http in scrapes:
        assert value(over_http, "yesgoddess_job_runs_total", job="test-hold", outcome="ok") == 2
        assert value(over_http, "yesgoddess_job_duration_seconds_count", job="test-hold") == 2
        assert sorted(series(over_http, "rq_job_successful_total").values()) == [1, 1]


# --- cron entries ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_cron_entrys_last_success_is_exported_for_entries_of_the_table(metrics_token, run_worker):
    dispatch_scheduled("idempotency-cleanup", {}, "idempotency-cleanup")  # an entry of jobs/schedule.py
    dispatch_scheduled("ping", {}, "not-in-the-table")
    run_worker("scheduled", "default", worker_class=SIMPLE)

    samples = scrape()
    success = CronRun.objects.get(entry_id="idempotency-cleanup").last_success_at
    assert success is not None
    assert value(samples, "yesgoddess_cron_last_success_timestamp", entry="idempotency-cleanup") == pytest.approx(
        success.timestamp()
    )
    exported = series(samples, "yesgoddess_cron_last_success_timestamp")
    # An id that left the table (or never was in it) is not exported; nor is an entry
    # that never succeeded.
    assert CronRun.objects.filter(entry_id="not-in-the-table").exists()
    assert list(exported) == [(("entry", "idempotency-cleanup"),)]


@pytest.mark.django_db
def test_a_failed_cron_run_keeps_the_last_success_in_the_metric(metrics_token):
    now = timezone.now()
    success = now - timedelta(hours=5)
    CronRun.objects.create(
        entry_id="token-cleanup", outcome=CronRun.Outcome.FAILED, finished_at=now, last_success_at=success
    )
    CronRun.objects.create(entry_id="upload-cleanup", outcome=CronRun.Outcome.FAILED, finished_at=now)
    exported = series(scrape(), "yesgoddess_cron_last_success_timestamp")
    assert exported == {(("entry", "token-cleanup"),): pytest.approx(success.timestamp())}
