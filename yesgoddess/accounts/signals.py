"""Record every login attempt as a LoginAttempt row (connected in AccountsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .auth import find_user
from .models import LoginAttempt


def client_ip(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def _record(request: HttpRequest | None, email: str, user: Any, success: bool, reason: str = "") -> None:
    LoginAttempt.objects.create(
        user=user,
        email=email.strip().lower()[:254],
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:1000],
        success=success,
        failure_reason=reason,
    )


def record_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    _record(request, user.email or user.get_username(), user, True)


def record_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    identifier = str(credentials.get("email") or credentials.get("username") or "")
    user = find_user(identifier)
    reason = credentials.get("reason") or ("INVALID_PASSWORD" if user is not None else "USER_NOT_FOUND")
    _record(request, (user.email if user is not None and user.email else identifier), user, False, reason)
