"""`POST /api/events/`: record analytics events (rules in `yesgoddess.analytics.ingest`).

Authenticated like every API view (session + CSRF, or a Bearer token); the frontend posts
through the logged-in session, server-side collectors with a service token (trusted:
revenue, any object, events for visitors; `yesgoddess.analytics.access`). One event is a JSON
object; a batch is `{"events": [...]}` (at most 500, all or nothing). The answer is 202:
`{"id": ..., "enrichment": "pending"}`, or `{"ids": [...], "count": n, ...}` for a batch.
Recording is one INSERT; enrichment follows within moments in batched flush jobs.
An `Idempotency-Key` header makes a retried post record nothing twice.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from yesgoddess.core.api import ApiError, api_view, idempotent, json_body

from .ingest import Actor, EventInputError, parse_events, record_events


@api_view(("POST",))
@idempotent("analytics_event")
def record_events_view(request: HttpRequest) -> JsonResponse:
    token = getattr(request, "api_token", None)
    actor = Actor(user_id=request.user.pk, trusted=request.user.is_staff or bool(token and token.service))
    try:
        events, batch = parse_events(json_body(request), actor=actor, user_agent=request.headers.get("User-Agent", ""))
    except EventInputError as exc:
        raise ApiError(exc.status, str(exc)) from None
    ids = record_events(events)
    if batch:
        return JsonResponse({"ids": ids, "count": len(ids), "enrichment": "pending"}, status=202)
    return JsonResponse({"id": ids[0], "enrichment": "pending"}, status=202)
