"""Staff API: who received the watermarked copy carrying a forensic id.

`GET /api/watermarks/<forensic id>` answers the issuance record (recipient, asset, time,
options) and whether the id verifies against the record under the current key. Staff
only: anyone else gets 404, as if the endpoint did not exist.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from yesgoddess.core.api import ApiError, api_view

from . import watermarks


@api_view(("GET",))
def lookup_forensic_id(request: HttpRequest, forensic_id: str) -> JsonResponse:
    if not request.user.is_staff:
        raise ApiError(404, "Not found.")
    try:
        found = watermarks.lookup(forensic_id)
    except watermarks.BadForensicId as exc:
        raise ApiError(400, str(exc)) from None
    if found is None:
        raise ApiError(404, "No watermarked copy carries this forensic id.")
    return JsonResponse(found)
