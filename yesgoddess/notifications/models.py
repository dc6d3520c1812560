from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class EmailStatus(models.TextChoices):
    """Where a notification stands with email. Rows created directly (bulk_create by a
    module that sends its own email) get NONE from the database default: never emailed."""

    NONE = "NONE"  # no email for this notification
    PENDING = "PENDING"  # immediate email, waiting for the notification-delivery flush
    SENDING = "SENDING"  # claimed; stays so when the send was interrupted (in doubt: never re-sent)
    SENT = "SENT"
    FAILED = "FAILED"  # email_error says why (no address, suppressed, refused, template error)
    DIGEST = "DIGEST"  # left to the daily/weekly digest


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
    email_status = models.CharField(
        max_length=8, choices=EmailStatus.choices, default=EmailStatus.NONE, db_default=EmailStatus.NONE
    )
    # While SENDING: when the attempt began; once SENT: when the server accepted it.
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.TextField(blank=True, default="", db_default="")

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
            # The notification-delivery flush walks PENDING rows by id.
            models.Index(fields=["id"], name="notif_email_pending_idx", condition=models.Q(email_status="PENDING")),
            # The digest: a user's unread rows routed to it, by time.
            models.Index(
                fields=["user", "created_at"],
                name="notif_digest_idx",
                condition=models.Q(email_status="DIGEST", read=False),
            ),
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
        # The digest starts from the users with a DAILY (or WEEKLY) preference.
        indexes = [models.Index(fields=["email_frequency", "user"], name="notif_pref_frequency_idx")]


class DigestFrequency(models.TextChoices):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"


class DigestStatus(models.TextChoices):
    PENDING = "PENDING"  # prepared, waiting for its batch job
    SENDING = "SENDING"  # claimed: never sent again (in doubt when the connection broke)
    SENT = "SENT"
    REFUSED = "REFUSED"  # the server refused the message
    BLOCKED = "BLOCKED"  # suppressed address or opted out of digests
    NO_ADDRESS = "NO_ADDRESS"  # no email address, or the account is inactive/deleted
    EMPTY = "EMPTY"  # nothing left to report when the batch ran (all read meanwhile)
    FAILED = "FAILED"  # the email could not be built (template error)
    SUPERSEDED = "SUPERSEDED"  # still pending when the next period's digest was prepared


class NotificationDigest(models.Model):
    """One digest of one user for one period (the day, or the ISO week): the once-only
    marker. The next digest of the same frequency covers what was created since the
    `window_end` of the last one SENT (or in doubt), so nothing is reported twice."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_digests")
    frequency = models.CharField(max_length=8, choices=DigestFrequency.choices)
    period_key = models.CharField(max_length=16)  # "2026-03-02" (DAILY) or "2026-W10" (WEEKLY)
    status = models.CharField(
        max_length=10, choices=DigestStatus.choices, default=DigestStatus.PENDING, db_default=DigestStatus.PENDING
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    notification_count = models.IntegerField(default=0, db_default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "notification_digests"
        constraints = [
            models.UniqueConstraint(fields=["user", "frequency", "period_key"], name="notification_digest_once")
        ]
        indexes = [models.Index(fields=["frequency", "status", "period_key"], name="notif_digest_period_idx")]

    def __str__(self) -> str:
        return f"{self.frequency} digest {self.period_key} ({self.status})"


class JobFailureAlert(models.Model):
    """What the admins were told about the final failures of one job (job_alerts.py): the
    first failure is told at once, those of the next hour in one summary with their count."""

    job_name = models.CharField(max_length=200, primary_key=True)
    last_alert_at = models.DateTimeField(null=True, blank=True)  # when the admins were last told
    unreported = models.PositiveIntegerField(default=0)  # failures since then, for the summary
    last_error = models.TextField(blank=True, default="")
    last_job_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "job_failure_alerts"

    def __str__(self) -> str:
        return f"{self.job_name}: {self.unreported} unreported"
