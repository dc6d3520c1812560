"""Alerts (issue 23, point 4): a job's final failure reaches the admins, by email and in
app, throttled per job name; a cron entry that stops succeeding alerts once, until it
recovers (the dead-man's switch, `cron-watchdog`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from jobs import alerts, cron_runs
from jobs.api import enqueue, get_queue
from jobs.errors import JobInputError
from jobs.handlers.system import send_job_failure_summary
from jobs.models import CronRun
from jobs.registry import get_spec
from jobs.schedule import SCHEDULE
from yesgoddess.notifications.job_alerts import SUMMARY_JOB, alert_job_failure, send_failure_summary
from yesgoddess.notifications.models import JobFailureAlert, Notification

from .conftest import SIMPLE, manage, worker_env
from .smtp_server import SmtpServer

HOUR = timedelta(hours=1)


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_user(
        username="ops", email="ops@yesgoddess.test", password="x", is_staff=True
    )


@pytest.fixture
def clock(time_machine):
    """A frozen clock at half a minute past the current hour, moved by the tests."""
    start = timezone.now().replace(minute=0, second=30, microsecond=0)
    time_machine.move_to(start, tick=False)
    return start


def run_simple_worker(*queues: str, **env: str) -> None:
    result = manage("rqworker", "--burst", "--worker-class", SIMPLE, *queues, env={**worker_env(), **env})
    assert result.returncode == 0, result.stderr[-3000:]


def admin_alerts(admin, text: str = "") -> list[Notification]:
    return list(Notification.objects.filter(user=admin, title__contains=text).order_by("id"))


def scheduled_summaries() -> list:
    registry = ScheduledJobRegistry(queue=get_queue("default"))
    jobs = [get_queue("default").fetch_job(job_id) for job_id in registry.get_job_ids()]
    return [(job.kwargs, registry.get_scheduled_time(job)) for job in jobs if job.meta.get("job_name") == SUMMARY_JOB]


# --- final failures ----------------------------------------------------------------------


def test_the_first_final_failure_reaches_the_admins_at_once_by_email_and_in_app(admin, clock):
    result = alert_job_failure("royalty-calculation", "job-1", "RuntimeError: ledger locked")

    assert result["messages"] == 1 and result["admins_notified"] == 1
    [note] = admin_alerts(admin)
    assert note.title == "Job failed: royalty-calculation"
    assert "job-1" in note.message and "ledger locked" in note.message
    assert note.metadata == {"job": "royalty-calculation", "job_id": "job-1", "failures": 1}
    [email] = mail.outbox
    assert email.to == ["ops@yesgoddess.test"]
    assert email.subject == "[Jobs] royalty-calculation failed"
    assert "ledger locked" in email.body and "requeue_failed royalty-calculation" in email.body


def test_failures_within_the_hour_are_one_summary_with_their_count(
    admin, clock, time_machine, django_capture_on_commit_callbacks
):
    alert_job_failure("search-index-update", "job-1", "OperationalError: timeout")
    for minutes, job_id in ((10, "job-2"), (20, "job-3"), (59, "job-4")):
        time_machine.move_to(clock + timedelta(minutes=minutes), tick=False)
        with django_capture_on_commit_callbacks(execute=True):
            assert alert_job_failure("search-index-update", job_id, "OperationalError: timeout")["messages"] == 0
    assert len(mail.outbox) == 1 and len(admin_alerts(admin)) == 1
    # One summary job, queued at the first counted failure, due when the hour is over.
    [(kwargs, due)] = scheduled_summaries()
    assert kwargs == {"job_name": "search-index-update"}
    assert abs(due - (clock + HOUR)) < timedelta(seconds=2)

    time_machine.move_to(clock + HOUR, tick=False)
    sent = send_failure_summary("search-index-update")
    assert sent["messages"] == 1 and sent["failures"] == 3
    summary = admin_alerts(admin)[-1]
    assert summary.title == "Job failed 3 times: search-index-update"
    assert "job-4" in summary.message
    assert mail.outbox[-1].subject == "[Jobs] search-index-update failed 3 times"
    # A second run of the summary tells nothing more.
    assert send_failure_summary("search-index-update") == {"messages": 0}
    assert len(mail.outbox) == 2


def test_the_throttle_is_per_job_name(admin, clock):
    alert_job_failure("asset-metadata-extraction", "a", "boom")
    alert_job_failure("license-auto-expiry", "b", "boom")
    assert sorted(n.title for n in admin_alerts(admin)) == [
        "Job failed: asset-metadata-extraction",
        "Job failed: license-auto-expiry",
    ]


def test_a_failure_after_a_quiet_hour_is_told_at_once(admin, clock, time_machine):
    alert_job_failure("token-cleanup", "a", "boom")
    time_machine.move_to(clock + HOUR + timedelta(minutes=1), tick=False)
    assert alert_job_failure("token-cleanup", "b", "boom again")["messages"] == 1
    assert [n.title for n in admin_alerts(admin)] == ["Job failed: token-cleanup"] * 2
    assert scheduled_summaries() == []


def test_a_lost_summary_is_told_by_the_next_failure_after_the_hour(admin, clock, time_machine):
    alert_job_failure("token-cleanup", "a", "boom")
    time_machine.move_to(clock + timedelta(minutes=30), tick=False)
    alert_job_failure("token-cleanup", "b", "boom")  # counted; its summary job never runs
    time_machine.move_to(clock + 2 * HOUR, tick=False)
    result = alert_job_failure("token-cleanup", "c", "boom")
    assert result["messages"] == 1 and result["failures"] == 2
    assert admin_alerts(admin)[-1].title == "Job failed 2 times: token-cleanup"


def test_a_failed_send_is_not_recorded_as_told(admin, clock, settings):
    """The mail server refusing the admin address rolls the alert back (no in-app row, no
    count reset): the next failure tells it."""
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    settings.ADMIN_EMAILS = ["refuse-me@yesgoddess.test"]
    with pytest.raises(Exception, match="no such user"):
        alert_job_failure("token-cleanup", "a", "boom")
    assert admin_alerts(admin) == []
    assert JobFailureAlert.objects.filter(job_name="token-cleanup", last_alert_at__isnull=False).count() == 0

    settings.ADMIN_EMAILS = ["ops@yesgoddess.test"]
    assert alert_job_failure("token-cleanup", "b", "boom")["messages"] == 1
    assert len(admin_alerts(admin)) == 1


def test_the_summary_job_refuses_a_missing_job_name():
    with pytest.raises(JobInputError):
        send_job_failure_summary(job_name="")
    with pytest.raises(JobInputError):
        send_job_failure_summary(job_name=None)  # type: ignore[arg-type]


def test_a_summary_for_a_job_that_never_failed_tells_nothing(db):
    assert send_job_failure_summary(job_name="never-failed") == {"messages": 0}


@pytest.mark.slow
def test_a_final_failure_in_a_worker_reaches_the_admins_by_email_and_in_app(transactional_db):
    """A job with no failure hook of its own: the first failure is told (through a real
    SMTP server), the second one within the hour is counted for the summary."""
    admin = get_user_model().objects.create_user(username="ops", email="ops@yesgoddess.test", is_staff=True)
    with SmtpServer() as smtp:
        first = enqueue("test-fail-no-hook", note="first")
        run_simple_worker("default", **smtp.worker_env())
        assert get_queue("default").fetch_job(first).get_status() == "failed"
        [note] = admin_alerts(admin)
        assert note.title == "Job failed: test-fail-no-hook"
        assert "RuntimeError: failed on purpose first" in note.message and first in note.message
        [email] = smtp.messages
        assert email.rcpt_tos == ["ops@yesgoddess.test"]
        assert email.message["Subject"] == "[Jobs] test-fail-no-hook failed"

        enqueue("test-fail-no-hook", note="second")
        run_simple_worker("default", **smtp.worker_env())
        assert len(admin_alerts(admin)) == 1 and len(smtp.messages) == 1
        assert JobFailureAlert.objects.get(job_name="test-fail-no-hook").unreported == 1
        [(kwargs, _due)] = scheduled_summaries()
        assert kwargs == {"job_name": "test-fail-no-hook"}


# --- the dead-man's switch ---------------------------------------------------------------


def grace(job: str, settings) -> timedelta:
    """How long after a run fires the switch waits for its success: the configured grace,
    plus the job's timeout on every attempt and the waits between attempts."""
    spec = get_spec(job)
    attempts = 1 + len(spec.retry_intervals)
    return timedelta(seconds=settings.CRON_ALERT_GRACE_SECONDS + spec.timeout * attempts + sum(spec.retry_intervals))


