"""Royalty runs API (staff): create a run (and calculate it), follow it, lock it."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from rq.exceptions import NoSuchJobError

from jobs.api import enqueue
from jobs.rq_classes import JSONJob
from yesgoddess.core.api import ApiError, api_view, idempotent, json_body
from yesgoddess.core.redis import redis_connection

from . import services
from .models import RoyaltyRun


def _require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise ApiError(404, "Not found.")


def _date(body: dict[str, Any], name: str) -> date:
    raw = body.get(name)
    try:
        return date.fromisoformat(raw)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be a date, YYYY-MM-DD.") from None


def _progress(run: RoyaltyRun) -> dict[str, Any] | None:
    if not run.calculation_job_id:
        return None
    try:
        job = JSONJob.fetch(run.calculation_job_id, connection=redis_connection())
    except NoSuchJobError:
        return None
    return {"job_id": job.id, "job_status": job.get_status(), **(job.meta.get("progress") or {})}


def run_json(run: RoyaltyRun) -> dict[str, Any]:
    statements = {row["status"]: row["n"] for row in _statement_counts(run)}
    return {
        "id": run.pk,
        "period_start": timezone.localdate(run.period_start).isoformat(),
        "period_end": timezone.localdate(run.period_end).isoformat(),
        "status": run.status,
        "total_revenue_cents": run.total_revenue_cents,
        "total_royalties_cents": run.total_royalties_cents,
        "statements": statements,
        "processed_at": run.processed_at.isoformat() if run.processed_at else None,
        "locked_at": run.locked_at.isoformat() if run.locked_at else None,
        "notes": run.notes,
        "progress": _progress(run),
    }


def _statement_counts(run: RoyaltyRun) -> QuerySet:
    return run.statements.values("status").annotate(n=Count("pk")).order_by("status")


@api_view(("POST",))
@idempotent("royalty_run")
def create_run(request: HttpRequest) -> JsonResponse:
    _require_staff(request)
    body = json_body(request)
    start, end = _date(body, "period_start"), _date(body, "period_end")
    try:
        with transaction.atomic():
            run = services.create_run(start, end, request.user.pk)
            services.enqueue_calculation(run, request.user.pk)
    except services.RunRefused as exc:
        raise ApiError(409 if "overlaps" in str(exc) else 400, str(exc)) from None
    return JsonResponse(run_json(run), status=201)


@api_view(("GET",))
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    _require_staff(request)
    run = RoyaltyRun.objects.filter(pk=run_id).first()
    if run is None:
        raise ApiError(404, "Not found.")
    return JsonResponse(run_json(run))


@api_view(("POST",))
@idempotent("royalty_run")
def lock_run(request: HttpRequest, run_id: int) -> JsonResponse:
    _require_staff(request)
    if not RoyaltyRun.objects.filter(pk=run_id).exists():
        raise ApiError(404, "Not found.")
    try:
        with transaction.atomic():
            run = services.lock_run(run_id, request.user.pk)
            job_id = enqueue("statement-notification", dedup_key=f"run-{run_id}", run_id=run_id)
    except services.RunRefused as exc:
        raise ApiError(409, str(exc)) from None
    return JsonResponse(run_json(run) | {"notification_job_id": job_id})
