"""Email campaigns (spec C §4.6, with its defects fixed) and the email digest.

- `EmailCampaign`: what to send (one of CAMPAIGN_TEMPLATES, with its content fields), when
  (`scheduled_send_time`, empty: as soon as it is sent), how fast (`batch_size` recipients
  per job, `messages_per_hour`), where it stands (`status`) and counters computed from the
  recipients' states.
- `CampaignRecipient`: one row per address (unique per campaign) with its own state:
  PENDING -> SENDING (claimed, committed before the send) -> SENT / FAILED; SKIPPED when
  the address is suppressed or opted out at send time (or the campaign was cancelled);
  DEFERRED when the user takes this category of email as a digest.
- `EmailDeliveryPreference`: a user's choice, per bulk email category, between one
  message each (IMMEDIATE, the default: no row) and a DAILY or WEEKLY digest.
- `DeferredEmail`: an email kept for the user's digest; `digest` is set when a digest
  takes it, so each item is in exactly one digest.
- `EmailDigest`: one row per user, category, frequency and period (the once-only record).

Non-null columns carry a database default too (`db_default`), so rows inserted in plain
SQL (benchmarks, fixtures) stay valid.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from yesgoddess.emailing.models import EmailCategory

# Templates a campaign may use: email/<name>.{subject.txt,txt,html}, and the content
# fields each one needs (checked when the campaign is created).
CAMPAIGN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "campaign_announcement": ("headline", "body"),
    "campaign_newsletter": ("intro", "items"),
}
MAX_MESSAGES_PER_HOUR = 10_000_000  # 2,778 a second; EMAIL_RATE_LIMIT_PER_SECOND caps every send anyway
MAX_BATCH_SIZE = 1000


class CampaignStatus(models.TextChoices):
    DRAFT = "DRAFT"
    SCHEDULED = "SCHEDULED"
    SENDING = "SENDING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class RecipientStatus(models.TextChoices):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    DEFERRED = "DEFERRED"


class EmailCampaign(models.Model):
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="", db_default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT, db_default=CampaignStatus.DRAFT
    )
    template = models.CharField(max_length=64, choices=[(name, name) for name in CAMPAIGN_TEMPLATES])
    subject = models.CharField(max_length=500)
    preview_text = models.CharField(max_length=200, blank=True, default="", db_default="")
    content = models.JSONField(default=dict, db_default={}, blank=True)
    segment_criteria = models.JSONField(null=True, blank=True)
    # Empty: send as soon as it is sent (the spec's NOT NULL forced a made-up time).
    scheduled_send_time = models.DateTimeField(null=True, blank=True)
    send_started_at = models.DateTimeField(null=True, blank=True)
    send_completed_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status_reason = models.TextField(blank=True, default="", db_default="")  # why paused/cancelled/failed
    # The critical reputation conditions ({domain: {metric: value}}) standing when an
    # operator last resumed it: it is paused for reputation again only if they get worse.
    reputation_accepted = models.JSONField(default=dict, db_default={}, blank=True)
    messages_per_hour = models.PositiveIntegerField(
        default=1000, db_default=1000, validators=[MinValueValidator(1), MaxValueValidator(MAX_MESSAGES_PER_HOUR)]
    )
    batch_size = models.PositiveIntegerField(
        default=100, db_default=100, validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_SIZE)]
    )
    # Counters: the recipients' states, recomputed after every batch (exact, idempotent).
    recipient_count = models.PositiveIntegerField(default=0, db_default=0)
    sent_count = models.PositiveIntegerField(default=0, db_default=0)
    failed_count = models.PositiveIntegerField(default=0, db_default=0)
    skipped_count = models.PositiveIntegerField(default=0, db_default=0)
    deferred_count = models.PositiveIntegerField(default=0, db_default=0)
    # Provider events (webhooks) increment these.
    delivered_count = models.PositiveIntegerField(default=0, db_default=0)
    opened_count = models.PositiveIntegerField(default=0, db_default=0)
    clicked_count = models.PositiveIntegerField(default=0, db_default=0)
    bounced_count = models.PositiveIntegerField(default=0, db_default=0)
    complained_count = models.PositiveIntegerField(default=0, db_default=0)
    unsubscribed_count = models.PositiveIntegerField(default=0, db_default=0)
    job_id = models.CharField(max_length=64, blank=True, default="", db_default="")  # last enqueued batch job
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "email_campaigns"
        indexes = [
            models.Index(fields=["status"], name="campaign_status_idx"),
            models.Index(fields=["scheduled_send_time"], name="campaign_scheduled_idx"),
            models.Index(fields=["created_at"], name="campaign_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"


class CampaignRecipient(models.Model):
    campaign = models.ForeignKey(EmailCampaign, on_delete=models.CASCADE, related_name="recipients")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    email = models.CharField(max_length=254)  # normalised (lower-cased)
    status = models.CharField(
        max_length=16,
        choices=RecipientStatus.choices,
        default=RecipientStatus.PENDING,
        db_default=RecipientStatus.PENDING,
    )
    personalization = models.JSONField(default=dict, db_default={}, blank=True)
    error = models.TextField(blank=True, default="", db_default="")
    message_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "campaign_recipients"
        constraints = [models.UniqueConstraint(fields=["campaign", "email"], name="campaign_recipient_once")]
        indexes = [
            # The batch claim: PENDING rows of one campaign in primary-key order.
            models.Index(fields=["campaign", "status", "id"], name="campaign_rcpt_claim_idx"),
            models.Index(fields=["user"], name="campaign_rcpt_user_idx"),
            models.Index(fields=["email"], name="campaign_rcpt_email_idx"),
            models.Index(fields=["message_id"], name="campaign_rcpt_msgid_idx", condition=~Q(message_id="")),
        ]


class DigestFrequency(models.TextChoices):
    IMMEDIATE = "IMMEDIATE"
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"


# Bulk categories a user may take as a digest ("all" is an opt-out scope, not a category).
DEFERRABLE_CATEGORIES = [(EmailCategory.CAMPAIGNS.value, EmailCategory.CAMPAIGNS.label)]


class EmailDeliveryPreference(models.Model):
    """How a user takes one category of bulk email: each message (no row), or a digest."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_delivery_prefs")
    category = models.CharField(max_length=16, choices=DEFERRABLE_CATEGORIES)
    frequency = models.CharField(
        max_length=10,
        choices=DigestFrequency.choices,
        default=DigestFrequency.IMMEDIATE,
        db_default=DigestFrequency.IMMEDIATE,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "email_delivery_preferences"
        constraints = [models.UniqueConstraint(fields=["user", "category"], name="email_delivery_pref_once")]


class DigestStatus(models.TextChoices):
    PENDING = "PENDING"
    SENDING = "SENDING"
    SENT = "SENT"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class EmailDigest(models.Model):
    """One digest for one user, category, frequency and period: created once (unique), so
    a user gets at most one digest per period however often the job runs."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=16, choices=DEFERRABLE_CATEGORIES)
    frequency = models.CharField(max_length=10, choices=DigestFrequency.choices)
    period = models.DateField()  # the run's UTC date (DAILY) or the Monday of its ISO week (WEEKLY)
    cutoff = models.DateTimeField()  # items created up to this moment belong to this digest
    status = models.CharField(
        max_length=10, choices=DigestStatus.choices, default=DigestStatus.PENDING, db_default=DigestStatus.PENDING
    )
    item_count = models.PositiveIntegerField(default=0, db_default=0)
    error = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "email_digests"
        constraints = [
            models.UniqueConstraint(fields=["user", "category", "frequency", "period"], name="email_digest_per_period")
        ]
        indexes = [models.Index(fields=["frequency", "status", "id"], name="email_digest_claim_idx")]


class DeferredEmail(models.Model):
    """A bulk email kept for the user's next digest instead of being sent on its own."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    category = models.CharField(max_length=16, choices=DEFERRABLE_CATEGORIES)
    campaign = models.ForeignKey(EmailCampaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=500)
    summary = models.TextField(blank=True, default="", db_default="")
    link = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    digest = models.ForeignKey(EmailDigest, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")

    class Meta:
        db_table = "deferred_emails"
        constraints = [
            # A campaign defers at most one item per user.
            models.UniqueConstraint(
                fields=["campaign", "user"],
                name="deferred_email_once_per_campaign",
                condition=Q(campaign__isnull=False),
            )
        ]
        indexes = [
            models.Index(
                fields=["user", "category", "created_at"], name="deferred_email_pending_idx", condition=Q(digest=None)
            ),
            models.Index(fields=["digest"], name="deferred_email_digest_idx"),
        ]
