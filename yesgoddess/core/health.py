"""Liveness and readiness: `GET /healthz` and `GET /readyz`.

- /healthz answers 200 while this process can serve a request. It touches nothing else,
  so an orchestrator restarts the process for the process's own faults only.
- /readyz checks what the system needs and answers
  `{"status": "ok"|"fail", "checks": {name: {"ok": bool, "detail": str, "ms": float}}}`,
  503 when any check fails: `database`, `migrations` (none unapplied), `redis`, `clamd`,
  `storage` (a file can be written and deleted), `workers` (a live worker listens on
  each queue, and workers are not suspended) and `scheduler` (an rq-scheduler heartbeat
  is fresh). It fails while workers or the scheduler are down, so it is a status page
  for monitors and deploy gates, not a load balancer's routing check (that is /healthz).

The checks run at once, each in a daemon thread, with its own client timeouts; the page
waits at most CHECK_TIMEOUT (+ a little) and reports a check that has not answered by
then as failed. A check still stuck from an earlier request is not started again, so
polling a hung dependency never piles up threads.

ProbeMiddleware, first in settings.MIDDLEWARE, answers both before the HTTPS redirect
and the host check (probes come over plain HTTP, addressed by IP) and without sessions
or authentication (no query for /healthz).
"""

from __future__ import annotations

import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis import Redis
from rq.suspension import WORKERS_SUSPENDED
from rq.worker_registration import WORKERS_BY_QUEUE_KEY
from rq_scheduler import Scheduler

from .redis import connect

# Seconds each check may take (client timeouts), and so roughly the longest /readyz waits.
CHECK_TIMEOUT = 2.0
# rq-scheduler keeps no list of its instances: each is a key named after a random id.
# jobs.rq_classes.IndexedScheduler adds its id to this set, so finding them does not
# need a SCAN of the keyspace (0.5 s of Redis time at 1M keys, measured).
SCHEDULER_INDEX_KEY = "rq:scheduler:instances"
SCHEDULER_INSTANCE_PREFIX = Scheduler.redis_scheduler_namespace_prefix


class CheckFailed(Exception):
    """A check's verdict: the dependency answered, but not as it should."""


# --- the checks: each returns a short detail or raises --------------------------------


@contextmanager
def _database(timeout: float) -> Iterator[BaseDatabaseWrapper]:
    """A connection of the check's own, with a connect and a statement timeout (the
    process's connections wait as long as the operating system lets them)."""
    settings_dict = dict(connections[DEFAULT_DB_ALIAS].settings_dict)
    settings_dict["OPTIONS"] = {**settings_dict.get("OPTIONS", {}), "connect_timeout": max(2, math.ceil(timeout))}
    conn = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, DEFAULT_DB_ALIAS)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{round(timeout * 1000)}ms"])
        yield conn
    finally:
        conn.close()


def check_database(timeout: float) -> str:
    with _database(timeout) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "answered SELECT 1"


def check_migrations(timeout: float) -> str:
    from django.db.migrations.executor import MigrationExecutor

    with _database(timeout) as conn:
        executor = MigrationExecutor(conn)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
        raise CheckFailed(f"{len(plan)} unapplied: {names}{', ...' if len(plan) > 5 else ''}")
    return "all applied"


def _redis(timeout: float) -> Redis:
    return connect(socket_connect_timeout=timeout, socket_timeout=timeout)


def check_redis(timeout: float) -> str:
    client = _redis(timeout)
    try:
        client.ping()
    finally:
        client.close()
    return "answered PING"


def check_clamd(timeout: float) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(settings.CLAMD_SOCKET)
        sock.sendall(b"zPING\0")
        reply = b""
        while not reply.endswith(b"\0") and len(reply) < 64:
            chunk = sock.recv(64)
            if not chunk:
                break
            reply += chunk
    if reply.rstrip(b"\0") != b"PONG":
        raise CheckFailed(f"clamd answered {reply[:40]!r} to PING")
    return "answered PING"


def check_storage(timeout: float) -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    name = default_storage.save(f"health/readyz-{uuid.uuid4().hex}.txt", ContentFile(b"readyz\n"))
    default_storage.delete(name)
    return "wrote and deleted a file"


