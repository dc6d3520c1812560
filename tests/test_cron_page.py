"""The cron table in the admin (/admin/jobs/cron/, issue 22 point 5): one row per entry of
jobs/schedule.py with its next run, last run and an overdue mark, and a "run now" that
queues the entry's job exactly as its scheduled run would."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from jobs.api import get_queue
from jobs.cron_runs import run_started
from jobs.cron_table import OVERDUE_GRACE, cron_table
from jobs.models import CronRun
from jobs.runtime import dispatch_scheduled
from jobs.schedule import SCHEDULE
from jobs.scheduling import next_run, reconcile
from yesgoddess.core.redis import redis_connection

from .conftest import SIMPLE
from .smtp_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/admin/jobs/cron/"
HOURLY = "token-cleanup"  # "0 * * * *"


def entry(entry_id: str):
    return next(e for e in SCHEDULE if e.id == entry_id)


def row_of(rows, entry_id: str):
    return next(row for row in rows if row.entry.id == entry_id)


def html_row(response, entry_id: str) -> str:
    match = re.search(rf'<tr [^>]*id="cron-{re.escape(entry_id)}".*?</tr>', response.content.decode(), re.S)
    assert match, f"no row for {entry_id}"
    return match.group(0)


@pytest.fixture
def hour(time_machine) -> datetime:
    """The start of the current hour, with the clock frozen 30 minutes after it."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    time_machine.move_to(start + timedelta(minutes=30), tick=False)
    return start


