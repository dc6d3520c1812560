"""License API: `GET /api/licenses/<id>`, the page every "License details" link leads to.

The brand's user, a current owner of the licensed asset, or staff; anyone else gets 404,
as if the license did not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.api import ApiError, api_view

from .models import License


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def license_json(license: License) -> dict[str, Any]:
    return {
        "id": license.pk,
        "status": license.status,
        "license_type": license.license_type,
        "brand": {"id": license.brand_id, "name": license.brand.name},
        "ip_asset": {"id": license.ip_asset_id, "title": license.ip_asset.title},
        "project_id": license.project_id,
        "parent_license_id": license.parent_license_id,
        "start_date": _iso(license.start_date),
        "end_date": _iso(license.end_date),
        "grace_period_end_date": _iso(license.grace_period_end_date),
        "expired_at": _iso(license.expired_at),
        "auto_renew": license.auto_renew,
        "fee_cents": license.fee_cents,
        "rev_share_bps": license.rev_share_bps,
        "scope": license.scope_json,
    }


def may_see(user: Any, license: License) -> bool:
    """The brand's user, a current owner of the asset, or staff."""
    if user.is_staff or license.brand.user_id == user.pk:
        return True
    now = timezone.now()
    return (
        IpOwnership.objects.filter(ip_asset_id=license.ip_asset_id, creator__user_id=user.pk, start_date__lte=now)
        .filter(Q(end_date__isnull=True) | Q(end_date__gt=now))
        .exists()
    )


@api_view(("GET",))
def license_detail(request: HttpRequest, license_id: int) -> JsonResponse:
    license = License.objects.select_related("brand", "ip_asset").filter(pk=license_id, deleted_at__isnull=True).first()
    if license is None or not may_see(request.user, license):
        raise ApiError(404, "License not found.")
    return JsonResponse(license_json(license))
