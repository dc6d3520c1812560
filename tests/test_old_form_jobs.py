"""Jobs queued and cron entries written before a deploy still run after it (issue 18).

Redis stores only framework paths (`jobs.runtime.execute`, `jobs.runtime.dispatch_scheduled`,
`jobs.runtime.handle_failure`) and registry names, never a job function's module, so
moving job functions between modules cannot strand what is already in Redis. The fixture
holds the Redis keys exactly as main wrote them before the job functions moved to
`jobs/handlers/` (see its `_about`); this test restores them and lets today's worker and
scheduler run them.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from rq.job import JobStatus

from jobs.rq_classes import JSONJob
from jobs.scheduling import get_scheduler
from yesgoddess.accounts.models import VerificationToken
from yesgoddess.core.redis import redis_connection

from .conftest import ROOT, SIMPLE
from .license_factories import make_user

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "old_form_jobs.json").read_text())


def restore_old_redis() -> None:
    conn = redis_connection()
    for key, item in FIXTURE["keys"].items():
        conn.restore(key, 0, base64.b64decode(item["dump"]), replace=True)


def fetch(job_id: str) -> JSONJob:
    return JSONJob.fetch(job_id, connection=redis_connection())


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_before_the_move_runs_its_moved_handler(run_worker):
    restore_old_redis()
    user = make_user()
    VerificationToken.objects.create(user=user, token_hash="old", expires=timezone.now() - timedelta(minutes=1))
    VerificationToken.objects.create(user=user, token_hash="live", expires=timezone.now() + timedelta(hours=1))
    queued = fetch(FIXTURE["queued_job_id"])
    assert queued.func_name == "jobs.runtime.execute" and queued.args == ["token-cleanup"]

    run_worker("scheduled", worker_class=SIMPLE)

    queued = fetch(FIXTURE["queued_job_id"])
    assert queued.get_status() == JobStatus.FINISHED, queued.latest_result()
    assert queued.return_value()["verification_tokens"] == 1
    assert list(VerificationToken.objects.values_list("token_hash", flat=True)) == ["live"]


@pytest.mark.django_db(transaction=True)
def test_a_cron_entry_written_before_the_move_dispatches_the_moved_handler(run_worker):
    restore_old_redis()
    redis_connection().delete(f"rq:job:{FIXTURE['queued_job_id']}", "rq:queue:scheduled")
    scheduler = get_scheduler()
    entry = fetch(FIXTURE["cron_job_id"])
    assert entry.func_name == "jobs.runtime.dispatch_scheduled" and entry.args[0] == "token-cleanup"

    scheduler.enqueue_job(entry)  # what rq-scheduler does when the entry's time comes
    run_worker("scheduled", worker_class=SIMPLE)

    dispatched = fetch(FIXTURE["cron_job_id"])
    assert dispatched.get_status() == JobStatus.FINISHED, dispatched.latest_result()
    spawned = fetch(dispatched.return_value()["job_id"])
    assert spawned.get_status() == JobStatus.FINISHED, spawned.latest_result()
    assert spawned.return_value()["deleted"] == 0
    # the entry is still in the cron table for its next run
    assert FIXTURE["cron_job_id"] in {job.id for job in scheduler.get_jobs()}
