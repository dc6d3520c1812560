"""Each cron entry's last run is recorded in PostgreSQL (jobs.models.CronRun): start,
outcome, duration and the last success, through a real worker."""

from __future__ import annotations

import pytest

from jobs.api import enqueue
from jobs.cron_runs import last_runs
from jobs.models import CronRun
from jobs.runtime import dispatch_scheduled

from .conftest import SIMPLE

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_cron_run_records_its_start_outcome_and_duration(run_worker):
    dispatched = dispatch_scheduled("ping", {}, "ping-every-minute")
    run_worker("default", worker_class=SIMPLE)
    run = CronRun.objects.get(entry_id="ping-every-minute")
    assert run.job_id == dispatched["job_id"] and run.outcome == CronRun.Outcome.OK
    assert run.started_at <= run.finished_at and run.duration_ms is not None
    assert run.last_success_at == run.finished_at


def test_a_failed_cron_run_keeps_the_last_success(run_worker):
    dispatch_scheduled("ping", {}, "flaky")
    run_worker("default", worker_class=SIMPLE)
    success = CronRun.objects.get(entry_id="flaky").last_success_at
    dispatch_scheduled("test-always-fail", {"user_id": 1}, "flaky")
    run_worker("default", worker_class=SIMPLE)
    run = CronRun.objects.get(entry_id="flaky")
    assert run.outcome in (CronRun.Outcome.FAILED, CronRun.Outcome.FAILED_WILL_RETRY)
    assert run.last_success_at == success and run.finished_at > success


def test_jobs_not_started_by_cron_record_nothing(run_worker):
    enqueue("ping")
    run_worker("default", worker_class=SIMPLE)
    assert last_runs() == {}
