from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Notification(models.Model):
    """An in-app notification (spec A §3.6)."""

    class Type(models.TextChoices):
        LICENSE = "LICENSE"
        PAYOUT = "PAYOUT"
        ROYALTY = "ROYALTY"
        PROJECT = "PROJECT"
        SYSTEM = "SYSTEM"
        MESSAGE = "MESSAGE"
        POST_ASSIGNED = "POST_ASSIGNED"
        POST_STATUS_CHANGED = "POST_STATUS_CHANGED"
        BLOG = "BLOG"

    class Priority(models.TextChoices):
        LOW = "LOW"
        MEDIUM = "MEDIUM"
        HIGH = "HIGH"
        URGENT = "URGENT"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    type = models.CharField(max_length=32, choices=Type.choices)
    title = models.CharField(max_length=255)
    message = models.TextField()
    action_url = models.TextField(null=True, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.MEDIUM)
    read = models.BooleanField(default=False)
    read_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "notifications"
        indexes = [
            models.Index(fields=["user", "read"], name="notif_user_read_idx"),
            models.Index(fields=["user", "-created_at"], name="notif_user_created_idx"),
            models.Index(fields=["user", "type"], name="notif_user_type_idx"),
            models.Index(fields=["-created_at"], name="notif_created_idx"),
            # The cleanup's two shapes of query (spec A §3.6 port note).
            models.Index(fields=["read", "read_at"], name="notif_read_readat_idx"),
            models.Index(fields=["read", "priority", "created_at"], name="notif_unread_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type}: {self.title}"


class EmailFrequency(models.TextChoices):
    IMMEDIATE = "IMMEDIATE"
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    OFF = "OFF"


class NotificationPreference(models.Model):
    """How a user wants notifications of one type by email (DECISIONS: in-app always;
    email immediate, daily digest, weekly digest or off). No row: IMMEDIATE."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs")
    type = models.CharField(max_length=32, choices=Notification.Type.choices)
    email_frequency = models.CharField(max_length=10, choices=EmailFrequency.choices, default=EmailFrequency.IMMEDIATE)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "notification_preferences"
        constraints = [models.UniqueConstraint(fields=["user", "type"], name="notification_pref_per_type")]