def schedule_at(time_machine, moment: datetime) -> None:
    """Run schedule_jobs at `moment` (rq-scheduler then holds every entry since then)."""
    time_machine.move_to(moment, tick=False)
    reconcile()


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("ops", "ops@example.test", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


# --- the table ------------------------------------------------------------------------


def test_one_row_per_schedule_entry_with_its_next_run(hour):
    now = timezone.now()
    rows = cron_table()
    assert [row.entry.id for row in rows] == [e.id for e in SCHEDULE]
    for row in rows:
        assert row.next_run == next_run(row.entry.cron, now) and row.next_run > now
    assert row_of(rows, HOURLY).next_run == hour + timedelta(hours=1)
    assert row_of(rows, HOURLY).queue == "scheduled"


def test_an_entry_whose_last_fire_time_has_no_run_is_overdue(time_machine, hour):
    schedule_at(time_machine, hour - timedelta(hours=2))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    row = row_of(cron_table(), HOURLY)
    assert row.scheduled is True and row.last_run is None
    assert row.overdue and row.missed_run == hour


def test_a_run_started_after_the_fire_time_is_not_overdue(time_machine, hour):
    schedule_at(time_machine, hour - timedelta(hours=2))
    run_started(HOURLY, "job-1", hour + timedelta(seconds=20))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    assert not row_of(cron_table(), HOURLY).overdue


def test_a_run_older_than_the_last_fire_time_is_overdue(time_machine, hour):
    schedule_at(time_machine, hour - timedelta(hours=2))
    run_started(HOURLY, "job-1", hour - timedelta(minutes=59))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    row = row_of(cron_table(), HOURLY)
    assert row.overdue and row.missed_run == hour and row.last_run.job_id == "job-1"


def test_a_run_is_not_overdue_within_the_grace(time_machine, hour):
    schedule_at(time_machine, hour - timedelta(hours=2))
    run_started(HOURLY, "job-1", hour - timedelta(minutes=59))
    time_machine.move_to(hour + OVERDUE_GRACE - timedelta(minutes=1), tick=False)
    assert not row_of(cron_table(), HOURLY).overdue


def test_an_entry_scheduled_after_its_last_fire_time_owes_no_run(time_machine, hour):
    schedule_at(time_machine, hour + timedelta(minutes=1))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    row = row_of(cron_table(), HOURLY)
    assert row.scheduled is True and not row.overdue


def test_an_entry_missing_from_rq_scheduler_is_unscheduled_not_overdue(hour):
    row = row_of(cron_table(), HOURLY)
    assert row.scheduled is False and not row.overdue


def test_a_run_waiting_in_its_queue_is_late_not_missed(time_machine, hour):
    schedule_at(time_machine, hour - timedelta(hours=2))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    dispatch_scheduled(entry(HOURLY).job, {}, HOURLY)  # queued, no worker yet
    assert not row_of(cron_table(), HOURLY).overdue


# --- the page -------------------------------------------------------------------------


def test_the_page_lists_every_entry_with_next_run_last_run_and_overdue_mark(time_machine, hour, staff_client):
    schedule_at(time_machine, hour - timedelta(hours=2))
    time_machine.move_to(hour + timedelta(minutes=30), tick=False)
    daily = "notification-cleanup"  # "0 3 * * *"
    run_started(daily, "job-42", timezone.now() - timedelta(minutes=5))
    CronRun.objects.filter(entry_id=daily).update(outcome=CronRun.Outcome.OK, duration_ms=1500)
    response = staff_client.get(URL)
    assert response.status_code == 200
    for e in SCHEDULE:
        assert f'id="cron-{e.id}"' in response.content.decode()
    hourly = html_row(response, HOURLY)
    assert "overdue since" in hourly and hour.strftime("%Y-%m-%d %H:%M") in hourly
    assert (hour + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M") in hourly  # next run
    assert "never ran" in hourly and f"/admin/jobs/cron/{HOURLY}/run/" in hourly
    done = html_row(response, daily)
    assert "ok" in done and "1.5 s" in done and "overdue" not in done
    assert (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S") in done
    assert 'name="csrfmiddlewaretoken"' in hourly


def test_the_admin_index_links_the_cron_page(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 200 and f'href="{URL}"' in response.content.decode()


def test_the_page_is_for_staff_only():
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    member = Client()
    member.force_login(get_user_model().objects.create_user("member", "m@example.test", "pw"))
    assert member.get(URL).status_code == 302
    assert member.post(f"{URL}{HOURLY}/run/").status_code == 302
    assert get_queue("scheduled").count == 0


# --- run now --------------------------------------------------------------------------


def test_run_now_queues_the_entry_like_its_scheduled_run_and_records_it(staff_client, run_worker):
    response = staff_client.post(f"{URL}{HOURLY}/run/", follow=True)
    assert response.status_code == 200
    queue = get_queue("scheduled")
    [job] = queue.get_jobs()
    assert job.meta["cron_entry"] == HOURLY and list(job.args) == [entry(HOURLY).job]
    assert f"queued {entry(HOURLY).job} as job {job.id}" in response.content.decode()
    run_worker("scheduled", worker_class=SIMPLE)
    run = CronRun.objects.get(entry_id=HOURLY)
    assert run.job_id == job.id and run.outcome == CronRun.Outcome.OK and run.duration_ms is not None
    page = staff_client.get(URL)
    assert "never ran" not in html_row(page, HOURLY) and ">ok<" in html_row(page, HOURLY)


def test_run_now_twice_queues_one_job(staff_client):
    staff_client.post(f"{URL}{HOURLY}/run/")
    second = staff_client.post(f"{URL}{HOURLY}/run/", follow=True)
    [job] = get_queue("scheduled").get_jobs()
    assert f"already queued or running (job {job.id})" in second.content.decode()


def test_run_now_is_skipped_while_the_scheduled_run_is_queued(staff_client):
    scheduled = dispatch_scheduled(entry(HOURLY).job, {}, HOURLY)
    response = staff_client.post(f"{URL}{HOURLY}/run/", follow=True)
    assert f"already queued or running (job {scheduled['job_id']})" in response.content.decode()
    assert get_queue("scheduled").job_ids == [scheduled["job_id"]]


def test_run_now_refuses_bad_requests(staff_client):
    assert staff_client.get(f"{URL}{HOURLY}/run/").status_code == 405
    assert staff_client.post(f"{URL}no-such-entry/run/").status_code == 404
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(get_user_model().objects.get(username="ops"))
    assert strict.post(f"{URL}{HOURLY}/run/").status_code == 403
    assert get_queue("scheduled").count == 0


# --- Redis down -----------------------------------------------------------------------


@pytest.fixture
def dead_redis(settings, tmp_path) -> Iterator[None]:
    """Point the process's Redis client at a redis-server of our own, then stop it."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    original = settings.REDIS_URL
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                Redis(port=port, socket_timeout=1).ping()
                break
            except RedisConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        redis_connection.cache_clear()
        redis_connection().ping()
        server.terminate()
        server.wait(timeout=10)
        yield
    finally:
        server.kill()
        server.wait()
        settings.REDIS_URL = original
        redis_connection.cache_clear()


def test_with_redis_down_the_page_still_shows_the_table_and_run_now_says_why(staff_client, dead_redis):
    page = staff_client.get(URL)
    assert page.status_code == 200
    assert "Redis is unreachable" in page.content.decode() and f'id="cron-{HOURLY}"' in page.content.decode()
    response = staff_client.post(f"{URL}{HOURLY}/run/", follow=True)
    assert response.status_code == 200 and "nothing queued, Redis is unreachable" in response.content.decode()
