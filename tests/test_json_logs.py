"""Logs (issue 23, point 5): LOG_FORMAT=json writes one JSON object per line, with the job
name and id on every line logged inside a job and the request id inside a request; the
plain format stays the default."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

from jobs.api import enqueue
from yesgoddess.core.logs import ContextFilter, job_fields

from .conftest import ROOT, SIMPLE, manage, worker_env


def worker_lines(*queues: str, worker_class: str = SIMPLE, **env: str) -> list[str]:
    result = manage("rqworker", "--burst", "--worker-class", worker_class, *queues, env={**worker_env(), **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("worker_class", [SIMPLE, "jobs.rq_classes.DjangoWorker"])
def test_json_logs_are_one_object_per_line_with_the_job_on_every_line_of_a_job(transactional_db, worker_class):
    ok = enqueue("ping")
    failed = enqueue("test-fail-no-hook", note="json")
    lines = worker_lines("default", worker_class=worker_class, LOG_FORMAT="json")

    records = [json.loads(line) for line in lines]  # every line is JSON
    assert all(isinstance(r, dict) and {"time", "level", "logger", "message"} <= r.keys() for r in records)
    by_job = {job_id: [r for r in records if r.get("job_id") == job_id] for job_id in (ok, failed)}
    # The runtime's summary line and RQ's own lines about the job name it.
    assert any(r["message"].startswith(f"job=ping id={ok} outcome=ok") for r in by_job[ok])
    assert any("Job OK" in r["message"] for r in by_job[ok])
    assert {r["job"] for r in by_job[ok]} == {"ping"}
    failure = [r for r in by_job[failed] if r["level"] == "ERROR"]
    assert failure and all(r["job"] == "test-fail-no-hook" for r in failure)
    assert any("RuntimeError: failed on purpose json" in (r["message"] + r.get("exc_info", "")) for r in failure)
    # Lines between jobs name none.
    assert any("job" not in r for r in records)


@pytest.mark.slow
def test_rq_scheduler_logs_json_lines_only(db):
    """rq-scheduler adds a plain handler of its own unless its logger has one."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqscheduler", "--queue", "scheduled", "--interval", "1"],
        cwd=ROOT,
        env={**worker_env(), "LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = process.stdout.readline()
        time.sleep(1.5)  # its signal handlers are installed just after the birth line
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    lines = [line for line in [first, *rest.splitlines()] if line.strip()]
    records = [json.loads(line) for line in lines]
    assert {"Registering birth", "Registering death"} <= {r["message"] for r in records}
    assert len([r for r in records if r["message"] == "Registering birth"]) == 1  # not twice


@pytest.mark.slow
def test_plain_lines_stay_the_default(transactional_db):
    job_id = enqueue("ping")
    lines = worker_lines("default")
    [summary] = [line for line in lines if f"job=ping id={job_id} outcome=ok" in line]
    assert " INFO jobs.runtime job=ping " in summary
    with pytest.raises(json.JSONDecodeError):
        json.loads(summary)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the project's JSON console handler writes, for loggers of this process."""
    options = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**options))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def parsed(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_logged_while_a_request_is_served_carry_its_request_id(client, json_lines):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="edge-7f3a")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "edge-7f3a"
    [line] = [r for r in parsed(json_lines) if r["logger"] == "django.request"]
    assert line["message"] == "Not Found: /no-such-page/" and line["request_id"] == "edge-7f3a"

    # Lines after the request carry no request id.
    logging.getLogger("yesgoddess.test").warning("between requests")
    assert "request_id" not in parsed(json_lines)[-1]


@pytest.mark.parametrize("offered", ["", "a b", "x" * 65, "id\nforged-line", "<script>"])
def test_an_unusable_request_id_is_replaced_by_a_new_one(client, json_lines, offered):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID=offered)
    new_id = response["X-Request-ID"]
    assert new_id != offered and len(new_id) == 32 and new_id.isalnum()
    [line] = [r for r in parsed(json_lines) if r["logger"] == "django.request"]
    assert line["request_id"] == new_id


def test_threads_started_by_a_job_log_with_its_name(json_lines):
    """Job code starts threads (email lanes, parallel writes): their lines are the job's."""
    log = logging.getLogger("yesgoddess.test")
    with job_fields("email-campaign", "job-42"):
        thread = threading.Thread(target=log.warning, args=("sent a batch",))
        thread.start()
        thread.join()
    log.warning("after the job")
    inside, after = parsed(json_lines)
    assert (inside["job"], inside["job_id"], inside["message"]) == ("email-campaign", "job-42", "sent a batch")
    assert "job" not in after
