"""Operator API: enqueue a registered job and follow it; the admin's failed-jobs page. Staff only."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rq.exceptions import NoSuchJobError

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from .api import JobArgumentError, enqueue, failed_jobs_by_name, redis_connection, requeue_failed
from .registry import JOBS, UnknownJobError, get_spec
from .rq_classes import JSONJob


def _require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        # Jobs are not the caller's objects: answer as if they did not exist.
        raise ApiError(404, "Not found.")


@api_view(("POST",))
@idempotent("job")
def enqueue_job(request: HttpRequest) -> JsonResponse:
    _require_staff(request)
    body = json_body(request)
    name, kwargs = body.get("name"), body.get("kwargs", {})
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        raise ApiError(400, "Send {'name': <registered job>, 'kwargs': {...}}.")
    try:
        job_id = enqueue(name, dedup_key=body.get("dedup_key"), **kwargs)
    except (UnknownJobError, JobArgumentError) as exc:
        raise ApiError(400, str(exc)) from None
    return JsonResponse({"job_id": job_id, "name": name, "queue": get_spec(name).queue}, status=202)


@api_view(("GET",))
def job_status(request: HttpRequest, job_id: str) -> JsonResponse:
    _require_staff(request)
    try:
        job = JSONJob.fetch(job_id, connection=redis_connection())
    except NoSuchJobError:
        raise ApiError(404, "No such job (never enqueued, or its result has expired).") from None
    result = job.latest_result()
    return JsonResponse(
        {
            "job_id": job.id,
            "name": job.meta.get("job_name"),
            "queue": job.origin,
            "status": job.get_status(),
            "progress": job.meta.get("progress"),
            "result": result.return_value if result and result.type == result.Type.SUCCESSFUL else None,
            "error": result.exc_string.strip().splitlines()[-1] if result and result.exc_string else None,
            "enqueued_at": job.enqueued_at.isoformat() if job.enqueued_at else None,
            "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        }
    )


# --- the failed-jobs page of the admin: /admin/jobs/failed/ (staff, through admin_view) ---


@require_http_methods(["GET", "POST"])
def failed_jobs_page(request: HttpRequest) -> HttpResponse:
    """Failed jobs still kept by RQ, counted by job name, each name with a button that
    requeues all of its failed jobs (and only those)."""
    if request.method == "POST":
        name = request.POST.get("name", "")
        if name not in JOBS:
            return JsonResponse({"error": f"Unknown job {name[:100]!r}."}, status=400)
        requeued = requeue_failed(name)
        messages.success(request, f"Requeued {len(requeued)} failed {name} job(s).")
        return redirect(request.path)
    context = {
        **admin.site.each_context(request),
        "title": "Failed jobs by job name",
        "failed": failed_jobs_by_name(),
    }
    return render(request, "jobs/failed_jobs.html", context)
