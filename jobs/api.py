"""Putting jobs on queues: `enqueue(name, **kwargs)` for views, services and operators.

- The name must be registered and the arguments must fit the job's signature and be
  JSON (str, int, finite float, bool, None, and lists / str-keyed dicts of them).
- Inside a transaction the job is pushed when it commits (a rollback enqueues nothing);
  the job id is chosen up front, so the caller gets it either way.
- `dedup_key`: while a job enqueued with the same name and key is queued, scheduled
  for a retry or running, enqueueing again returns that job's id instead of a new job.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis import Redis
from redis.exceptions import WatchError
from rq import Callback, Queue, get_current_job
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from yesgoddess.core.redis import redis_connection

from .registry import JOBS, QUEUES, RESERVED_ARGUMENTS, JobSpec, get_spec
from .rq_classes import JSONJob

EXECUTE = "jobs.runtime.execute"
ON_FAILURE = Callback("jobs.runtime.handle_failure")
ACTIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
DEDUP_PREFIX = "jobs:dedup:"


class JobArgumentError(TypeError):
    """Arguments a job cannot be enqueued with."""


def get_queue(name: str) -> Queue:
    return Queue(name, connection=redis_connection(), job_class=JSONJob, serializer=JSONSerializer)


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise JobArgumentError(f"Argument {path} is {value!r}; JSON has no NaN or infinity.")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JobArgumentError(f"Argument {path} has a non-string key {key!r}.")
            _check_json(item, f"{path}[{key!r}]")
        return
    raise JobArgumentError(
        f"Argument {path} is a {type(value).__name__}; job arguments must be JSON values "
        "(pass ids and primitives, not objects)."
    )


def check_arguments(spec: JobSpec, kwargs: dict[str, Any]) -> None:
    for name, value in kwargs.items():
        _check_json(value, name)
    try:
        inspect.signature(spec.function).bind(**kwargs)
    except TypeError as exc:
        raise JobArgumentError(f"Job {spec.name!r}: {exc}.") from None


class _PendingCommits(threading.local):
    """Dedup markers of jobs waiting for this thread's transaction to commit."""

    def __init__(self) -> None:
        self.job_ids: dict[str, str] = {}


_pending = _PendingCommits()


def _dedup_marker(spec: JobSpec, dedup_key: str) -> str:
    return f"{DEDUP_PREFIX}{spec.name}:{hashlib.sha256(dedup_key.encode()).hexdigest()[:32]}"


def _marker_ttl(spec: JobSpec) -> int:
    # Garbage collection only: the job's status decides whether the marker still holds.
    attempts = 1 + len(spec.retry_intervals)
    return (spec.ttl or 86400) + spec.timeout * attempts + sum(spec.retry_intervals) + 3600


def _is_active(conn: Redis, job_id: str) -> bool:
    if job_id in _pending.job_ids.values():
        return True
    try:
        return JSONJob.fetch(job_id, connection=conn).get_status() in ACTIVE_STATUSES
    except NoSuchJobError:
        return False


def _claim_dedup(conn: Redis, marker: str, new_id: str, ttl: int) -> str | None:
    """Point `marker` at `new_id` unless it points at an active job; return that job's id."""
    for _ in range(5):
        if conn.set(marker, new_id, nx=True, ex=ttl):
            return None
        current = conn.get(marker)
        if current is None:
            continue
        current_id = current.decode()
        if _is_active(conn, current_id):
            return current_id
        # Stale marker (job finished, failed for good, or expired): replace it, unless
        # another process replaced it first.
        with conn.pipeline() as pipe:
            pipe.watch(marker)
            if pipe.get(marker) == current:
                pipe.multi()
                pipe.set(marker, new_id, ex=ttl)
                try:
                    pipe.execute()
                    return None
                except WatchError:  # lost the race: look again
                    continue
    raise RuntimeError(f"Could not settle dedup marker {marker} after 5 attempts.")


