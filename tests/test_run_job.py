"""`manage.py run_job`: operators run a job here, or put it on its queue."""

from __future__ import annotations

import json

import pytest

from jobs.api import get_queue

from .conftest import manage

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_job_runs_in_process_and_prints_the_result():
    result = manage("run_job", "ping")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"pong": "ok"}
    assert "job=ping id=inline outcome=ok" in result.stderr
    assert get_queue("default").count == 0


def test_run_job_enqueue_prints_the_job_id_and_queues_it():
    result = manage("run_job", "test-count-users", "--enqueue")
    assert result.returncode == 0, result.stderr
    assert get_queue("default").get_job_ids() == [result.stdout.strip()]


def test_run_job_with_arguments():
    result = manage("run_job", "test-reject-input", "--kwargs", '{"user_id": 999999}')
    assert result.returncode != 0
    assert "user 999999 does not exist" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-job"], "Unknown job 'no-such-job'"),
        (["ping", "--kwargs", "{bad json"], "--kwargs is not valid JSON"),
        (["ping", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["ping", "--kwargs", '{"x": 1}'], "unexpected keyword argument 'x'"),
    ],
)
def test_run_job_refuses_bad_input_with_a_clear_error(args, message):
    result = manage("run_job", *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_run_job_list_shows_every_registered_job():
    out = manage("run_job", "--list").stdout
    for name in ("idempotency-cleanup", "asset-virus-scan", "upload-cleanup"):
        assert name in out
