"""Notifications API (the user's own only).

- `GET /api/notifications/`: newest first; `?unread=1` for unread only; `?limit=` (1-100,
  default 20); keyset pagination: pass back `next_cursor` as `?cursor=`. Also answers the
  user's unread count.
- `POST /api/notifications/<id>/read`: mark one read (idempotent; another user's is a 404).
- `GET` / `PUT /api/notifications/preferences`: email frequency per notification type
  (IMMEDIATE, DAILY, WEEKLY, OFF; a type without a row is IMMEDIATE). In-app is always on.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from yesgoddess.core.api import ApiError, api_view, json_body

from .models import EmailFrequency, Notification, NotificationPreference

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def notification_json(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "type": notification.type,
        "priority": notification.priority,
        "title": notification.title,
        "message": notification.message,
        "action_url": notification.action_url,
        "metadata": notification.metadata,
        "read": notification.read,
        "read_at": notification.read_at.isoformat() if notification.read_at else None,
        "created_at": notification.created_at.isoformat(),
    }


def encode_cursor(notification: Notification) -> str:
    raw = f"{notification.created_at.isoformat()}|{notification.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, pk = raw.partition("|")
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None:
            raise ValueError("naive time")
        return created_at, int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "cursor is not valid; pass back the next_cursor of the previous page.") from None


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return PAGE_SIZE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return limit


@api_view(("GET",))
def list_notifications(request: HttpRequest) -> JsonResponse:
    own = Notification.objects.filter(user=request.user)
    page = own.filter(read=False) if request.GET.get("unread", "").lower() in ("1", "true", "yes") else own
    limit = _limit(request)
    cursor = request.GET.get("cursor")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        page = page.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    rows = list(page.order_by("-created_at", "-pk")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return JsonResponse(
        {
            "results": [notification_json(row) for row in rows],
            "next_cursor": encode_cursor(rows[-1]) if more else None,
            "unread_count": own.filter(read=False).count(),
        }
    )


@api_view(("POST",))
def mark_read(request: HttpRequest, notification_id: int) -> JsonResponse:
    notification = Notification.objects.filter(pk=notification_id, user=request.user).first()
    if notification is None:
        raise ApiError(404, "Not found.")
    if not notification.read:
        now = timezone.now()
        # Conditional: two concurrent calls keep the first read time.
        if Notification.objects.filter(pk=notification.pk, read=False).update(read=True, read_at=now):
            notification.read, notification.read_at = True, now
        else:
            notification.refresh_from_db()
    return JsonResponse(notification_json(notification))


def _preferences(user: Any) -> dict[str, str]:
    chosen = dict(NotificationPreference.objects.filter(user=user).values_list("type", "email_frequency"))
    return {type_: chosen.get(type_, EmailFrequency.IMMEDIATE) for type_ in Notification.Type.values}


@api_view(("GET", "PUT"))
def preferences(request: HttpRequest) -> JsonResponse:
    if request.method == "PUT":
        wanted = json_body(request).get("preferences")
        if not isinstance(wanted, dict) or not wanted:
            raise ApiError(400, 'Send {"preferences": {"<TYPE>": "IMMEDIATE|DAILY|WEEKLY|OFF", ...}}.')
        unknown = sorted(str(t) for t in wanted if t not in Notification.Type.values)
        if unknown:
            raise ApiError(400, f"Unknown notification type(s): {', '.join(unknown)}.")
        bad = sorted(t for t, f in wanted.items() if f not in EmailFrequency.values)
        if bad:
            raise ApiError(400, f"Frequency must be one of {', '.join(EmailFrequency.values)} (bad: {', '.join(bad)}).")
        NotificationPreference.objects.bulk_create(
            [NotificationPreference(user=request.user, type=t, email_frequency=f) for t, f in wanted.items()],
            update_conflicts=True,
            unique_fields=["user", "type"],
            update_fields=["email_frequency", "updated_at"],
        )
    return JsonResponse({"preferences": _preferences(request.user)})
