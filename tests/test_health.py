"""GET /healthz and GET /readyz (yesgoddess/core/health.py), against the real services:
every check failing for a real reason, the page answering in time when a dependency
hangs, and everything green with real workers and a real rq-scheduler."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from rq.suspension import suspend

from yesgoddess.core import health
from yesgoddess.core.redis import redis_connection

from .conftest import ROOT, SIMPLE, wait_until, worker_env

CHECKS = ["database", "migrations", "redis", "clamd", "storage", "workers", "scheduler"]
# The Procfile's two worker pools: every queue has a listener.
POOLS = (("critical", "default", "scheduled", "bulk"), ("critical", "media"))


def readyz() -> tuple[int, dict]:
    response = Client().get("/readyz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def failed(body: dict) -> dict[str, str]:
    return {name: check["detail"] for name, check in body["checks"].items() if not check["ok"]}


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@contextlib.contextmanager
def silent_tcp_server() -> Iterator[int]:
    """Accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@contextlib.contextmanager
def rqscheduler(interval: int = 1) -> Iterator[subprocess.Popen]:
    """`manage.py rqscheduler`, as the Procfile runs it."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqscheduler", "--queue", "scheduled", "--interval", str(interval)],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def check_ok(name: str) -> bool:
    return readyz()[1]["checks"][name]["ok"]


# --- /healthz ----------------------------------------------------------------------------


def test_healthz_answers_while_every_dependency_is_down(settings, tmp_path):
    """No database access is allowed in this test (pytest-django refuses it), Redis and
    clamd point at nothing: /healthz still answers."""
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port()}/0"
    settings.CLAMD_SOCKET = str(tmp_path / "no-clamd.sock")
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_answer_by_ip_over_plain_http_in_production_settings(settings):
    """A load balancer probes http://<pod ip>/healthz: no host check, no HTTPS redirect."""
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["app.example.com"]
    assert Client().get("/healthz", HTTP_HOST="10.1.2.3").status_code == 200
    # Everything else keeps both rules.
    assert Client().get("/api/search", HTTP_HOST="10.1.2.3").status_code == 400
    assert Client().get("/api/search", HTTP_HOST="app.example.com").status_code == 301


def test_probes_refuse_other_methods_with_json():
    for url in ("/healthz", "/readyz"):
        response = Client().post(url, b"{", content_type="application/json")
        assert response.status_code == 405
        assert response.json()["error"] and response["Allow"] == "GET, HEAD"


# --- /readyz: each check failing ---------------------------------------------------------


@pytest.mark.django_db
def test_readyz_has_the_documented_shape_and_fails_without_workers_or_scheduler():
    status, body = readyz()
    assert status == 503
    assert set(body) == {"status", "checks"} and body["status"] == "fail"
    assert list(body["checks"]) == CHECKS
    for check in body["checks"].values():
        assert set(check) == {"ok", "detail", "ms"}
        assert isinstance(check["ok"], bool) and isinstance(check["detail"], str) and check["detail"]
        assert isinstance(check["ms"], float) and check["ms"] >= 0
    assert set(failed(body)) == {"workers", "scheduler"}  # database, redis, clamd, storage: real and up
    assert failed(body)["workers"].startswith("no live worker on critical, default, media, scheduled, bulk")
    assert "no rq-scheduler heartbeat" in failed(body)["scheduler"]


@pytest.mark.django_db
def test_an_unreachable_database_fails_database_and_migrations():
    original = connection.settings_dict["PORT"]
    # The checks open connections of their own from these settings (the test's own
    # connection is already open and is not affected).
    connection.settings_dict["PORT"] = dead_port()
    try:
        status, body = readyz()
    finally:
        connection.settings_dict["PORT"] = original
    assert status == 503
    assert "OperationalError" in failed(body)["database"]
    assert "OperationalError" in failed(body)["migrations"]