def succeed_all(at, but: tuple[str, ...] = ()) -> None:
    """Record a successful run of every cron entry at `at`, except those in `but`."""
    for entry in SCHEDULE:
        if entry.id not in but:
            cron_runs.run_started(entry.id, f"run-{entry.id}", at)
            cron_runs.run_ended(entry.id, f"run-{entry.id}", "ok", 10, at)


def test_an_entry_that_stops_succeeding_alerts_once_until_it_recovers(admin, clock, time_machine, settings):
    # token-cleanup fires hourly on the hour; every entry last succeeded just after `clock`.
    succeed_all(clock)
    limit = grace("token-cleanup", settings)
    # The next run fires at clock + 1 h (less the 30 s past the hour): it is missing only
    # once the grace after it is over.
    next_fire = clock.replace(second=0) + HOUR
    time_machine.move_to(next_fire + limit - timedelta(seconds=1), tick=False)
    succeed_all(timezone.now(), but=("token-cleanup",))
    assert alerts.check_cron_deadlines()["newly_overdue"] == 0

    time_machine.move_to(next_fire + limit + timedelta(seconds=1), tick=False)
    succeed_all(timezone.now(), but=("token-cleanup",))
    counts = alerts.check_cron_deadlines()
    assert counts["newly_overdue"] == 1 and counts["overdue"] == 1
    [note] = admin_alerts(admin, "Cron")
    assert note.title == "Cron entry not running: token-cleanup"
    assert f"due at {next_fire:%Y-%m-%d %H:%M} UTC" in note.message
    assert mail.outbox[-1].subject == "[Cron] token-cleanup has stopped succeeding"

    # Still missing an hour later: told once, not again.
    time_machine.move_to(timezone.now() + HOUR, tick=False)
    succeed_all(timezone.now(), but=("token-cleanup",))
    assert alerts.check_cron_deadlines()["newly_overdue"] == 0
    assert len(admin_alerts(admin, "Cron")) == 1

    # It succeeds again: told once that it recovered, then nothing.
    succeed_all(timezone.now())
    assert alerts.check_cron_deadlines()["recovered"] == 1
    assert admin_alerts(admin, "Cron")[-1].title == "Cron entry recovered: token-cleanup"
    assert alerts.check_cron_deadlines() | {"entries": 0} == {
        "entries": 0,
        "overdue": 0,
        "newly_overdue": 0,
        "recovered": 0,
        "alert_errors": 0,
    }
    assert len(admin_alerts(admin, "Cron")) == 2
    assert CronRun.objects.get(entry_id="token-cleanup").overdue_since is None


