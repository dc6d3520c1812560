"""Creators (spec B §8.11) and their monthly reports.

New non-null columns carry a database default too (`db_default`), so rows inserted in
plain SQL (benchmarks, fixtures) stay valid.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone


class CreatorVerificationStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class OnboardingStatus(models.TextChoices):
    """Payout (Stripe Connect) onboarding."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


# The specialty vocabulary (spec B §8.11).
SPECIALTIES = (
    "photography",
    "videography",
    "motion-graphics",
    "illustration",
    "3d-design",
    "graphic-design",
    "copywriting",
    "music-composition",
    "sound-design",
    "brand-strategy",
    "art-direction",
    "animation",
)


class Creator(models.Model):
    """A creator profile: the owner side of IP ownership and royalties."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="creator")
    display_name = models.CharField(max_length=255)  # stageName
    # Payout threshold (spec C §2.1 step 9): a custom minimum wins, else VIP, else default.
    vip_status = models.BooleanField(default=False, db_default=False)
    custom_minimum_payout_cents = models.BigIntegerField(null=True, blank=True)
    # A JSON array drawn from SPECIALTIES (GIN-indexed for project matching).
    specialties = models.JSONField(default=list, db_default=[], blank=True)
    verification_status = models.CharField(
        max_length=16,
        choices=CreatorVerificationStatus.choices,
        default=CreatorVerificationStatus.PENDING,
        db_default=CreatorVerificationStatus.PENDING,
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    onboarding_status = models.CharField(
        max_length=16,
        choices=OnboardingStatus.choices,
        default=OnboardingStatus.PENDING,
        db_default=OnboardingStatus.PENDING,
    )
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # creator-onboarding-reminder: how many reminders went out (at most 4) and the last one.
    onboarding_reminders_sent = models.IntegerField(default=0, db_default=0)
    onboarding_reminder_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "creators"
        indexes = [
            GinIndex(fields=["specialties"], name="creator_specialties_gin"),
            models.Index(fields=["onboarding_status", "verification_status"], name="creator_onboarding_idx"),
            models.Index(fields=["verification_status", "created_at"], name="creator_verification_idx"),
        ]

    def __str__(self) -> str:
        return self.display_name


class ReportStatus(models.TextChoices):
    PENDING = "PENDING"  # figures stored, email not sent yet
    SENDING = "SENDING"  # claimed by a run; left here only if that run died mid-send
    SENT = "SENT"
    REFUSED = "REFUSED"  # the mail server refused the message
    NO_ADDRESS = "NO_ADDRESS"  # the account has no usable email address


class CreatorMonthlyReport(models.Model):
    """One performance report per creator per calendar month: its figures and whether
    the email went out. The row is the once-only marker of creator-monthly-report."""

    creator = models.ForeignKey(Creator, on_delete=models.CASCADE, related_name="monthly_reports")
    month = models.DateField(help_text="first day of the month reported on (UTC)")
    earnings_cents = models.BigIntegerField(default=0)
    new_licenses = models.IntegerField(default=0)
    active_licenses = models.IntegerField(default=0)
    profile_views = models.IntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=ReportStatus.choices, default=ReportStatus.PENDING, db_default=ReportStatus.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "creator_monthly_reports"
        constraints = [models.UniqueConstraint(fields=["creator", "month"], name="creator_report_per_month")]
        indexes = [
            models.Index(
                fields=["month", "id"], name="creator_report_pending_idx", condition=Q(status=ReportStatus.PENDING)
            )
        ]

    def __str__(self) -> str:
        return f"report {self.month:%Y-%m} for creator {self.creator_id}"


class ReportedEarning(models.Model):
    """A royalty statement counted in a monthly report. A statement of a LOCKED run is
    counted once, in the first report prepared for its creator after the lock (the
    unique statement makes "once" hold even for two reports prepared at the same time);
    `earnings_cents` is what that run earned the creator (carried-in balances excluded)."""

    report = models.ForeignKey(CreatorMonthlyReport, on_delete=models.CASCADE, related_name="earnings")
    statement = models.OneToOneField("royalties.RoyaltyStatement", on_delete=models.CASCADE, related_name="+")
    earnings_cents = models.BigIntegerField()

    class Meta:
        db_table = "creator_report_earnings"

    def __str__(self) -> str:
        return f"statement {self.statement_id} in report {self.report_id}"
