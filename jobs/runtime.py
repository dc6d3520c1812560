"""The one wrapper every job runs inside, and the hooks RQ calls around it.

A queued job is `execute(name, **kwargs)`: it resolves the registry entry, checks the
database connections, runs the job function, writes one summary log line, records the
run's metrics (jobs/metrics.py), and closes the connections again. Cross-cutting work
lives here and only here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from django.db import connections
from django.utils import timezone
from rq import get_current_job
from rq.job import Job

from yesgoddess.core.errors import InvalidInput

from . import alerts, cron_runs, metrics, telemetry
from .errors import JobInputError
from .registry import JOBS, get_spec

log = logging.getLogger(__name__)


def close_old_connections() -> None:
    """Django's close_old_connections, except for a connection inside a transaction the
    caller opened (a job run inline from a test or a shell must not end its transaction)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _counts(result: object) -> str:
    if not isinstance(result, Mapping):
        return ""
    return " ".join(f"{key}={value}" for key, value in result.items() if isinstance(value, (int, float, str)))


def execute(job_name: str, /, **kwargs: Any) -> Any:
    """Run registered job `job_name` with `kwargs` (what RQ calls for every job)."""
    job = get_current_job()
    # Every line logged and every error reported from here on names the job.
    with telemetry.job_context(job_name, job.id if job is not None else "inline"):
        return _run(job_name, job, **kwargs)


def _run(job_name: str, job: Job | None, /, **kwargs: Any) -> Any:
    spec = get_spec(job_name)
    job_id = job.id if job is not None else "inline"
    # Drop connections PostgreSQL closed while the worker idled (SimpleWorker reuses them).
    close_old_connections()
    started = time.monotonic()
    outcome = "failed"
    result: Any = None
    cron_entry = job.meta.get(cron_runs.META_KEY) if job is not None else None
    if cron_entry:
        cron_runs.run_started(cron_entry, job_id, timezone.now())
    try:
        result = spec.function(**kwargs)
        outcome = "ok"
        return result
    except InvalidInput as exc:
        outcome = "rejected"
        if job is not None:
            # Retrying cannot fix bad input: fail once (RQ reads this before retrying).
            job.retries_left = 0
        if isinstance(exc, JobInputError):
            raise
        raise JobInputError(str(exc)) from exc
    except Exception:
        if job is not None and job.retries_left:
            outcome = "failed-will-retry"
        raise
    finally:
        duration_ms = (time.monotonic() - started) * 1000
        metrics.record_run(job_name, outcome, duration_ms / 1000, metrics.queue_wait_seconds(job))
        if cron_entry:
            cron_runs.run_ended(cron_entry, job_id, outcome, round(duration_ms), timezone.now())
        close_old_connections()
        log.info(
            "job=%s id=%s outcome=%s duration_ms=%.1f %s",
            job_name,
            job_id,
            outcome,
            duration_ms,
            _counts(result),
        )


def handle_failure(job: Job, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ's on_failure callback: on the final failure only, call the job's failure hook
    and tell the admins (jobs/alerts.py; throttled per job name by the domain).

    RQ calls it on every failed attempt, and also for a job found abandoned by a killed
    worker; `retries_left` tells whether RQ will run the job again.
    """
    if job.retries_left:
        return
    job_name = job.args[0] if job.args else None
    spec = JOBS.get(job_name) if isinstance(job_name, str) else None
    error = f"{exc_type.__name__}: {exc_value}" if exc_value is not None else exc_type.__name__
    close_old_connections()
    try:
        if spec is not None and spec.failure_hook is not None:
            spec.failure_hook(dict(job.kwargs), error, job.id)
            log.warning("job=%s id=%s final failure recorded: %s", job_name, job.id, exc_type.__name__)
    finally:
        # Every final failure reaches the admins (throttled per job name), hook or not.
        alerts.job_failed(telemetry.job_name(job), job.id, error)
        close_old_connections()


def set_progress(done: int, total: int | None = None, note: str = "") -> None:
    """Store the running job's progress in its meta (shown on the admin job page)."""
    job = get_current_job()
    if job is None:
        return
    job.meta["progress"] = {"done": done, "total": total, "note": note, "at": timezone.now().isoformat()}
    job.save_meta()


def dispatch_scheduled(job_name: str, kwargs: dict[str, Any], entry_id: str) -> dict[str, Any]:
    """What a cron entry runs: enqueue the registered job with its own id, retry policy
    and TTLs. Deduplicated per entry, so a run still queued or running is not doubled."""
    job_id, created = cron_runs.dispatch(job_name, kwargs, entry_id)
    if not created:
        log.warning("cron=%s skipped: previous run %s still queued or running", entry_id, job_id)
    return {"job_id": job_id, "enqueued": created}