def _push(
    spec: JobSpec,
    kwargs: dict[str, Any],
    job_id: str,
    depends_on: list[str] | None,
    delay: float | None,
    meta: dict[str, Any] | None = None,
) -> None:
    queue = get_queue(spec.queue)
    options: dict[str, Any] = {
        "timeout": spec.timeout,
        "result_ttl": spec.result_ttl if spec.result_ttl is not None else settings.JOB_DEFAULT_RESULT_TTL,
        "failure_ttl": spec.failure_ttl if spec.failure_ttl is not None else settings.JOB_DEFAULT_FAILURE_TTL,
        "ttl": spec.ttl,
        "description": f"{spec.name} {json.dumps(kwargs, sort_keys=True)[:200]}",
        "job_id": job_id,
        "retry": spec.retry,
        "on_failure": ON_FAILURE,
        # Dependents run once their dependencies have ended, whatever the outcome: a job
        # that depends on others checks the state it needs itself, and is never left
        # deferred forever because a dependency failed.
        "depends_on": Dependency(jobs=depends_on, allow_failure=True) if depends_on else None,
        "meta": {**(meta or {}), "job_name": spec.name},
    }
    if delay:
        job = queue.create_job(EXECUTE, args=(spec.name,), kwargs=kwargs, **options)
        queue.schedule_job(job, timezone.now() + timedelta(seconds=delay))
    else:
        queue.enqueue_call(EXECUTE, args=(spec.name,), kwargs=kwargs, **options)
    _index_by_object(job_id, kwargs, keep_seconds=max(options["result_ttl"], options["failure_ttl"]))


