"""Usage API: `POST /api/licenses/<id>/usage` records one usage event; `GET` on the same
path answers the license's usage against each active threshold in its current period,
and `GET /api/licenses/<id>/usage/overages` the overages recorded (newest first, at most
100): the pages the usage warnings and overage alerts link to.

The brand's user (its primary contact) or staff only; anyone else gets 404, as if the
license did not exist. Body (JSON): usage_type (required), quantity (int > 0, default 1),
occurred_at (ISO 8601, default now; not in the future, not before the start of yesterday
UTC, not before the license started; without an offset it is read as UTC), revenue_cents
(int >= 0), session_id, platform (web, mobile, tv, print, social, other), device_type,
geographic_location, referrer, metadata (object), idempotency_key.

201 {"id", ...} for a new event. The same idempotency_key again returns the first event
with 200 and `"duplicate": true` (no second row); used for a different event, 422.
409 when the license is not in force (ACTIVE / EXPIRING_SOON) or tracking is disabled.
Recording is one INSERT: aggregates and the license's counters follow within the hour.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from .models import IN_FORCE, License, LicenseUsageOverage
from .usage import utc_today
from .usage_events import IdempotencyConflict, UsageInputError, parse_usage_report, record_usage_event
from .usage_thresholds import load_thresholds

MAX_OVERAGES = 100


def _license_for(request: HttpRequest, license_id: int) -> dict[str, Any]:
    """The license's fields the usage API reads; 404 unless the brand's user or staff."""
    license = (
        License.objects.filter(pk=license_id, deleted_at__isnull=True)
        .values("status", "usage_tracking_enabled", "start_date", "brand__user_id", "total_usage_events")
        .first()
    )
    if license is None or not (request.user.is_staff or license["brand__user_id"] == request.user.pk):
        raise ApiError(404, "License not found.")
    return license


@api_view(("GET", "POST"))
def license_usage(request: HttpRequest, license_id: int) -> JsonResponse:
    license = _license_for(request, license_id)
    if request.method == "GET":
        return usage_summary(license_id, license)
    return record_usage(request, license_id, license)


def usage_summary(license_id: int, license: dict[str, Any]) -> JsonResponse:
    today = utc_today(timezone.now())
    thresholds = [
        {
            "threshold_id": state.id,
            "usage_type": state.usage_type,
            "period_type": state.period_type,
            "period_start": state.period_start.isoformat(),
            "period_end": state.period_end.isoformat(),
            "usage": state.usage,
            "limit": state.limit,
            "grace_percentage": state.grace_percentage,
            "last_warning_level": state.sent_this_period,
        }
        for state in load_thresholds([license_id], today)
    ]
    return JsonResponse(
        {
            "license_id": license_id,
            "status": license["status"],
            "usage_tracking_enabled": license["usage_tracking_enabled"],
            "total_usage_events": license["total_usage_events"],
            "thresholds": thresholds,
        }
    )


@api_view(("GET",))
def license_overages(request: HttpRequest, license_id: int) -> JsonResponse:
    _license_for(request, license_id)
    rows = LicenseUsageOverage.objects.filter(license_id=license_id).order_by("-period_start", "-pk")[:MAX_OVERAGES]
    overages = [
        {
            "id": row.pk,
            "threshold_id": row.threshold_id,
            "usage_type": row.usage_type,
            "period_start": row.period_start.isoformat(),
            "period_end": row.period_end.isoformat(),
            "limit": row.limit_quantity,
            "actual": row.actual_quantity,
            "overage": row.overage_quantity,
            "fee_cents": row.calculated_fee_cents,
            "status": row.status,
            "approval_required": row.approval_required,
            "detected_at": row.detected_at.isoformat(),
        }
        for row in rows
    ]
    return JsonResponse({"license_id": license_id, "overages": overages})


@idempotent("license_usage_event")
def record_usage(request: HttpRequest, license_id: int, license: dict[str, Any]) -> JsonResponse:
    now = timezone.now()
    try:
        report = parse_usage_report(json_body(request), now=now, license_start=license["start_date"])
    except UsageInputError as exc:
        raise ApiError(400, str(exc)) from None
    if license["status"] not in IN_FORCE:
        raise ApiError(409, f"The license is not in force (status {license['status']}); usage cannot be recorded.")
    if not license["usage_tracking_enabled"]:
        raise ApiError(409, "Usage tracking is disabled for this license.")
    try:
        event_id, occurred_at, created = record_usage_event(license_id, report, now=now)
    except IdempotencyConflict as exc:
        raise ApiError(422, str(exc)) from None
    body = {
        "id": event_id,
        "license_id": license_id,
        "usage_type": report.usage_type,
        "quantity": report.quantity,
        "occurred_at": occurred_at.isoformat(),
        "duplicate": not created,
    }
    return JsonResponse(body, status=201 if created else 200)