def check_workers(timeout: float) -> str:
    client = _redis(timeout)
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.exists(WORKERS_SUSPENDED)
            for queue in settings.JOB_QUEUES:
                pipe.smembers(WORKERS_BY_QUEUE_KEY % queue)
            suspended, *members = pipe.execute()
        # A worker killed without unregistering stays in the sets until another worker
        # cleans them; its own key expires with its heartbeat, so only live keys count.
        keys = sorted(set().union(*members))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            live = {key for key, exists in zip(keys, pipe.execute(), strict=True) if exists}
    finally:
        client.close()
    counts = {queue: len(live & queue_keys) for queue, queue_keys in zip(settings.JOB_QUEUES, members, strict=True)}
    detail = ", ".join(f"{queue} {count}" for queue, count in counts.items())
    if suspended:
        raise CheckFailed(f"workers are suspended (rqsuspend); live workers: {detail}")
    idle = [queue for queue, count in counts.items() if not count]
    if idle:
        raise CheckFailed(f"no live worker on {', '.join(idle)}; live workers: {detail}")
    return f"live workers: {detail}"


def check_scheduler(timeout: float) -> str:
    """rq-scheduler refreshes its instance key's TTL (interval + 10 s) on every loop, and
    marks it `death` when it stops: a key that exists without `death` is a fresh heartbeat."""
    client = _redis(timeout)
    try:
        names = sorted(name.decode() for name in client.smembers(SCHEDULER_INDEX_KEY))
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(SCHEDULER_INSTANCE_PREFIX + name)
                pipe.hexists(SCHEDULER_INSTANCE_PREFIX + name, "death")
            answers = pipe.execute()
        states = dict(zip(names, zip(answers[::2], answers[1::2], strict=True), strict=True))
        gone = [name for name, (exists, _) in states.items() if not exists]
        if gone:  # killed without registering its death: its key expired
            client.srem(SCHEDULER_INDEX_KEY, *gone)
    finally:
        client.close()
    alive = [name for name, (exists, dead) in states.items() if exists and not dead]
    if not alive:
        raise CheckFailed("no rq-scheduler heartbeat (none running, or none within its interval + 10 s)")
    return f"{len(alive)} rq-scheduler instance(s) with a fresh heartbeat"


CHECKS: dict[str, Callable[[float], str]] = {
    "database": check_database,
    "migrations": check_migrations,
    "redis": check_redis,
    "clamd": check_clamd,
    "storage": check_storage,
    "workers": check_workers,
    "scheduler": check_scheduler,
}


# --- running them --------------------------------------------------------------------


@dataclass
class _Run:
    started: float = field(default_factory=time.monotonic)
    result: dict[str, Any] | None = None
    thread: threading.Thread | None = None


_running: dict[str, _Run] = {}
_running_lock = threading.Lock()


def _verdict(ok: bool, detail: str, ms: float) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, "ms": round(ms, 1)}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _run_one(check: Callable[[float], str], timeout: float, run: _Run) -> None:
    began = time.perf_counter()
    try:
        verdict = _verdict(True, check(timeout), 0)
    except Exception as exc:
        verdict = _verdict(False, _describe(exc), 0)
    finally:
        connections.close_all()  # this thread's own; the request's are untouched
    verdict["ms"] = round((time.perf_counter() - began) * 1000, 1)
    run.result = verdict


def run_checks(timeout: float = CHECK_TIMEOUT) -> dict[str, dict[str, Any]]:
    """Every check's verdict, in CHECKS order, within about `timeout` seconds."""
    results: dict[str, dict[str, Any]] = {}
    started: dict[str, _Run] = {}
    with _running_lock:
        for name, check in CHECKS.items():
            previous = _running.get(name)
            if previous is not None and previous.thread is not None and previous.thread.is_alive():
                stuck = time.monotonic() - previous.started
                results[name] = _verdict(False, f"the check started {stuck:.0f} s ago has not finished", 0)
                continue
            run = _Run()
            run.thread = threading.Thread(
                target=_run_one, args=(check, timeout, run), name=f"readyz-{name}", daemon=True
            )
            _running[name] = started[name] = run
            run.thread.start()
    deadline = time.monotonic() + timeout + 0.25
    for name, run in started.items():
        assert run.thread is not None
        run.thread.join(max(0.0, deadline - time.monotonic()))
        results[name] = run.result or _verdict(
            False, f"no answer within {timeout:g} s", (time.monotonic() - run.started) * 1000
        )
    return {name: results[name] for name in CHECKS}


# --- the two URLs ----------------------------------------------------------------------


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


def readyz(request: HttpRequest) -> HttpResponse:
    checks = run_checks()
    ok = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "fail", "checks": checks},
        status=200 if ok else 503,
        headers={"Cache-Control": "no-store"},
    )


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/healthz/": healthz,
    "/readyz": readyz,
    "/readyz/": readyz,
}


class ProbeMiddleware:
    """Answers /healthz and /readyz itself; every other request goes down the chain."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"error": "Use GET."}, status=405, headers={"Allow": "GET, HEAD"})
        return probe(request)