def submit(
    spec: JobSpec,
    kwargs: dict[str, Any],
    *,
    dedup_key: str | None = None,
    depends_on: list[str] | None = None,
    delay: float | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[str, bool]:
    """Enqueue `spec` (after commit); return (job id, whether a new job was created).
    `meta`: JSON values stored in the job's meta (the framework's own tags)."""
    check_arguments(spec, kwargs)
    in_transaction = transaction.get_connection().in_atomic_block
    if not in_transaction:
        _pending.job_ids.clear()  # whatever was pending has committed or rolled back
    job_id = uuid.uuid4().hex
    marker = None
    if dedup_key is not None:
        conn = redis_connection()
        marker = _dedup_marker(spec, dedup_key)
        existing = _claim_dedup(conn, marker, job_id, _marker_ttl(spec))
        if existing is not None:
            return existing, False
    if not in_transaction:
        _push(spec, kwargs, job_id, depends_on, delay, meta)
        return job_id, True

    def push_after_commit() -> None:
        if marker is not None:
            _pending.job_ids.pop(marker, None)
        _push(spec, kwargs, job_id, depends_on, delay, meta)

    if marker is not None:
        _pending.job_ids[marker] = job_id
    transaction.on_commit(push_after_commit)
    return job_id, True


def enqueue(
    name: str,
    /,
    *,
    dedup_key: str | None = None,
    depends_on: list[str] | None = None,
    delay: float | None = None,
    **kwargs: Any,
) -> str:
    """Enqueue registered job `name` with keyword arguments `kwargs`; return its job id.

    `depends_on`: job ids that must finish first. `delay`: seconds to wait before it runs.
    """
    return submit(get_spec(name), kwargs, dedup_key=dedup_key, depends_on=depends_on, delay=delay)[0]


def reserved_argument_clashes() -> list[str]:
    """Registered jobs whose parameters shadow enqueue()'s own options (a test checks none)."""
    return [
        f"{spec.name}.{param}"
        for spec in JOBS.values()
        for param in inspect.signature(spec.function).parameters
        if param in RESERVED_ARGUMENTS
    ]


# Compare-and-delete: drop a dedup marker only if it still names the given job.
_RELEASE_MARKER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def job_active(name: str, dedup_key: str) -> bool:
    """Whether the job last enqueued as `name` with `dedup_key` is queued, scheduled or
    running (what `enqueue` would answer with instead of queueing a new one)."""
    conn = redis_connection()
    current = conn.get(_dedup_marker(get_spec(name), dedup_key))
    return current is not None and _is_active(conn, current.decode())


def release_own_dedup(name: str, dedup_key: str) -> None:
    """Inside a running job: drop its own dedup marker for `dedup_key` (if it still names
    this job), so that the next `enqueue(name, dedup_key=...)` queues a new run instead
    of answering with this one. For self-continuing jobs and flushes."""
    job = get_current_job()
    if job is not None:
        redis_connection().eval(_RELEASE_MARKER, 1, _dedup_marker(get_spec(name), dedup_key), job.id)


# --- jobs by object: what ran for asset 5 -----------------------------------------------
# Every pushed job is filed under each `<name>_id` argument it carries (a sorted set per
# argument and value, newest first, the last OBJECT_INDEX_KEEP kept), so an admin page can
# show an object's jobs and their state without walking RQ's registries.
OBJECT_INDEX_PREFIX = "jobs:by-arg:"
OBJECT_INDEX_KEEP = 50


def _object_index_key(argument: str, value: int | str) -> str:
    return f"{OBJECT_INDEX_PREFIX}{argument}:{value}"


def object_arguments(kwargs: dict[str, Any]) -> dict[str, int | str]:
    """The arguments of a job that name an object: `<name>_id` with an int or str value."""
    return {
        name: value
        for name, value in kwargs.items()
        if name.endswith("_id") and isinstance(value, (int, str)) and not isinstance(value, bool)
    }


def _index_by_object(job_id: str, kwargs: dict[str, Any], keep_seconds: int) -> None:
    objects = object_arguments(kwargs)
    if not objects:
        return
    now = time.time()
    with redis_connection().pipeline(transaction=False) as pipe:
        for argument, value in objects.items():
            key = _object_index_key(argument, value)
            pipe.zadd(key, {job_id: now})
            pipe.zremrangebyrank(key, 0, -OBJECT_INDEX_KEEP - 1)
            # The index outlives the jobs filed in it (failed jobs are kept the longest).
            pipe.expire(key, max(keep_seconds, settings.JOB_DEFAULT_FAILURE_TTL))
        pipe.execute()


@dataclass(frozen=True)
class JobSummary:
    """One job as an operator sees it: what, where, how it stands, and why it failed."""

    id: str
    name: str | None
    queue: str
    status: str
    kwargs: dict[str, Any]
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str | None  # the last line of the traceback of a failed job
    progress: dict[str, Any] | None


def summarize(job: JSONJob) -> JobSummary:
    raw_status = job.get_status(refresh=False)
    status = str(getattr(raw_status, "value", raw_status) or "unknown")
    error = None
    if status == JobStatus.FAILED:
        result = job.latest_result()
        text = (result.exc_string if result is not None else None) or job.exc_info or ""
        lines = text.strip().splitlines()
        error = lines[-1] if lines else None
    return JobSummary(
        id=job.id,
        name=job.meta.get("job_name"),
        queue=job.origin,
        status=status,
        kwargs=dict(job.kwargs or {}),
        enqueued_at=job.enqueued_at,
        ended_at=job.ended_at,
        error=error,
        progress=job.meta.get("progress"),
    )


def jobs_for(argument: str, value: int | str, limit: int = 20) -> list[JobSummary]:
    """The latest jobs (newest first) enqueued with `argument=value`, e.g. ("asset_id", 5),
    that RQ still keeps. Read-only: a few Redis round trips whatever the queue sizes."""
    conn = redis_connection()
    ids = [raw.decode() for raw in conn.zrevrange(_object_index_key(argument, value), 0, limit - 1)]
    jobs = JSONJob.fetch_many(ids, connection=conn, serializer=JSONSerializer) if ids else []
    return [summarize(job) for job in jobs if job is not None]


def failed_jobs_by_name() -> dict[str, dict[str, Any]]:
    """Failed jobs still kept by RQ, per job name: {name: {"queue", "count", "latest_error",
    "registered"}}. Reads every failed job of every queue (failed registries stay small: a
    job leaves after its failure TTL or when requeued), and one error per name."""
    summary: dict[str, dict[str, Any]] = {}
    latest: dict[str, JSONJob] = {}
    conn = redis_connection()
    for queue_name in QUEUES:
        registry = FailedJobRegistry(queue_name, connection=conn, job_class=JSONJob, serializer=JSONSerializer)
        ids = registry.get_job_ids()
        for job in JSONJob.fetch_many(ids, connection=conn, serializer=JSONSerializer) if ids else []:
            if job is None:
                continue
            # A job not enqueued through `submit` (a cron entry's dispatcher) goes by its function.
            name = job.meta.get("job_name") or job.func_name
            entry = summary.setdefault(name, {"queue": queue_name, "count": 0, "registered": name in JOBS})
            entry["count"] += 1
            newest = latest.get(name)
            if newest is None or (job.ended_at and (newest.ended_at is None or job.ended_at > newest.ended_at)):
                latest[name] = job
    for name, job in latest.items():
        summary[name]["latest_error"] = summarize(job).error
    return dict(sorted(summary.items()))


def requeue_failed(name: str) -> list[str]:
    """Put every failed job of registered job `name` back on its queue, as it was (same id,
    arguments and dedup marker); return their ids. Jobs of other names are left alone."""
    spec = get_spec(name)
    conn = redis_connection()
    registry = FailedJobRegistry(spec.queue, connection=conn, job_class=JSONJob, serializer=JSONSerializer)
    requeued = []
    ids = registry.get_job_ids()
    for job in JSONJob.fetch_many(ids, connection=conn, serializer=JSONSerializer) if ids else []:
        if job is None or job.meta.get("job_name") != spec.name:
            continue
        try:
            registry.requeue(job)
        except InvalidJobOperation:  # requeued or deleted by someone else meanwhile
            continue
        requeued.append(job.id)
    return requeued
