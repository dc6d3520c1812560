"""The shared plumbing of the JSON API: authentication, errors, Idempotency-Key.

Every view under /api/ is wrapped by `api_view`. A request is authenticated by the
Django session (CSRF still enforced on unsafe methods) or by a personal API token in
`Authorization: Bearer <token>` (no CSRF: a token is not sent by browsers on their own).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from yesgoddess.accounts.models import ApiToken

from .models import IdempotencyKey

View = Callable[..., HttpResponse]
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# A key still processing after this long is considered stuck and may be retried (spec A §2.1).
STUCK_AFTER = timedelta(minutes=5)


class ApiError(Exception):
    """Raise from a view to answer `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _authenticate(request: HttpRequest) -> HttpResponse | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return error(401, "Authorization must be 'Bearer <token>'.")
        token = ApiToken.objects.token_for(raw.strip())
        if token is None:
            return error(401, "Invalid or revoked API token.")
        request.user = token.user
        request.api_token = token  # a view may trust a service token more than a person's
        return None
    if not request.user.is_authenticated:
        return error(401, "Authentication required: log in or send 'Authorization: Bearer <token>'.")
    if request.method in UNSAFE_METHODS:
        check = CsrfViewMiddleware(lambda r: HttpResponse())
        check.process_request(request)
        rejected = check.process_view(request, None, (), {})
        if rejected is not None:
            return error(403, "CSRF check failed for a session-authenticated request.")
    return None


def api_view(methods: tuple[str, ...]) -> Callable[[View], View]:
    """Authenticate, check the method, turn ApiError into a JSON error response."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return error(405, f"Method {request.method} not allowed; use {', '.join(methods)}.")
            refused = _authenticate(request)
            if refused is not None:
                return refused
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message)

        return wrapper

    return decorate


def _request_hash(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.get_full_path(), request.content_type or ""):
        digest.update(part.encode() + b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _claim_key(request: HttpRequest, key: str, entity_type: str) -> IdempotencyKey | HttpResponse:
    """Claim `key` for this request, or answer from / refuse because of an earlier use."""
    now = timezone.now()
    request_hash = _request_hash(request)
    user = request.user
    with transaction.atomic():
        row = IdempotencyKey.objects.select_for_update().filter(user=user, key=key).first()
        if row is not None and row.expires_at <= now:
            row.delete()
            row = None
        if row is None:
            try:
                with transaction.atomic():
                    return IdempotencyKey.objects.create(
                        user=user,
                        key=key,
                        entity_type=entity_type,
                        request_hash=request_hash,
                        processing_at=now,
                        expires_at=now + timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS),
                    )
            except IntegrityError:
                return error(409, "A request with this Idempotency-Key is still in progress.")
        if row.request_hash != request_hash:
            return error(422, "This Idempotency-Key was already used with a different request.")
        if row.processed:
            replay = JsonResponse(row.response_body, status=row.response_status, safe=False)
            replay["Idempotent-Replayed"] = "true"
            return replay
        if row.processing_at and now - row.processing_at < STUCK_AFTER:
            return error(409, "A request with this Idempotency-Key is still in progress.")
        row.processing_at = now
        row.save(update_fields=["processing_at"])
        return row


def idempotent(entity_type: str) -> Callable[[View], View]:
    """Honour an `Idempotency-Key` header: same key + same request replays the first
    response; same key + another request is a 422. Apply inside `api_view`."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            key = request.headers.get("Idempotency-Key", "").strip()
            if not key:
                return view(request, *args, **kwargs)
            if len(key) > 255:
                return error(400, "Idempotency-Key is longer than 255 characters.")
            claimed = _claim_key(request, key, entity_type)
            if isinstance(claimed, HttpResponse):
                return claimed
            try:
                response = view(request, *args, **kwargs)
            except BaseException:
                claimed.delete()
                raise
            if response.status_code >= 500 or not isinstance(response, JsonResponse):
                # Nothing durable to replay: let the client try again with the same key.
                claimed.delete()
                return response
            body = json.loads(response.content)
            entity_id = body.get("id") or body.get("job_id") if isinstance(body, dict) else None
            IdempotencyKey.objects.filter(pk=claimed.pk).update(
                processed=True,
                processing_at=None,
                response_status=response.status_code,
                response_body=body,
                entity_id=str(entity_id)[:100] if entity_id else None,
            )
            return response

        return wrapper

    return decorate
