"""Who may not be emailed: provider suppressions and recipients' own opt-outs; what
happened to the messages sent (email events) and the daily reputation figures.

A suppression (hard bounce, spam complaint, manual) stops every email to the address;
an opt-out stops one category of bulk email (or all of them, category "all"). Addresses
are stored lower-cased.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

EMPTY_LIST = models.Value([], output_field=models.JSONField())
EMPTY_OBJECT = models.Value({}, output_field=models.JSONField())


class SuppressionReason(models.TextChoices):
    BOUNCE = "BOUNCE"
    COMPLAINT = "COMPLAINT"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MANUAL = "MANUAL"


class EmailSuppression(models.Model):
    email = models.CharField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "email_suppressions"

    def __str__(self) -> str:
        return f"suppressed ({self.reason})"


class EmailCategory(models.TextChoices):
    ALL = "all", "every bulk email"
    CAMPAIGNS = "campaigns", "campaigns and newsletters"
    DIGESTS = "digests", "notification digests"
    MESSAGES = "messages", "message digests"


class EmailOptOut(models.Model):
    email = models.CharField(max_length=254)
    category = models.CharField(max_length=16, choices=EmailCategory.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "email_opt_outs"
        constraints = [models.UniqueConstraint(fields=["email", "category"], name="email_opt_out_once")]


class EmailEventType(models.TextChoices):
    """What happened to one message for one recipient (spec C §4.1 EmailEventType, plus the
    provider's other outcomes so that nothing a webhook reports is lost)."""

    SENT = "SENT"  # handed to the delivery backend and accepted (recorded by RateLimitedBackend)
    DELIVERED = "DELIVERED"
    DEFERRED = "DEFERRED"  # a temporary failure: the provider keeps trying (a soft bounce)
    BOUNCED = "BOUNCED"
    REJECTED = "REJECTED"  # the provider refused to send it at all
    COMPLAINED = "COMPLAINED"
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    UNSUBSCRIBED = "UNSUBSCRIBED"  # through the provider's own unsubscribe handling
    FAILED = "FAILED"


class EmailEvent(models.Model):
    """One email event: a send (recorded by the email backend) or a provider webhook event
    (django-anymail's tracking signal). A webhook delivered twice is recorded once: the
    provider's event id is unique per provider."""

    event_type = models.CharField(max_length=16, choices=EmailEventType.choices)
    provider = models.CharField(max_length=32, help_text='"backend" for sends, else the ESP name')
    event_id = models.CharField(max_length=255, null=True, blank=True, help_text="the provider's event id")
    message_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    email = models.CharField(max_length=254, help_text="lower-cased")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="email_events",
        db_index=False,  # (user, event_type) below serves it
    )
    sender_domain = models.CharField(max_length=253, blank=True, default="", db_default="")
    occurred_at = models.DateTimeField(default=timezone.now, db_default=Now())
    recorded_at = models.DateTimeField(default=timezone.now, db_default=Now())
    subject = models.CharField(max_length=255, blank=True, default="", db_default="")
    reject_reason = models.CharField(max_length=32, blank=True, default="", db_default="")
    description = models.TextField(blank=True, default="", db_default="", help_text="the provider's reason, raw")
    mta_response = models.TextField(blank=True, default="", db_default="")
    click_url = models.TextField(blank=True, default="", db_default="")
    user_agent = models.TextField(blank=True, default="", db_default="")
    tags = models.JSONField(default=list, db_default=EMPTY_LIST, blank=True)
    metadata = models.JSONField(default=dict, db_default=EMPTY_OBJECT, blank=True)

    class Meta:
        db_table = "email_events"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "event_id"],
                condition=models.Q(event_id__isnull=False),
                name="email_event_once_per_provider_id",
            )
        ]
        indexes = [
            # reputation-monitoring: every event of the last 30 days, by type.
            models.Index(fields=["occurred_at", "event_type"], name="email_event_time_type_idx"),
            models.Index(fields=["message_id"], name="email_event_message_idx"),
            models.Index(fields=["email", "event_type"], name="email_event_email_type_idx"),
            models.Index(fields=["user", "event_type"], name="email_event_user_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}"


class EmailReputationMetric(models.Model):
    """One day's reputation figures for one sender domain, over the 30 days before the run
    (reputation-monitoring; a rerun the same day replaces the figures). `alerted` and
    `emailed` are the conditions already reported that day, so a rerun does not repeat
    an alert."""

    date = models.DateField()
    sender_domain = models.CharField(max_length=253)
    window_days = models.PositiveSmallIntegerField(default=30, db_default=30)
    sent = models.PositiveIntegerField(default=0, db_default=0)
    delivered = models.PositiveIntegerField(default=0, db_default=0)
    bounced = models.PositiveIntegerField(default=0, db_default=0)
    complained = models.PositiveIntegerField(default=0, db_default=0)
    opened = models.PositiveIntegerField(default=0, db_default=0, help_text="messages opened at least once")
    clicked = models.PositiveIntegerField(default=0, db_default=0, help_text="messages clicked at least once")
    bounce_rate = models.FloatField(default=0, db_default=0)
    complaint_rate = models.FloatField(default=0, db_default=0)
    delivery_rate = models.FloatField(default=0, db_default=0)
    open_rate = models.FloatField(null=True, blank=True)
    click_rate = models.FloatField(null=True, blank=True)
    reputation_score = models.PositiveSmallIntegerField(default=100, db_default=100)
    warnings = models.JSONField(
        default=list, db_default=EMPTY_LIST, blank=True, help_text="the conditions found by the last run"
    )
    alerted = models.JSONField(
        default=list, db_default=EMPTY_LIST, blank=True, help_text="conditions admins were notified of (in-app)"
    )
    emailed = models.JSONField(
        default=list, db_default=EMPTY_LIST, blank=True, help_text="conditions admins were emailed about"
    )
    campaigns_paused = models.PositiveIntegerField(default=0, db_default=0)
    computed_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "email_reputation_metrics"
        constraints = [
            models.UniqueConstraint(fields=["date", "sender_domain"], name="email_reputation_once_per_day"),
        ]
        indexes = [models.Index(fields=["sender_domain", "-date"], name="email_reputation_domain_idx")]

    def __str__(self) -> str:
        return f"{self.sender_domain} {self.date}: {self.reputation_score}"
