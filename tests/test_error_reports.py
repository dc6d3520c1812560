"""Error reports (issue 23, point 3): with SENTRY_DSN set, sentry-sdk (Django and RQ
integrations) reports a job's final failure tagged with the job's name and id; without
it nothing is started.

The DSN points at a real HTTP server on loopback standing in for Sentry's ingest
endpoint: sentry-sdk posts its envelopes there as it would to sentry.io."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jobs.api import enqueue

from .conftest import FORKING, SIMPLE, manage, wait_until, worker_env

HOST = "127.0.0.1"


def parse_envelope(body: bytes) -> list[tuple[dict, bytes]]:
    """(item header, payload) pairs of one Sentry envelope (a header line, then items
    each a header line and a payload of `length` bytes or up to the next newline)."""
    _, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return items


class Ingest:
    """Accepts every envelope posted to /api/<project>/envelope/ and keeps its events."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.posts = 0
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                ingest.posts += 1
                for header, payload in parse_envelope(body):
                    if header.get("type") == "event":
                        ingest.events.append(json.loads(payload))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.dsn = f"http://public-key@{HOST}:{self.server.server_port}/42"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Ingest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    with Ingest() as server:
        yield server


def run_worker_with(worker_class: str, **env: str) -> None:
    result = manage("rqworker", "--burst", "--worker-class", worker_class, "default", env={**worker_env(), **env})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("worker_class", [FORKING, SIMPLE])
def test_a_failing_job_is_reported_tagged_with_its_name(transactional_db, ingest, worker_class):
    ok = enqueue("ping")
    failed = enqueue("test-fail-no-hook", note="for sentry")
    other = enqueue("test-reject-input", user_id=987654321)
    run_worker_with(worker_class, SENTRY_DSN=ingest.dsn, SENTRY_ENVIRONMENT="ci")

    wait_until(lambda: len(ingest.events) >= 2, 15, "two events")
    by_job = {event["tags"]["job"]: event for event in ingest.events}
    assert set(by_job) == {"test-fail-no-hook", "test-reject-input"}  # nothing for the job that passed
    event = by_job["test-fail-no-hook"]
    assert event["tags"]["job_id"] == failed
    assert event["transaction"] == "test-fail-no-hook"
    assert event["environment"] == "ci"
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError" and exception["value"] == "failed on purpose for sentry"
    # Grouped per job: every job runs in the same wrapper function.
    assert event["fingerprint"] == ["{{ default }}", "job:test-fail-no-hook"]
    assert by_job["test-reject-input"]["tags"]["job_id"] == other
    assert by_job["test-reject-input"]["fingerprint"][-1] == "job:test-reject-input"
    # Each job's events carry its own breadcrumbs only, not the previous jobs'.
    assert ok not in json.dumps(ingest.events)


CLIENT_STATE = "import sentry_sdk; print(sentry_sdk.get_client().is_active())"


def test_without_a_dsn_sentry_is_not_started(db):
    env = {key: value for key, value in worker_env().items() if key != "SENTRY_DSN"}
    result = manage("shell", "-c", CLIENT_STATE, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_with_a_dsn_every_process_starts_it_at_django_setup(db, ingest):
    result = manage("shell", "-c", CLIENT_STATE, env={**worker_env(), "SENTRY_DSN": ingest.dsn})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "True"
    assert ingest.events == []  # starting it sends nothing
