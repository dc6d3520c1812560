"""RQ classes configured in settings.RQ: JSON everywhere, Django connection hygiene.

- JSONJob always uses RQ's JSON serializer. rq-scheduler fetches jobs with the job class
  and no serializer, so forcing it here is what keeps the scheduler, the workers and
  the admin panel reading the same format.
- The workers take their heartbeat and maintenance intervals from settings so that a job
  abandoned by a killed worker is found within two minutes (RQ's defaults: ten).
- DjangoWorker (forking) closes the parent's database connections before every fork,
  so that no work horse inherits, and later closes, a socket the parent also uses.
- Both import every job function once at start (otherwise each work horse imports them
  again and throws the work away when it exits) and freeze the heap (see _settle_heap).
- Both name the job they perform in logs and error reports (_NamedJobs).
- IndexedScheduler (settings.RQ SCHEDULER_CLASS) lists every running rq-scheduler in
  one Redis set, where /readyz looks for their heartbeats.
"""

from __future__ import annotations

import gc
from typing import Any

from django.conf import settings
from django.db import connections
from django_rq.queues import DjangoScheduler
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, Worker

from yesgoddess.core.health import SCHEDULER_INDEX_KEY

from .telemetry import worker_job_context


class JSONJob(Job):
    def __init__(self, id: str | None = None, connection: Any = None, serializer: Any = None) -> None:
        super().__init__(id=id, connection=connection, serializer=JSONSerializer)


def _worker_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs["serializer"] = JSONSerializer
    kwargs["job_class"] = JSONJob
    # django-rq's rqworker always passes --worker-ttl, defaulting to RQ's 420 s: treat
    # that default as "not chosen", or settings.RQ_WORKER_TTL would never apply.
    if kwargs.get("worker_ttl") in (None, DEFAULT_WORKER_TTL):
        kwargs["worker_ttl"] = settings.RQ_WORKER_TTL
    kwargs.setdefault("maintenance_interval", settings.RQ_MAINTENANCE_INTERVAL)
    kwargs.setdefault("job_monitoring_interval", settings.RQ_JOB_MONITORING_INTERVAL)
    return kwargs


def _preload_jobs() -> None:
    from . import runtime
    from .registry import JOBS

    for spec in JOBS.values():
        spec.function  # noqa: B018 (resolving the cached property imports the module)
        spec.failure_hook  # noqa: B018
    del runtime


def _settle_heap() -> None:
    """Import every job now, then move what exists to the GC's permanent generation.

    A Django process holds far more long-lived objects than a bare RQ worker; without
    this, every full collection walks them all again (and in a work horse, touching them
    copies their pages). Measured in bench/job_overhead.py."""
    _preload_jobs()
    gc.collect()
    gc.freeze()


class _NamedJobs:
    """RQ's own lines about a job ("Job OK", the traceback of a failure) and the cron
    dispatcher's carry the job's name and id too (jobs/telemetry.py)."""

    def perform_job(self, job: Job, queue: Any) -> bool:
        with worker_job_context(job):
            return super().perform_job(job, queue)  # type: ignore[misc]


class DjangoWorker(_NamedJobs, Worker):
    """RQ's forking worker: each job in a fresh child process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_worker_options(kwargs))
        _settle_heap()

    def fork_work_horse(self, job: Job, queue: Any) -> None:
        # The parent may have opened a connection (a failure callback during registry
        # maintenance, say); the child must not inherit it.
        connections.close_all()
        super().fork_work_horse(job, queue)


class DjangoSimpleWorker(_NamedJobs, SimpleWorker):
    """Runs jobs in the worker process itself; jobs/runtime.py closes connections per job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_worker_options(kwargs))
        _settle_heap()


class IndexedScheduler(DjangoScheduler):
    """rq-scheduler (what `manage.py rqscheduler` runs) that also lists its instance id in
    one Redis set, so /readyz finds its heartbeat key without scanning the keyspace."""

    def register_birth(self) -> None:
        super().register_birth()
        self.connection.sadd(SCHEDULER_INDEX_KEY, self.name)

    def heartbeat(self) -> None:
        # rq-scheduler's heartbeat is an EXPIRE, which cannot bring back a key that expired
        # while the scheduler stalled (a long enqueue pass, a paused machine): that
        # scheduler would look dead for good. Register it again instead, and re-add the
        # id, which /readyz drops from the set once it sees the key gone.
        if not self.connection.expire(self.key, int(self._interval) + 10):
            self.register_birth()
        self.connection.sadd(SCHEDULER_INDEX_KEY, self.name)

    def register_death(self) -> None:
        super().register_death()
        self.connection.srem(SCHEDULER_INDEX_KEY, self.name)
