"""Jobs through real worker processes: system jobs, retries, the failure hook,
connection hygiene in both worker classes, and a worker killed mid-job."""

from __future__ import annotations

import itertools
import signal
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rq.registry import FailedJobRegistry, StartedJobRegistry

from jobs.api import enqueue, get_queue, redis_connection
from jobs.rq_classes import JSONJob
from yesgoddess.core.models import IdempotencyKey
from yesgoddess.notifications.models import Notification

from .conftest import FORKING, SIMPLE, wait_until
from .support_jobs import attempts_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def fetch(job_id: str) -> JSONJob:
    return JSONJob.fetch(job_id, connection=redis_connection())


def status(job_id: str) -> str:
    return fetch(job_id).get_status()


@pytest.fixture
def user():
    return get_user_model().objects.create(username="worker-test")


def test_both_system_jobs_run_through_a_forking_worker(user, run_worker):
    now = timezone.now()
    IdempotencyKey.objects.create(user=user, key="old", entity_type="job", expires_at=now - timedelta(hours=1))
    IdempotencyKey.objects.create(user=user, key="new", entity_type="job", expires_at=now + timedelta(hours=1))
    Notification.objects.create(
        user=user, type="LICENSE", title="t", message="m", read=True, read_at=now - timedelta(days=40)
    )
    Notification.objects.create(user=user, type="LICENSE", title="t", message="m")
    ids = [enqueue("idempotency-cleanup"), enqueue("notification-cleanup")]

    result = run_worker("scheduled", worker_class=FORKING)

    assert [status(i) for i in ids] == ["finished", "finished"]
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Notification.objects.count() == 1
    assert fetch(ids[0]).return_value()["deleted"] == 1
    log = result.stdout + result.stderr
    assert f"job=idempotency-cleanup id={ids[0]} outcome=ok" in log
    assert f"job=notification-cleanup id={ids[1]} outcome=ok" in log


def test_a_failing_job_is_retried_on_its_schedule_then_reaches_the_failure_hook(user, background_worker):
    job_id = enqueue("test-always-fail", user_id=user.pk)
    worker = background_worker("default")
    wait_until(lambda: status(job_id) == "failed", timeout=40, what="final failure")
    worker.kill()

    attempts = [float(t) for t in redis_connection().lrange(attempts_key(user.pk), 0, -1)]
    assert len(attempts) == 3  # first run + the two declared retries
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Retry(interval=[2, 4]). RQ schedules retries on whole seconds (truncated) and its
    # scheduler polls every second, so each gap is the interval, give or take a second.
    assert 1 <= gaps[0] <= 4 and 3 <= gaps[1] <= 6, gaps
    hooked = Notification.objects.filter(user=user, title="Job failed")
    assert hooked.count() == 1  # once, on the final failure only
    assert "RuntimeError: boom" in hooked.get().message
    assert hooked.get().metadata == {"job_id": job_id}
    assert job_id in FailedJobRegistry("default", connection=redis_connection()).get_job_ids()


def test_bad_input_fails_once_without_retries_and_with_a_clear_message(user, background_worker):
    job_id = enqueue("test-reject-input", user_id=987654)
    worker = background_worker("default")
    wait_until(lambda: status(job_id) == "failed", timeout=20, what="failure")
    time.sleep(2.5)  # longer than the first retry interval: a retry would have started
    log = worker.kill()
    assert log.count("job=test-reject-input id=") == 2, log  # one run, one final-failure hook
    assert log.count("outcome=rejected") == 1
    assert "user 987654 does not exist" in (fetch(job_id).latest_result().exc_string or "")
    assert fetch(job_id).retries_left == 0


def test_forking_worker_runs_database_jobs_back_to_back(user, run_worker):
    ids = [enqueue("test-count-users") for _ in range(4)]
    run_worker("default", worker_class=FORKING)
    assert [fetch(i).return_value() for i in ids] == [{"users": 1}] * 4


def _drop_other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("worker_class", [SIMPLE, FORKING])
def test_worker_survives_postgres_dropping_its_connection(user, background_worker, monkeypatch, worker_class):
    # Keep connections between jobs, as a production worker with DB_CONN_MAX_AGE would.
    monkeypatch.setenv("DB_CONN_MAX_AGE", "600")
    worker = background_worker("default", worker_class=worker_class)
    first = enqueue("test-count-users")
    wait_until(lambda: status(first) == "finished", what="first job")
    if worker_class == SIMPLE:
        assert _drop_other_connections() >= 1  # the worker's idle connection
    else:
        _drop_other_connections()
    second = enqueue("test-count-users")
    wait_until(lambda: status(second) in ("finished", "failed"), what="second job")
    worker.kill()
    assert status(second) == "finished"


def test_a_worker_killed_mid_job_leaves_it_visible_and_requeueable(background_worker, run_worker):
    hold = "test:hold"
    redis_connection().set(hold, 1)
    job_id = enqueue("test-hold", key=hold)
    worker = background_worker("default", worker_class=FORKING)
    wait_until(lambda: (fetch(job_id).meta.get("progress") or {}).get("done", 0) > 2, what="job running")
    assert status(job_id) == "started"

    worker.kill(signal.SIGKILL)  # the worker and its work horse, no chance to clean up

    started = StartedJobRegistry("default", connection=redis_connection(), job_class=JSONJob)
    in_progress = [member.decode().split(":")[0] for member in redis_connection().zrange(started.key, 0, -1)]
    assert job_id in in_progress, (redis_connection().keys("rq:*"), started.key)
    # Another worker's maintenance pass finds it once the heartbeat has expired
    # (bench/abandoned_job.py measures how long that takes); run that pass for a later time.
    started.cleanup(timestamp=time.time() + 3600)
    failed = FailedJobRegistry("default", connection=redis_connection(), job_class=JSONJob)
    assert job_id in failed.get_job_ids()
    assert status(job_id) == "failed"
    assert "abandoned" in (fetch(job_id).latest_result().exc_string or "").lower()

    redis_connection().delete(hold)
    failed.requeue(job_id)
    assert job_id in get_queue("default").get_job_ids()
    run_worker("default")
    assert status(job_id) == "finished"


def test_workers_started_by_the_command_use_the_configured_heartbeat(background_worker, settings):
    worker = background_worker("default", worker_class=SIMPLE)
    conn = redis_connection()
    key = wait_until(lambda: next(iter(conn.smembers("rq:workers:default")), None), what="worker registered")
    ttl = conn.ttl(key)
    worker.kill()
    # RQ keeps a worker key for worker_ttl + 60 s; RQ's own default would be 420 + 60.
    assert 0 < ttl <= settings.RQ_WORKER_TTL + 60, ttl
