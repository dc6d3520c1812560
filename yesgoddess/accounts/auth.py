"""Authentication that refuses locked accounts, whatever the entry point.

The backend accepts a username or an email (case-insensitive). When the password is
right but the account is locked it raises `AccountLocked`, a ValidationError: Django's
AuthenticationForm (the admin login) shows its message as a form error, and the JSON
login view answers 423 with it. The refusal is recorded through `user_login_failed`
like any other failed attempt. A wrong password on a locked account is just a wrong
password: the lock is not revealed to someone who does not know the password.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest


def find_user(identifier: str) -> Any:
    """The user a login identifier names: username, or email in any case (oldest first)."""
    if not identifier:
        return None
    return get_user_model().objects.filter(Q(username=identifier) | Q(email__iexact=identifier)).order_by("pk").first()


class AccountLocked(ValidationError):
    def __init__(self, locked_until: Any) -> None:
        when = locked_until.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        super().__init__(f"This account is locked until {when} after too many failed logins.", code="locked")
        self.locked_until = locked_until


class LockoutAwareBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> Any:
        identifier = (email or username or kwargs.get(get_user_model().USERNAME_FIELD) or "").strip()
        if not identifier or password is None:
            return None
        user = find_user(identifier)
        if user is None:
            get_user_model()().set_password(password)  # same work as a real check: no timing oracle
            return None
        if not user.check_password(password) or not self.user_can_authenticate(user):
            return None
        if user.is_locked():
            user_login_failed.send(
                sender=__name__, request=request, credentials={"username": identifier, "reason": "ACCOUNT_LOCKED"}
            )
            raise AccountLocked(user.locked_until)
        return user
