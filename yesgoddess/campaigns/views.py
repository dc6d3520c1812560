"""Campaign API (staff; anyone else gets 404, as if the campaign did not exist) and the
user's own bulk-email delivery preferences.

- `POST /api/campaigns/` creates a DRAFT campaign and its recipients from a segment.
- `GET /api/campaigns/<id>/` shows its status, recipients by status and progress.
- `POST /api/campaigns/<id>/send|pause|resume|cancel` change its status (409 when the
  campaign is not in a state that allows it). POSTs honour `Idempotency-Key`.
- `GET|POST /api/email/delivery-preferences` (any user): each category's frequency,
  IMMEDIATE (one message each), DAILY or WEEKLY (in the email digest).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from . import services
from .models import DEFERRABLE_CATEGORIES, DigestFrequency, EmailCampaign, EmailDeliveryPreference


def _require_staff(request: HttpRequest) -> None:
    if not request.user.is_staff:
        raise ApiError(404, "Not found.")


def _campaign(campaign_id: int) -> EmailCampaign:
    campaign = EmailCampaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise ApiError(404, "Not found.")
    return campaign


def _when(raw: Any) -> datetime | None:
    if raw in (None, ""):
        return None
    parsed = parse_datetime(raw) if isinstance(raw, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise ApiError(400, "scheduled_send_time must be an ISO 8601 date-time with a time zone.")
    return parsed


def _options(request: HttpRequest) -> dict[str, Any]:
    """The optional JSON body of an action (an empty POST is fine)."""
    return json_body(request) if request.content_type == "application/json" else {}


def _run(action: Callable[[], EmailCampaign]) -> JsonResponse:
    try:
        campaign = action()
    except services.CampaignError as exc:
        raise ApiError(exc.status, str(exc)) from None
    campaign.refresh_from_db()
    return JsonResponse(services.campaign_json(campaign))


@api_view(("POST",))
@idempotent("email_campaign")
def create_campaign(request: HttpRequest) -> JsonResponse:
    """{"name", "subject", "template", "content": {...}, "segment": {"roles": [...]},
    "preview_text"?, "scheduled_send_time"?, "batch_size"?, "messages_per_hour"?}"""
    _require_staff(request)
    body = json_body(request)
    try:
        campaign = services.create_campaign(
            name=str(body.get("name") or ""),
            subject=str(body.get("subject") or ""),
            template=str(body.get("template") or ""),
            content=body.get("content"),
            created_by_id=request.user.pk,
            preview_text=str(body.get("preview_text") or ""),
            description=str(body.get("description") or ""),
            scheduled_send_time=_when(body.get("scheduled_send_time")),
            batch_size=body.get("batch_size", 100),
            messages_per_hour=body.get("messages_per_hour", 1000),
            segment=body.get("segment") if body.get("segment") is not None else {},
        )
    except services.CampaignError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return JsonResponse(services.campaign_json(campaign), status=201)


@api_view(("GET",))
def campaign_detail(request: HttpRequest, campaign_id: int) -> JsonResponse:
    _require_staff(request)
    return JsonResponse(services.campaign_json(_campaign(campaign_id)))


@api_view(("POST",))
@idempotent("email_campaign")
def send_campaign(request: HttpRequest, campaign_id: int) -> JsonResponse:
    """Schedule (or start now) a DRAFT campaign; a PAUSED one resumes."""
    _require_staff(request)
    _campaign(campaign_id)
    return _run(lambda: services.send(campaign_id))


@api_view(("POST",))
@idempotent("email_campaign")
def pause_campaign(request: HttpRequest, campaign_id: int) -> JsonResponse:
    _require_staff(request)
    _campaign(campaign_id)
    reason = str(_options(request).get("reason") or f"paused by user {request.user.pk}")
    return _run(lambda: services.pause(campaign_id, reason))


@api_view(("POST",))
@idempotent("email_campaign")
def resume_campaign(request: HttpRequest, campaign_id: int) -> JsonResponse:
    _require_staff(request)
    _campaign(campaign_id)
    return _run(lambda: services.resume(campaign_id))


@api_view(("POST",))
@idempotent("email_campaign")
def cancel_campaign(request: HttpRequest, campaign_id: int) -> JsonResponse:
    _require_staff(request)
    _campaign(campaign_id)
    reason = str(_options(request).get("reason") or "")
    return _run(lambda: services.cancel(campaign_id, request.user.pk, reason))


@api_view(("GET", "POST"))
def delivery_preferences(request: HttpRequest) -> JsonResponse:
    """POST {"category": "campaigns", "frequency": "DAILY"}; both answer every category."""
    categories = [value for value, _ in DEFERRABLE_CATEGORIES]
    if request.method == "POST":
        body = json_body(request)
        category, frequency = body.get("category"), str(body.get("frequency") or "").upper()
        if category not in categories:
            raise ApiError(400, f"category must be one of {', '.join(categories)}.")
        try:
            services.set_delivery_preference(request.user.pk, frequency, category)
        except services.CampaignError as exc:
            raise ApiError(exc.status, str(exc)) from None
    chosen = dict(EmailDeliveryPreference.objects.filter(user=request.user).values_list("category", "frequency"))
    return JsonResponse({"preferences": {c: chosen.get(c, DigestFrequency.IMMEDIATE) for c in categories}})
