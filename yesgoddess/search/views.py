"""GET /api/search?q=&type=&page=&page_size= (any authenticated user)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from yesgoddess.core.api import ApiError, api_view

from .query import MAX_PAGE, MAX_PAGE_SIZE, search
from .registry import SEARCHABLE

MAX_QUERY_LENGTH = 256


def _int_param(request: HttpRequest, name: str, default: int, maximum: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an integer.") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"'{name}' must be between 1 and {maximum}.")
    return value


@api_view(("GET",))
def search_view(request: HttpRequest) -> JsonResponse:
    q = request.GET.get("q", "").strip()
    if not q:
        raise ApiError(400, "Give the words to search for: ?q=...")
    if "\x00" in q:
        raise ApiError(400, "The query contains a NUL character.")
    if len(q) > MAX_QUERY_LENGTH:
        raise ApiError(400, f"The query is longer than {MAX_QUERY_LENGTH} characters.")
    object_type = request.GET.get("type", "").strip() or None
    if object_type is not None and object_type not in SEARCHABLE:
        raise ApiError(400, f"Unknown type {object_type!r}; one of {', '.join(SEARCHABLE)}.")
    page = _int_param(request, "page", 1, MAX_PAGE)
    page_size = _int_param(request, "page_size", 20, MAX_PAGE_SIZE)
    found = search(q, user=request.user, types=[object_type] if object_type else None, page=page, page_size=page_size)
    return JsonResponse(
        {
            "query": q,
            "type": object_type,
            "page": page,
            "page_size": page_size,
            "has_more": found.has_more,
            "results": [hit.as_dict() for hit in found.results],
        }
    )
