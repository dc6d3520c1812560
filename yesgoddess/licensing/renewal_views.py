"""Renewal API: the brand accepts a renewal offer (spec B §5.3 phase 4, acceptance).

POST /api/licenses/<license_id>/renewal/<offer_id>/accept: the brand's user only; anyone
else gets 404, as if the offer did not exist. 409 when the offer is no longer pending,
has expired, or the license can no longer be renewed; 201 with the renewal license.
Honours `Idempotency-Key` (a replay answers the first 201).
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from yesgoddess.core.api import ApiError, api_view, idempotent

from . import renewals
from .models import RenewalOffer


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
