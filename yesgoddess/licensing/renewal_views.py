"""Renewal API: the brand gets its current renewal offer and accepts it (spec B §5.3
phase 4, acceptance; issue 21 item 9: a renewal can be had at any time in the window).

- GET /api/licenses/<license_id>/renewal: the current offer: the live one, or the
  accepted one, or one made on demand (`renewals.current_offer`). 409 with the reason
  codes when the license cannot be renewed. This is what every renewal link of a notice
  leads to.
- GET /api/licenses/<license_id>/renewal/<offer_id>: that offer while it is live (or
  accepted); once it has lapsed, the current offer, with `replaces_offer_id` (so the
  link of an old email still leads to an offer the brand can accept).
- POST /api/licenses/<license_id>/renewal/<offer_id>/accept: 201 with the renewal
  license (PENDING_APPROVAL); 409 when the offer is no longer pending, has expired, or
  the license can no longer be renewed. Honours `Idempotency-Key` (a replay answers the
  first 201).

The brand's user only; anyone else gets 404, as if the license did not exist.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone

from yesgoddess.core.api import ApiError, api_view, idempotent

from . import renewals
from .eligibility import REASONS, RELATED
from .models import License, RenewalOffer


def _brand_license(request: HttpRequest, license_id: int) -> License:
    license = License.objects.select_related(*RELATED).filter(pk=license_id, deleted_at__isnull=True).first()
    if license is None or license.brand.user_id != request.user.pk:
        raise ApiError(404, "License not found.")
    return license


def offer_json(offer: RenewalOffer) -> dict[str, Any]:
    pending = offer.status == RenewalOffer.Status.PENDING
    return {
        "id": offer.pk,
        "license_id": offer.license_id,
        "status": offer.status,
        "fee_cents": offer.fee_cents,
        "original_fee_cents": offer.original_fee_cents,
        "rev_share_bps": offer.rev_share_bps,
        "start_date": offer.start_date.isoformat(),
        "end_date": offer.end_date.isoformat(),
        "duration_days": offer.duration_days,
        "adjustments": offer.adjustments,
        "expires_at": offer.expires_at.isoformat(),
        "accepted_at": offer.accepted_at.isoformat() if offer.accepted_at else None,
        "renewal_license_id": offer.renewal_license_id,
        "accept_url": reverse("api-license-renewal-accept", args=[offer.license_id, offer.pk]) if pending else None,
    }


def _current(license: License, **extra: Any) -> JsonResponse:
    try:
        offer = renewals.current_offer(license)
    except renewals.RenewalBlocked as exc:
        reasons = [{"code": code, "message": REASONS.get(code, code)} for code in exc.reasons]
        return JsonResponse({"error": str(exc), "reasons": reasons}, status=409)
    return JsonResponse(offer_json(offer) | extra)


@api_view(("GET",))
def current_offer(request: HttpRequest, license_id: int) -> JsonResponse:
    return _current(_brand_license(request, license_id))


@api_view(("GET",))
def offer_detail(request: HttpRequest, license_id: int, offer_id: int) -> JsonResponse:
    license = _brand_license(request, license_id)
    offer = RenewalOffer.objects.filter(pk=offer_id, license=license).first()
    if offer is None:
        raise ApiError(404, "Renewal offer not found.")
    live = offer.status == RenewalOffer.Status.PENDING and offer.expires_at > timezone.now()
    if live or offer.status == RenewalOffer.Status.ACCEPTED:
        return JsonResponse(offer_json(offer))
    return _current(license, replaces_offer_id=offer.pk)


@api_view(("POST",))
@idempotent("license_renewal")
def accept_offer(request: HttpRequest, license_id: int, offer_id: int) -> JsonResponse:
    offer = (
        RenewalOffer.objects.select_related("license__brand")
        .filter(pk=offer_id, license_id=license_id, license__deleted_at__isnull=True)
        .first()
    )
    if offer is None or offer.license.brand.user_id != request.user.pk:
        raise ApiError(404, "Renewal offer not found.")
    try:
        renewal = renewals.accept_offer(offer, request.user.pk)
    except renewals.NotOfferRecipient:
        raise ApiError(404, "Renewal offer not found.") from None
    except renewals.OfferNotAcceptable as exc:
        raise ApiError(409, str(exc)) from None
    return JsonResponse(
        {
            "id": renewal.pk,
            "status": renewal.status,
            "parent_license_id": license_id,
            "offer_id": offer.pk,
            "start_date": renewal.start_date.isoformat(),
            "end_date": renewal.end_date.isoformat(),
            "fee_cents": renewal.fee_cents,
            "rev_share_bps": renewal.rev_share_bps,
        },
        status=201,
    )
