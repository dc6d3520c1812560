"""Production Redis (issue 23, point 6): every use of Redis gets its client from
yesgoddess/core/redis.py, so TLS with certificates and Redis Sentinel work everywhere.

The TLS and Sentinel tests run Redis servers of their own on loopback ports."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import django_rq
import pytest
from django.test import override_settings
from redis.exceptions import ConnectionError as RedisConnectionError

from jobs.api import enqueue, get_queue
from jobs.rq_classes import JSONJob
from yesgoddess.core.redis import connect, redis_connection

from .conftest import ROOT, SIMPLE, manage, wait_until, worker_env
from .redis_servers import HOST, RedisServer, make_certificates

CLIENT_CONSTRUCTORS = re.compile(r"\b(Redis|StrictRedis|Sentinel|ConnectionPool)\s*\(|\.from_url\s*\(")
MASTER = "yg-test-master"


def test_no_module_builds_its_own_redis_client():
    """Every client comes from yesgoddess/core/redis.py (`connect` / `redis_connection`)."""
    one_place = ROOT / "yesgoddess" / "core" / "redis.py"
    sources = [*(ROOT / "yesgoddess").rglob("*.py"), *(ROOT / "jobs").rglob("*.py"), ROOT / "manage.py"]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources
        if path != one_place
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CLIENT_CONSTRUCTORS.search(line)
    ]
    assert offenders == []


def test_django_rq_workers_scheduler_and_panel_use_the_one_client():
    client = redis_connection()
    for name in ("critical", "default", "media", "scheduled", "bulk"):
        assert django_rq.get_connection(name) is client
        assert django_rq.get_queue(name).connection is client
    # what `manage.py rqscheduler` runs, and what `rqworker` builds its worker from
    assert django_rq.get_scheduler("scheduled").connection is client
    assert django_rq.queues.get_queues("critical", "default")[0].connection is client


@contextmanager
def redis_settings(**overrides: object) -> Iterator[None]:
    """This process's client built from `overrides` (and the default one again after)."""
    redis_connection.cache_clear()
    try:
        with override_settings(**overrides):
            yield
    finally:
        redis_connection.cache_clear()


def env_for(**overrides: str) -> dict[str, str]:
    return {**worker_env(), **overrides}


