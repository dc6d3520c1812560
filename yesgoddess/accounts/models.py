from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone


class User(AbstractUser):
    """The platform's user: creators, brands, viewers and admins (staff)."""

    class Role(models.TextChoices):
        ADMIN = "ADMIN"
        CREATOR = "CREATOR"
        BRAND = "BRAND"
        VIEWER = "VIEWER"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # A lockout is a time, never is_active=False: an admin's deactivation and a lockout
    # must not be confused, so the unlock job can never re-activate a deactivated user.
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_reason = models.CharField(max_length=64, blank=True, default="")
    anonymised_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "users"
        indexes = [
            models.Index(fields=["deleted_at"], name="users_deleted_idx", condition=models.Q(deleted_at__isnull=False)),
            models.Index(
                fields=["locked_until"], name="users_locked_idx", condition=models.Q(locked_until__isnull=False)
            ),
        ]

    def is_locked(self, now=None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or timezone.now())


TOKEN_PREFIX = "yg_"


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so one SHA-256 round is enough: there is no
    # dictionary to attack, unlike passwords.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, user: User, name: str = "", *, service: bool = False) -> tuple[ApiToken, str]:
        """Create a token for `user`; return the row and the only copy of the raw token."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, key_hash=hash_token(raw), prefix=raw[:10], service=service)
        return token, raw

    def token_for(self, raw: str) -> ApiToken | None:
        """The live token `raw` names (its user active), marked used; None otherwise."""
        token = self.select_related("user").filter(key_hash=hash_token(raw), revoked_at__isnull=True).first()
        if token is None or not token.user.is_active:
            return None
        self.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token

    def user_for(self, raw: str) -> User | None:
        token = self.token_for(raw)
        return token.user if token is not None else None


class ApiToken(models.Model):
    """A personal API token, stored hashed; the raw value is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=10)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A server-side collector's token: its analytics events are trusted (revenue figures,
    # any object, events recorded for a visitor), as staff's are.
    service = models.BooleanField(default=False, db_default=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        db_table = "api_tokens"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class VerificationToken(models.Model):
    """An email-verification token (stored hashed)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "verification_tokens"
        indexes = [models.Index(fields=["expires"], name="verification_expires_idx")]


class PasswordResetToken(models.Model):
    """A password-reset token (stored hashed); `used_at` once redeemed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    expires = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "password_reset_tokens"
        indexes = [models.Index(fields=["expires"], name="reset_expires_idx")]


class RememberMeToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="remember_me_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    device_info = models.TextField(blank=True, default="")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "remember_me_tokens"
        indexes = [
            models.Index(fields=["user", "-created_at"], name="remember_user_created_idx"),
            models.Index(fields=["expires_at"], name="remember_expires_idx"),
        ]


class LoginAttempt(models.Model):
    """Every login attempt, from any entry point (Django's auth signals)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email = models.CharField(max_length=254, help_text="lower-cased")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True, default="")
    success = models.BooleanField(default=False)
    failure_reason = models.CharField(max_length=32, blank=True, default="")
    timestamp = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "login_attempts"
        indexes = [
            # failed-login-monitor reads only recent failures: a partial index keeps it small.
            models.Index(fields=["timestamp"], name="login_failures_recent_idx", condition=models.Q(success=False)),
            models.Index(fields=["email", "-timestamp"], name="login_email_idx"),
            models.Index(fields=["ip_address", "-timestamp"], name="login_ip_idx"),
        ]


class SecurityAlert(models.Model):
    """One alert sent, so that each is sent once per subject per 15-minute window."""

    kind = models.CharField(max_length=32)
    subject = models.CharField(max_length=254, help_text="lower-cased email or IP address")
    window_start = models.DateTimeField()
    failures = models.IntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "security_alerts"
        constraints = [
            models.UniqueConstraint(fields=["kind", "subject", "window_start"], name="security_alert_once_per_window")
        ]
