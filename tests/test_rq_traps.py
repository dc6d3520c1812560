"""The libraries' known traps (issue trackers of rq, rq-scheduler, django-rq).

Each trap has a test; the ones that need workers or the scheduler live with their
subject and are named here:
- rq-scheduler reads cron strings in local time: test_schedule_jobs.py
  (test_nine_am_entry_is_due_at_nine_utc, test_cron_times_stay_utc_whatever_the_machine_time_zone)
- django-rq's on_db_commit returns None inside a transaction: test_enqueue.py
  (test_inside_a_transaction_the_job_waits_for_the_commit_and_keeps_its_id)
- a forked job inheriting the parent's connection: test_workers.py
  (test_forking_worker_runs_database_jobs_back_to_back, test_worker_survives_postgres_dropping_its_connection)
- a killed worker's job must be found, not lost: test_workers.py
  (test_a_worker_killed_mid_job_leaves_it_visible_and_requeueable) and bench/abandoned_job.py
- cron() keeps results forever: test_schedule_jobs.py
  (test_a_due_entry_runs_its_job_through_scheduler_and_worker)
"""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from django.conf import settings

from jobs.api import enqueue
from jobs.schedule import SCHEDULE

RQ_JOB_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # rq >= 2.8 refuses anything else (no ':')


def test_the_tested_combination_is_what_is_installed():
    # Neither django-rq nor rq-scheduler caps rq and rq 3.0 changed behaviour: upgrading
    # any of the three must be a decision, made with this suite green.
    assert version("rq").startswith("2.12.")
    assert version("rq-scheduler") == "0.14.0"
    assert version("django-rq").startswith("4.2.")


def test_every_job_id_we_make_is_a_valid_rq_id(db):
    assert RQ_JOB_ID.match(enqueue("ping"))
    assert RQ_JOB_ID.match(enqueue("ping", dedup_key="asset:7/with odd chars"))
    for entry in SCHEDULE:
        assert RQ_JOB_ID.match(entry.scheduler_id), entry.id


def test_process_time_zone_is_utc():
    import time

    assert settings.TIME_ZONE == "UTC"
    assert time.strftime("%Z") in ("UTC", "GMT")


def test_rq_settings_make_abandoned_jobs_visible_within_two_minutes():
    # started-registry entry expires monitoring interval + 60 s after the last heartbeat;
    # an idle worker looks every max(maintenance interval, dequeue timeout = TTL - 15).
    worst = (
        settings.RQ_JOB_MONITORING_INTERVAL + 60 + max(settings.RQ_MAINTENANCE_INTERVAL, settings.RQ_WORKER_TTL - 15)
    )
    assert worst < 120, worst


@pytest.mark.parametrize("name", ["critical", "default", "media", "scheduled", "bulk"])
def test_every_queue_uses_the_json_serializer(name):
    from django_rq import get_queue

    assert get_queue(name).serializer.__name__ == "JSONSerializer"
