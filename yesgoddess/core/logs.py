"""What every log line carries besides its message: the job or the request it belongs to.

settings.LOGGING sends every logger through one console handler with `ContextFilter`, and
formats lines as plain text (the default, for development) or, with LOG_FORMAT=json, as
one JSON object per line (python-json-logger), where these fields become keys:

- `job` and `job_id` on every line logged while a job runs (`job_fields`, entered by
  the job runtime and by the workers around RQ's own lines about the job);
- `request_id` on every line logged while a request is served (`RequestIdMiddleware`).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

# A worker process runs one job at a time, and job code starts threads of its own (email
# lanes, parallel file writes) whose lines belong to the job too: the job's fields are
# therefore the process's, not a context variable's (a new thread starts without those).
_job: dict[str, str] = {}
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
# An id a proxy or a client sent is kept only if it is short and plain (it ends up in logs).
_ACCEPTABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@contextmanager
def job_fields(job: str, job_id: str) -> Iterator[None]:
    """Lines logged inside the block carry `job` and `job_id` (the outer job's again after)."""
    previous = dict(_job)
    _job.update(job=job, job_id=job_id)
    try:
        yield
    finally:
        _job.clear()
        _job.update(previous)


def current_request_id() -> str | None:
    return _request_id.get()


class ContextFilter(logging.Filter):
    """Adds the current job's and request's fields to each record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _job.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        request_id = _request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class RequestIdMiddleware:
    """Gives each request an id: the caller's `X-Request-ID` when it is a plain token
    (a proxy's, to follow one request across services), else a new one. It is on every
    line logged while the request is served and in the response's `X-Request-ID`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _ACCEPTABLE_ID.fullmatch(offered) else uuid.uuid4().hex
        # Kept until the response is closed (`end_request`), not just through the
        # middleware: Django logs "Not Found" and other 4xx lines after the middleware
        # chain has returned.
        _request_id.set(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


def end_request(**kwargs: object) -> None:
    """`request_finished` receiver (connected in CoreConfig.ready): the request's lines end here."""
    _request_id.set(None)