def test_entries_that_never_ran_are_judged_from_when_the_switch_first_saw_them(admin, time_machine):
    """A fresh database: nobody is told at once; two days later the entries that never
    ran and fire daily or more often are overdue, the monthly ones (not due since) not."""
    tenth = timezone.now().replace(day=10, hour=12, minute=0, second=30, microsecond=0)
    time_machine.move_to(tenth, tick=False)
    assert alerts.check_cron_deadlines()["newly_overdue"] == 0
    assert CronRun.objects.filter(watched_since=tenth).count() == len(SCHEDULE)

    time_machine.move_to(tenth + timedelta(days=2), tick=False)
    alerts.check_cron_deadlines()
    overdue = {run.entry_id for run in CronRun.objects.filter(overdue_since__isnull=False)}
    assert {"account-deletion", "token-cleanup", "cron-watchdog", "scheduled-blog-publishing"} <= overdue
    assert not overdue & {"creator-monthly-report", "metrics-aggregation-monthly", "brand-data-cleanup"}
    assert len(admin_alerts(admin, "Cron entry not running")) == len(overdue)


def test_a_failed_cron_alert_is_tried_again_at_the_next_check(admin, clock, time_machine, settings):
    succeed_all(clock)
    time_machine.move_to(clock + timedelta(days=1), tick=False)
    succeed_all(timezone.now(), but=("token-cleanup",))
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    settings.ADMIN_EMAILS = ["refuse-me@yesgoddess.test"]
    assert alerts.check_cron_deadlines()["alert_errors"] == 1
    assert admin_alerts(admin, "Cron") == []

    settings.ADMIN_EMAILS = ["ops@yesgoddess.test"]
    assert alerts.check_cron_deadlines()["newly_overdue"] == 1
    assert [n.title for n in admin_alerts(admin, "Cron")] == ["Cron entry not running: token-cleanup"]


@pytest.mark.slow
def test_the_watchdog_job_alerts_once_through_a_worker(transactional_db):
    admin = get_user_model().objects.create_user(username="ops", email="ops@yesgoddess.test", is_staff=True)
    now = timezone.now()
    succeed_all(now, but=("token-cleanup",))
    cron_runs.run_started("token-cleanup", "old-run", now - timedelta(days=1))
    cron_runs.run_ended("token-cleanup", "old-run", "ok", 10, now - timedelta(days=1))
    for _ in range(2):
        enqueue("cron-watchdog")
        run_simple_worker("scheduled")
    assert [n.title for n in admin_alerts(admin, "Cron")] == ["Cron entry not running: token-cleanup"]
