"""schedule_jobs reconciles rq-scheduler with jobs/schedule.py, idempotently."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import django_rq
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from jobs import scheduling
from jobs.api import get_queue, redis_connection
from jobs.rq_classes import JSONJob
from jobs.schedule import ENTRY_PREFIX, SCHEDULE, CronEntry
from yesgoddess.core.models import IdempotencyKey

from .conftest import ROOT, manage, worker_env

SCHEDULED = "rq:scheduler:scheduled_jobs"


def entries() -> dict[str, datetime]:
    """Scheduler entries: id -> next run (UTC)."""
    return {
        member.decode(): datetime.fromtimestamp(score, UTC)
        for member, score in redis_connection().zrange(SCHEDULED, 0, -1, withscores=True)
    }


def owned() -> dict[str, datetime]:
    return {k: v for k, v in entries().items() if k.startswith(ENTRY_PREFIX)}


def table_ids(table=SCHEDULE) -> set[str]:
    return {ENTRY_PREFIX + e.id for e in table}


def run(*args: str) -> str:
    out = StringIO()
    call_command("schedule_jobs", *args, stdout=out)
    return out.getvalue()


def test_first_run_creates_one_entry_per_row_and_second_run_changes_nothing():
    assert f"create {len(SCHEDULE)}" in run()
    first = owned()
    assert set(first) == table_ids()
    assert f"keep {len(SCHEDULE)}" in run()
    assert owned() == first


def test_concurrent_runs_leave_exactly_one_entry_per_row():
    env = worker_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "schedule_jobs"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    threads = [threading.Thread(target=scheduling.reconcile) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    members = [m.decode() for m in redis_connection().zrange(SCHEDULED, 0, -1)]
    assert sorted(members) == sorted(table_ids())


def test_a_table_change_replaces_removes_and_creates_and_leaves_foreign_entries(monkeypatch):
    run()
    foreign = django_rq.get_scheduler("default").cron(
        "*/5 * * * *", func="jobs.handlers.system.ping", id="someone-else"
    )
    kept, changed = SCHEDULE[0], SCHEDULE[1]
    new_table = (
        kept,
        CronEntry(changed.id, "30 4 * * *", changed.job, "moved"),
        CronEntry("extra-ping", "*/10 * * * *", "ping", "added"),
    )
    before = owned()
    monkeypatch.setattr(scheduling, "SCHEDULE", new_table)
    out = run()
    assert f"replace  {changed.id}" in out and "create   extra-ping" in out
    after = owned()
    assert set(after) == table_ids(new_table)
    assert after[ENTRY_PREFIX + kept.id] == before[ENTRY_PREFIX + kept.id]  # untouched
    moved = after[ENTRY_PREFIX + changed.id]
    assert (moved.hour, moved.minute) == (4, 30)
    assert foreign.id in entries()

    monkeypatch.setattr(scheduling, "SCHEDULE", (kept,))
    assert "remove   extra-ping" in run()
    assert set(owned()) == {ENTRY_PREFIX + kept.id}
    assert not redis_connection().exists(f"rq:job:{ENTRY_PREFIX}extra-ping")
    assert foreign.id in entries()


def test_dry_run_changes_nothing():
    out = run("--dry-run")
    assert f"would create {len(SCHEDULE)}" in out
    assert owned() == {}


def test_list_prints_id_cron_job_queue_and_next_run():
    run()
    out = run("--list")
    for entry in SCHEDULE:
        line = next(line for line in out.splitlines() if line.startswith(entry.id))
        assert entry.cron in line and entry.job in line and "scheduled" in line
        assert f"{owned()[entry.scheduler_id]:%Y-%m-%d %H:%M}" in line


def test_nine_am_entry_is_due_at_nine_utc(monkeypatch):
    monkeypatch.setattr(scheduling, "SCHEDULE", (CronEntry("nine", "0 9 * * *", "ping", "09:00 UTC"),))
    run()
    due = owned()[ENTRY_PREFIX + "nine"]
    now = datetime.now(UTC)
    assert (due.hour, due.minute, due.second) == (9, 0, 0)
    assert now < due <= now + timedelta(days=1)


def test_cron_times_stay_utc_whatever_the_machine_time_zone():
    env = worker_env()
    env["TZ"] = "America/New_York"
    result = manage("schedule_jobs", env=env)
    assert result.returncode == 0, result.stderr
    due = owned()[ENTRY_PREFIX + "notification-cleanup"]  # "0 3 * * *"
    assert (due.hour, due.minute) == (3, 0)


@pytest.mark.django_db(transaction=True)
def test_a_due_entry_runs_its_job_through_scheduler_and_worker(run_worker):
    user = get_user_model().objects.create(username="cron")
    IdempotencyKey.objects.create(user=user, key="x", entity_type="job", expires_at=timezone.now() - timedelta(hours=1))
    run()
    entry_id = ENTRY_PREFIX + "idempotency-cleanup"
    redis_connection().zadd(SCHEDULED, {entry_id: time.time() - 1})  # make it due now

    # The same scheduler class `manage.py rqscheduler` runs.
    django_rq.get_scheduler("scheduled").enqueue_jobs()
    assert entry_id in get_queue("scheduled").get_job_ids()
    run_worker("scheduled")

    assert IdempotencyKey.objects.count() == 0
    dispatch = JSONJob.fetch(entry_id, connection=redis_connection())
    result = dispatch.return_value()
    assert result["enqueued"] is True
    real = JSONJob.fetch(result["job_id"], connection=redis_connection())
    assert real.return_value()["deleted"] == 1
    assert redis_connection().ttl(f"rq:job:{real.id}") > 0  # a real run's result expires
    assert redis_connection().ttl(f"rq:job:{entry_id}") == -1  # the entry itself persists
    assert owned()[entry_id] > datetime.now(UTC)  # rescheduled for its next slot


def test_a_cron_run_is_not_doubled_while_the_previous_one_is_still_queued():
    from jobs.runtime import dispatch_scheduled

    first = dispatch_scheduled("ping", {}, "ping-entry")
    second = dispatch_scheduled("ping", {}, "ping-entry")
    assert first["enqueued"] and not second["enqueued"]
    assert second["job_id"] == first["job_id"]
    assert get_queue("default").get_job_ids() == [first["job_id"]]