@pytest.mark.django_db(transaction=True)
def test_an_unapplied_migration_fails_migrations():
    recorder = MigrationRecorder(connection)
    latest = max(name for app, name in recorder.applied_migrations() if app == "jobs")
    recorder.record_unapplied("jobs", latest)
    try:
        status, body = readyz()
    finally:
        recorder.record_applied("jobs", latest)
    assert status == 503
    assert failed(body)["migrations"] == f"1 unapplied: jobs.{latest}"
    assert readyz()[1]["checks"]["migrations"]["ok"]  # recorded again: all applied


@pytest.mark.django_db
def test_redis_with_nothing_listening_fails_redis_workers_and_scheduler(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{dead_port()}/0"
    status, body = readyz()
    assert status == 503
    assert {"redis", "workers", "scheduler"} <= set(failed(body))
    assert "ConnectionError" in failed(body)["redis"]
    assert body["checks"]["database"]["ok"] and body["checks"]["clamd"]["ok"]


@pytest.mark.django_db
def test_a_redis_that_never_answers_cannot_hang_the_page(settings):
    with silent_tcp_server() as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        began = time.monotonic()
        status, body = readyz()
        took = time.monotonic() - began
    assert status == 503
    assert took < health.CHECK_TIMEOUT + 1.5
    assert "Timeout" in failed(body)["redis"]


@pytest.mark.django_db
def test_clamd_missing_or_silent_fails_clamd(settings, tmp_path):
    settings.CLAMD_SOCKET = str(tmp_path / "no-clamd.sock")
    assert "FileNotFoundError" in failed(readyz()[1])["clamd"]

    # A socket that accepts and never answers: the check gives up after its timeout.
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    settings.CLAMD_SOCKET = str(path)
    try:
        began = time.monotonic()
        detail = failed(readyz()[1])["clamd"]
        took = time.monotonic() - began
    finally:
        server.close()
    assert "timed out" in detail.lower()
    assert took < health.CHECK_TIMEOUT + 1.5


@pytest.mark.django_db
def test_unwritable_storage_fails_storage(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.MEDIA_ROOT = blocker / "media"  # a directory cannot be made under a file
    status, body = readyz()
    assert status == 503
    assert "NotADirectoryError" in failed(body)["storage"]


class HangingStorage(FileSystemStorage):
    """A storage that does not answer (an S3 endpoint that accepts and never replies)
    until the test releases it."""

    release = threading.Event()

    def _save(self, name, content):
        self.release.wait(30)
        return super()._save(name, content)


@pytest.mark.django_db
def test_a_hung_check_is_reported_once_and_not_started_again(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.HangingStorage", "OPTIONS": {"location": str(tmp_path)}},
    }
    HangingStorage.release.clear()
    try:
        began = time.monotonic()
        first = readyz()[1]
        assert time.monotonic() - began < health.CHECK_TIMEOUT + 1.5
        assert failed(first)["storage"] == f"no answer within {health.CHECK_TIMEOUT:g} s"
        # Polled again while it is still stuck: reported, and no second thread started.
        second = readyz()[1]
        assert failed(second)["storage"].endswith("has not finished")
        assert [t.name for t in threading.enumerate()].count("readyz-storage") == 1
    finally:
        HangingStorage.release.set()
    wait_until(lambda: "readyz-storage" not in [t.name for t in threading.enumerate()], what="the check to end")
    assert readyz()[1]["checks"]["storage"]["ok"]


@pytest.mark.django_db
def test_a_stale_scheduler_entry_is_not_a_heartbeat():
    """A scheduler killed without registering its death leaves its id in the index; its
    own key has expired, so it does not count, and the index forgets it."""
    redis_connection().sadd(health.SCHEDULER_INDEX_KEY, "killed-long-ago")
    assert "no rq-scheduler heartbeat" in failed(readyz()[1])["scheduler"]
    assert redis_connection().smembers(health.SCHEDULER_INDEX_KEY) == set()


# --- /readyz with real workers and scheduler ---------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db
def test_everything_ok_with_real_workers_and_scheduler(background_worker):
    for queues in POOLS:
        background_worker(*queues, worker_class=SIMPLE)
    with rqscheduler():
        wait_until(lambda: check_ok("workers") and check_ok("scheduler"), timeout=90, what="workers and scheduler")
        status, body = readyz()
    assert failed(body) == {}
    assert status == 200 and body["status"] == "ok"
    assert body["checks"]["workers"]["detail"] == ("live workers: critical 2, default 1, media 1, scheduled 1, bulk 1")
    assert body["checks"]["scheduler"]["detail"] == "1 rq-scheduler instance(s) with a fresh heartbeat"


@pytest.mark.slow
@pytest.mark.django_db
def test_a_queue_without_a_worker_and_suspended_workers_fail_workers(background_worker):
    worker = background_worker(*POOLS[0], worker_class=SIMPLE)
    wait_until(lambda: "default 1" in failed(readyz()[1]).get("workers", ""), timeout=90, what="the worker")
    assert failed(readyz()[1])["workers"] == (
        "no live worker on media; live workers: critical 1, default 1, media 0, scheduled 1, bulk 1"
    )

    background_worker(*POOLS[1], worker_class=SIMPLE)
    wait_until(lambda: check_ok("workers"), timeout=90, what="the media worker")
    suspend(redis_connection())
    assert failed(readyz()[1])["workers"].startswith("workers are suspended (rqsuspend)")

    # A worker that stops unregisters itself: its queues are uncovered again.
    worker.kill(signal.SIGTERM)
    redis_connection().delete("rq:suspended")
    assert failed(readyz()[1])["workers"].startswith("no live worker on default, scheduled, bulk")


@pytest.mark.slow
@pytest.mark.django_db
def test_a_stopped_or_killed_scheduler_fails_scheduler():
    with rqscheduler() as process:
        wait_until(lambda: check_ok("scheduler"), timeout=60, what="the scheduler's heartbeat")
        process.send_signal(signal.SIGTERM)  # registers its death
        process.wait(timeout=30)
        assert "no rq-scheduler heartbeat" in failed(readyz()[1])["scheduler"]

    with rqscheduler(interval=1) as process:
        wait_until(lambda: check_ok("scheduler"), timeout=60, what="the scheduler's heartbeat")
        os.killpg(process.pid, signal.SIGKILL)  # no death registered: the heartbeat expires
        process.wait()
        began = time.monotonic()
        wait_until(lambda: not check_ok("scheduler"), timeout=30, what="the heartbeat to expire")
    # rq-scheduler's key lives for interval + 10 s after its last heartbeat.
    assert time.monotonic() - began <= 1 + 10 + 2


@pytest.mark.slow
@pytest.mark.django_db
def test_a_scheduler_whose_heartbeat_expired_while_it_stalled_is_seen_again():
    """rq-scheduler alone renews its key with EXPIRE, which cannot revive an expired key:
    a scheduler that stalled past interval + 10 s would look dead for good."""
    conn = redis_connection()
    with rqscheduler(interval=1):
        wait_until(lambda: check_ok("scheduler"), timeout=60, what="the scheduler's heartbeat")
        (name,) = (n.decode() for n in conn.smembers(health.SCHEDULER_INDEX_KEY))
        conn.delete(health.SCHEDULER_INSTANCE_PREFIX + name)  # what expiry does to a stalled one
        assert conn.exists(health.SCHEDULER_INSTANCE_PREFIX + name) == 0
        wait_until(lambda: conn.exists(health.SCHEDULER_INSTANCE_PREFIX + name), timeout=10, what="re-registration")
        assert check_ok("scheduler")


def test_the_scheduler_class_of_rqscheduler_is_the_indexed_one():
    import django_rq

    from jobs.rq_classes import IndexedScheduler

    assert isinstance(django_rq.get_scheduler("scheduled"), IndexedScheduler)
