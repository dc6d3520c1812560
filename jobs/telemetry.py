"""Which job a log line or an error report belongs to.

Every RQ job's function is the runtime wrapper (`jobs.runtime.execute`), so neither the
logs nor Sentry can tell two jobs apart by it. `job_context` names the job: log lines
get `job` and `job_id` (yesgoddess/core/logs.py), Sentry events get the tags `job` and
`job_id` and the job's name as transaction; yesgoddess/core/sentry.py groups tagged
events per job. The runtime enters it around each run, the workers around RQ's own
handling of a job (its "Job OK" and traceback lines, the cron dispatcher).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sentry_sdk
from rq.job import Job

from yesgoddess.core.logs import job_fields

DISPATCH = "jobs.runtime.dispatch_scheduled"


@contextmanager
def job_context(job_name: str, job_id: str) -> Iterator[None]:
    # Under a worker, RQ's Sentry integration gives each job a scope of its own, so the
    # tags end with the job; run inline, they stay until the next job replaces them.
    scope = sentry_sdk.get_current_scope()
    scope.set_tag("job", job_name)
    scope.set_tag("job_id", job_id)
    scope.set_transaction_name(job_name, source="task")
    with job_fields(job_name, job_id):
        yield


@contextmanager
def worker_job_context(job: Job) -> Iterator[None]:
    """Around a worker's handling of `job`: its own Sentry isolation scope, emptied of
    what came before (breadcrumbs of the previous jobs of a SimpleWorker, or the forking
    worker's own lines), then `job_context`."""
    with sentry_sdk.isolation_scope() as scope:
        scope.clear_breadcrumbs()
        with job_context(job_name(job), job.id):
            yield


def job_name(job: Job) -> str:
    """The registry name of an RQ job (`cron:<entry>` for a cron entry's dispatcher)."""
    name = job.meta.get("job_name")
    if isinstance(name, str):
        return name
    if job.func_name == DISPATCH and len(job.args) == 3:
        return f"cron:{job.args[2]}"
    return job.func_name
