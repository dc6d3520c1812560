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

    class Meta:
        db_table = "users"


TOKEN_PREFIX = "yg_"


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so one SHA-256 round is enough: there is no
    # dictionary to attack, unlike passwords.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def issue(self, user: User, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; return the row and the only copy of the raw token."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = self.create(user=user, name=name, key_hash=hash_token(raw), prefix=raw[:10])
        return token, raw

    def user_for(self, raw: str) -> User | None:
        token = self.select_related("user").filter(key_hash=hash_token(raw), revoked_at__isnull=True).first()
        if token is None or not token.user.is_active:
            return None
        self.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user


class ApiToken(models.Model):
    """A personal API token, stored hashed; the raw value is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=10)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        db_table = "api_tokens"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"