def run_burst_worker(env: dict[str, str], *queues: str) -> None:
    result = manage("rqworker", "--burst", "--worker-class", SIMPLE, *queues, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def finished_result(job_id: str) -> object:
    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.get_status() == "finished", job.exc_info
    return job.return_value()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, dict[str, Path]]]:
    certs = make_certificates(tmp_path / "certs")
    server = RedisServer(
        tmp_path,
        "--port", "0",
        "--tls-port", "{port}",
        "--tls-cert-file", str(certs["server.crt"]),
        "--tls-key-file", str(certs["server.key"]),
        "--tls-ca-cert-file", str(certs["ca.crt"]),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    tls = {
        "ssl": True,
        "ssl_ca_certs": str(certs["ca.crt"]),
        "ssl_certfile": str(certs["client.crt"]),
        "ssl_keyfile": str(certs["client.key"]),
    }
    try:
        yield server.wait_ready(server.client(**tls)), certs
    finally:
        server.stop()


@pytest.mark.slow
def test_a_job_runs_over_tls_with_a_client_certificate(transactional_db, tls_redis):
    server, certs = tls_redis
    url = f"rediss://{HOST}:{server.port}/0"
    tls = {
        "REDIS_SSL_CA_CERTS": str(certs["ca.crt"]),
        "REDIS_SSL_CERTFILE": str(certs["client.crt"]),
        "REDIS_SSL_KEYFILE": str(certs["client.key"]),
    }
    with redis_settings(REDIS_URL=url, **tls):
        job_id = enqueue("ping")
        run_burst_worker(env_for(REDIS_URL=url, **tls), "default")
        assert finished_result(job_id) == {"pong": "ok"}
    # The certificate options are what let the client in: the server refuses a client
    # without a certificate, and one that does not trust the server's CA.
    no_client_certificate = {**tls, "REDIS_SSL_CERTFILE": "", "REDIS_SSL_KEYFILE": ""}
    with redis_settings(REDIS_URL=url, **no_client_certificate), pytest.raises(RedisConnectionError):
        connect(socket_timeout=5).ping()
    with redis_settings(REDIS_URL=url, **{**tls, "REDIS_SSL_CA_CERTS": ""}), pytest.raises(RedisConnectionError):
        connect(socket_timeout=5).ping()


@pytest.fixture
def sentinel_pair(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    """A master, its replica, and one sentinel watching them (quorum 1)."""
    master = RedisServer(tmp_path)
    replica = RedisServer(tmp_path, "--replicaof", HOST, str(master.port))
    started = [master, replica]
    try:
        master.wait_ready()
        replica.wait_ready()
        sentinel = RedisServer(
            tmp_path,
            f"sentinel monitor {MASTER} {HOST} {master.port} 1",
            f"sentinel down-after-milliseconds {MASTER} 2000",
            f"sentinel failover-timeout {MASTER} 10000",
            sentinel=True,
        )
        started.append(sentinel)
        sentinel.wait_ready()
        # SENTINEL FAILOVER needs a replica the sentinel knows and trusts (found through
        # the master's INFO, every few seconds).
        wait_until(
            lambda: any(
                r["port"] == replica.port and r["master-link-status"] == "ok" and "s_down" not in r["flags"]
                for r in sentinel.client(decode_responses=True).sentinel_slaves(MASTER)
            ),
            timeout=30,
            what="the sentinel to see the replica",
        )
        yield master, replica, sentinel
    finally:
        for server in reversed(started):
            server.stop()


@pytest.mark.slow
def test_jobs_run_through_sentinel_and_follow_a_failover(transactional_db, sentinel_pair, background_worker):
    master, replica, sentinel = sentinel_pair
    # REDIS_URL names the old master's port on purpose: with sentinels only its database
    # number counts, so a client that used its host would write to a replica after the
    # failover and fail (READONLY).
    overrides = {
        "REDIS_URL": f"redis://{HOST}:{master.port}/3",
        "REDIS_SENTINELS": [(HOST, sentinel.port)],
        "REDIS_SENTINEL_MASTER": MASTER,
    }
    env = {"REDIS_URL": overrides["REDIS_URL"], "REDIS_SENTINELS": f"{HOST}:{sentinel.port}"}
    env["REDIS_SENTINEL_MASTER"] = MASTER
    with redis_settings(**overrides):
        worker = background_worker("default", worker_class=SIMPLE, env=env)
        first = enqueue("ping")
        wait_until(lambda: get_queue("default").fetch_job(first).get_status() == "finished", 60, "the first job")
        assert master.client(db=3).exists(f"rq:job:{first}")

        sentinel.client().execute_command("SENTINEL", "FAILOVER", MASTER)
        wait_until(
            lambda: int(sentinel.client().sentinel_get_master_addr_by_name(MASTER)[1]) == replica.port,
            30,
            "the sentinel to promote the replica",
        )
        wait_until(lambda: replica.client().info("replication")["role"] == "master", 30, "the new master")
        # Until the sentinel has turned the old master into a replica it still takes
        # writes (which the resync then drops): the failover is over when it has.
        wait_until(lambda: master.client().info("replication")["role"] == "slave", 30, "the old master to follow")

        # The same worker process, still running, takes the next jobs from the new master;
        # a delayed one also needs RQ's scheduler (--with-scheduler) to have followed.
        second = enqueue("ping")
        delayed = enqueue("ping", delay=1)
        for job_id in (second, delayed):
            wait_until(
                lambda job_id=job_id: get_queue("default").fetch_job(job_id).get_status() == "finished",
                90,
                f"job {job_id} after the failover",
            )
        assert replica.client(db=3).exists(f"rq:job:{second}")
        assert worker.process.poll() is None, worker.kill()
        # A warm shutdown interrupts the worker's blocking read: with the connection kept
        # (redis-py's sentinel default) its goodbye got that read's reply and failed.
        output = worker.kill(signal.SIGTERM)
        assert "warm shut down requested" in output and "Traceback" not in output, output[-3000:]


class Interrupted(Exception):
    """Raised by a signal handler in the middle of a Redis read, as RQ's warm shutdown
    (StopRequested) and a job's timeout (JobTimeoutException) are."""


@pytest.mark.slow
def test_a_read_interrupted_under_sentinel_does_not_shift_the_next_replies(sentinel_pair):
    _, _, sentinel = sentinel_pair
    overrides = {"REDIS_SENTINELS": [(HOST, sentinel.port)], "REDIS_SENTINEL_MASTER": MASTER}

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with redis_settings(**overrides):
            client = redis_connection()
            client.set("probe", "value")
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(Interrupted):
                client.blpop(["nothing-here"], timeout=1)
            # Had the connection gone back to the pool with the BLPOP's reply unread,
            # PING would get that reply (nil) and GET would get PING's.
            assert client.ping() is True
            assert client.get("probe") == b"value"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
