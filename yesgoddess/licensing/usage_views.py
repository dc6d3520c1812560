"""Usage API: `POST /api/licenses/<id>/usage` records one usage event.

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

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from .models import IN_FORCE, License
from .usage_events import IdempotencyConflict, UsageInputError, parse_usage_report, record_usage_event


@api_view(("POST",))
@idempotent("license_usage_event")
def record_usage(request: HttpRequest, license_id: int) -> JsonResponse:
    license = (
        License.objects.filter(pk=license_id, deleted_at__isnull=True)
        .values("status", "usage_tracking_enabled", "start_date", "brand__user_id")
        .first()
    )
    if license is None or not (request.user.is_staff or license["brand__user_id"] == request.user.pk):
        raise ApiError(404, "License not found.")
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
