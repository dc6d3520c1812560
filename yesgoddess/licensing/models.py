"""Licenses, their status history, renewal offers and usage (spec B §5, §8.17-8.23).

Status changes go through `yesgoddess.licensing.transitions.transition` only; it checks
`ALLOWED_TRANSITIONS` and writes `LicenseStatusHistory` and an audit row. The `*_sent_at`
columns are once-only markers: a notice is sent when its marker is null, and the marker
is set in the same transaction that holds the license row while sending.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class LicenseStatus(models.TextChoices):
    DRAFT = "DRAFT"
    PENDING_APPROVAL = "PENDING_APPROVAL"
    PENDING_SIGNATURE = "PENDING_SIGNATURE"
    ACTIVE = "ACTIVE"
    EXPIRING_SOON = "EXPIRING_SOON"
    EXPIRED = "EXPIRED"
    RENEWED = "RENEWED"
    TERMINATED = "TERMINATED"
    DISPUTED = "DISPUTED"
    CANCELED = "CANCELED"
    SUSPENDED = "SUSPENDED"


S = LicenseStatus
# Spec B §5.4 (the original's REJECTED, not in the enum, is dropped).
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.PENDING_APPROVAL, S.CANCELED}),
    S.PENDING_APPROVAL: frozenset({S.PENDING_SIGNATURE, S.DRAFT, S.CANCELED}),
    S.PENDING_SIGNATURE: frozenset({S.ACTIVE, S.PENDING_APPROVAL, S.CANCELED}),
    S.ACTIVE: frozenset({S.EXPIRING_SOON, S.TERMINATED, S.DISPUTED, S.SUSPENDED}),
    S.EXPIRING_SOON: frozenset({S.EXPIRED, S.RENEWED, S.TERMINATED, S.ACTIVE, S.SUSPENDED}),
    S.EXPIRED: frozenset({S.RENEWED}),
    S.RENEWED: frozenset(),
    S.TERMINATED: frozenset(),
    S.CANCELED: frozenset(),
    S.DISPUTED: frozenset({S.ACTIVE, S.TERMINATED, S.SUSPENDED}),
    S.SUSPENDED: frozenset({S.ACTIVE, S.TERMINATED}),
}
# A license in one of these is in force (the brand may use the asset).
IN_FORCE = (S.ACTIVE, S.EXPIRING_SOON)


class LicenseType(models.TextChoices):
    EXCLUSIVE = "EXCLUSIVE"
    NON_EXCLUSIVE = "NON_EXCLUSIVE"
    EXCLUSIVE_TERRITORY = "EXCLUSIVE_TERRITORY"


class BillingFrequency(models.TextChoices):
    ONE_TIME = "ONE_TIME"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ANNUALLY = "ANNUALLY"


class License(models.Model):
    status = models.CharField(max_length=20, choices=LicenseStatus.choices, default=LicenseStatus.DRAFT)
    auto_renew = models.BooleanField(default=False)
    billing_frequency = models.CharField(max_length=16, choices=BillingFrequency.choices, null=True, blank=True)
    brand = models.ForeignKey("brands.Brand", on_delete=models.PROTECT, related_name="licenses")
    ip_asset = models.ForeignKey("assets.IpAsset", on_delete=models.PROTECT, related_name="licenses")
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="licenses"
    )
    parent_license = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="renewals"
    )
    license_type = models.CharField(max_length=24, choices=LicenseType.choices, default=LicenseType.NON_EXCLUSIVE)
    start_date = models.DateTimeField()
    end_date = models.DateTimeField()
    fee_cents = models.BigIntegerField(default=0)
    rev_share_bps = models.IntegerField(default=0)
    payment_terms = models.TextField(null=True, blank=True)
    scope_json = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Expiry lifecycle. grace_period_days 0 means "expire at the end date" (DECISIONS: default 7).
    grace_period_days = models.IntegerField(default=7)
    grace_period_end_date = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    # Once-only markers, one per message.
    ninety_day_notice_sent_at = models.DateTimeField(null=True, blank=True)
    sixty_day_notice_sent_at = models.DateTimeField(null=True, blank=True)
    thirty_day_notice_sent_at = models.DateTimeField(null=True, blank=True)
    grace_notice_sent_at = models.DateTimeField(null=True, blank=True)
    expired_notice_sent_at = models.DateTimeField(null=True, blank=True)
    re_engagement_sent_at = models.DateTimeField(null=True, blank=True)
    renewal_notified_at = models.DateTimeField(null=True, blank=True)
    renewal_final_notice_sent_at = models.DateTimeField(null=True, blank=True)
    # Usage tracking.
    usage_tracking_enabled = models.BooleanField(default=True)
    last_usage_at = models.DateTimeField(null=True, blank=True)
    total_usage_events = models.BigIntegerField(default=0)

    class Meta:
        db_table = "licenses"
        indexes = [
            models.Index(fields=["ip_asset", "status", "end_date"], name="license_asset_status_end_idx"),
            models.Index(fields=["brand", "status"], name="license_brand_status_idx"),
            models.Index(fields=["status", "end_date"], name="license_status_end_idx"),
            models.Index(fields=["status", "grace_period_end_date"], name="license_status_grace_idx"),
            models.Index(fields=["parent_license"], name="license_parent_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(rev_share_bps__gte=0, rev_share_bps__lte=10000), name="license_rev_share"
            ),
            models.CheckConstraint(condition=Q(fee_cents__gte=0), name="license_fee_not_negative"),
            models.CheckConstraint(condition=Q(grace_period_days__gte=0), name="license_grace_not_negative"),
            # One live renewal per license: two auto-renewal runs can never create two children.
            models.UniqueConstraint(
                fields=["parent_license"],
                condition=Q(parent_license__isnull=False, deleted_at__isnull=True) & ~Q(status="CANCELED"),
                name="license_one_live_renewal",
            ),
        ]

    def __str__(self) -> str:
        return f"License {self.pk} ({self.status})"


class LicenseStatusHistory(models.Model):
    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="status_history")
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    transitioned_at = models.DateTimeField(default=timezone.now)
    transitioned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "license_status_history"
        indexes = [models.Index(fields=["license", "transitioned_at"], name="license_history_idx")]


class RenewalOffer(models.Model):
    """Terms offered to a brand for renewing a license (spec B §5.C, one pricing function)."""

    class Status(models.TextChoices):
        PENDING = "PENDING"
        ACCEPTED = "ACCEPTED"
        REJECTED = "REJECTED"
        EXPIRED = "EXPIRED"

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="renewal_offers")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    original_fee_cents = models.BigIntegerField()
    fee_cents = models.BigIntegerField()
    rev_share_bps = models.IntegerField()
    start_date = models.DateTimeField()
    end_date = models.DateTimeField()
    duration_days = models.IntegerField()
    adjustments = models.JSONField(default=list, blank=True)  # [{"label", "percent"}], in the order applied
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    renewal_license = models.OneToOneField(
        License, null=True, blank=True, on_delete=models.SET_NULL, related_name="accepted_offer"
    )

    class Meta:
        db_table = "license_renewal_offers"
        constraints = [
            models.UniqueConstraint(fields=["license"], condition=Q(status="PENDING"), name="renewal_one_pending_offer")
        ]


class UsageType(models.TextChoices):
    VIEW = "view"
    DOWNLOAD = "download"
    IMPRESSION = "impression"
    CLICK = "click"
    PLAY = "play"
    STREAM = "stream"
    CUSTOM = "custom"


class LicenseUsageEvent(models.Model):
    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="usage_events")
    occurred_at = models.DateTimeField(default=timezone.now)
    usage_type = models.CharField(max_length=16, choices=UsageType.choices)
    quantity = models.IntegerField(default=1)
    geographic_location = models.CharField(max_length=100, null=True, blank=True)
    platform = models.CharField(max_length=50, null=True, blank=True)
    device_type = models.CharField(max_length=50, null=True, blank=True)
    referrer = models.TextField(null=True, blank=True)
    revenue_cents = models.BigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    session_id = models.CharField(max_length=128, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "license_usage_events"
        indexes = [
            models.Index(fields=["occurred_at", "license"], name="usage_event_day_idx"),
            models.Index(fields=["license", "-occurred_at"], name="usage_event_license_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="usage_quantity_positive"),
            models.CheckConstraint(condition=Q(revenue_cents__gte=0), name="usage_revenue_not_negative"),
        ]


class LicenseUsageDailyAggregate(models.Model):
    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="usage_aggregates")
    date = models.DateField()
    total_views = models.BigIntegerField(default=0)
    total_downloads = models.BigIntegerField(default=0)
    total_impressions = models.BigIntegerField(default=0)
    total_clicks = models.BigIntegerField(default=0)
    total_plays = models.BigIntegerField(default=0)
    total_streams = models.BigIntegerField(default=0)
    total_quantity = models.BigIntegerField(default=0)
    total_revenue_cents = models.BigIntegerField(default=0)
    unique_sessions = models.IntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "license_usage_daily_aggregates"
        constraints = [models.UniqueConstraint(fields=["license", "date"], name="usage_aggregate_per_day")]
        indexes = [models.Index(fields=["date"], name="usage_aggregate_date_idx")]


class LicenseUsageThreshold(models.Model):
    class Period(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        TOTAL = "total"

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="usage_thresholds")
    usage_type = models.CharField(max_length=16, choices=UsageType.choices)
    limit_quantity = models.BigIntegerField()
    period_type = models.CharField(max_length=8, choices=Period.choices)
    grace_percentage = models.IntegerField(default=0)
    warning_at_50 = models.BooleanField(default=True)
    warning_at_75 = models.BooleanField(default=True)
    warning_at_90 = models.BooleanField(default=True)
    warning_at_100 = models.BooleanField(default=True)
    last_warning_level = models.IntegerField(default=0)
    last_warning_at = models.DateTimeField(null=True, blank=True)
    # The period `last_warning_level` belongs to: a new period starts again from 0.
    last_warning_period_start = models.DateField(null=True, blank=True)
    allow_overage = models.BooleanField(default=False)
    overage_rate_cents = models.BigIntegerField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "license_usage_thresholds"
        indexes = [models.Index(fields=["license", "is_active"], name="usage_threshold_license_idx")]
        constraints = [models.CheckConstraint(condition=Q(limit_quantity__gt=0), name="usage_limit_positive")]


class LicenseUsageOverage(models.Model):
    class Status(models.TextChoices):
        DETECTED = "DETECTED"
        PENDING_APPROVAL = "PENDING_APPROVAL"
        APPROVED = "APPROVED"
        BILLED = "BILLED"
        DISPUTED = "DISPUTED"

    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="usage_overages")
    threshold = models.ForeignKey(LicenseUsageThreshold, on_delete=models.CASCADE, related_name="overages")
    period_start = models.DateField()
    period_end = models.DateField()
    usage_type = models.CharField(max_length=16, choices=UsageType.choices)
    limit_quantity = models.BigIntegerField()
    actual_quantity = models.BigIntegerField()
    overage_quantity = models.BigIntegerField()
    overage_rate_cents = models.BigIntegerField(null=True, blank=True)
    calculated_fee_cents = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DETECTED)
    approval_required = models.BooleanField(default=False)
    notified_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "license_usage_overages"
        constraints = [models.UniqueConstraint(fields=["threshold", "period_start"], name="usage_overage_per_period")]


class LicenseUsageForecast(models.Model):
    license = models.ForeignKey(License, on_delete=models.CASCADE, related_name="usage_forecasts")
    threshold = models.ForeignKey(
        LicenseUsageThreshold, null=True, blank=True, on_delete=models.CASCADE, related_name="forecasts"
    )
    usage_type = models.CharField(max_length=16, choices=UsageType.choices)
    forecast_date = models.DateField()
    period_start = models.DateField()
    period_end = models.DateField()
    predicted_quantity = models.BigIntegerField()
    lower_bound = models.BigIntegerField(null=True, blank=True)
    upper_bound = models.BigIntegerField(null=True, blank=True)
    confidence_level = models.DecimalField(max_digits=3, decimal_places=2, default=0.95)
    predicted_breach_date = models.DateField(null=True, blank=True)
    breach_probability = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    forecasting_method = models.CharField(max_length=50, default="LINEAR_REGRESSION")
    historical_days_used = models.IntegerField(null=True, blank=True)
    breach_alert_sent_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    calculated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "license_usage_forecasts"
        constraints = [
            models.UniqueConstraint(fields=["license", "usage_type", "forecast_date"], name="usage_forecast_per_day")
        ]
        indexes = [models.Index(fields=["predicted_breach_date"], name="usage_forecast_breach_idx")]


class LicensePerformanceSnapshot(models.Model):
    """Platform-wide license figures for one period (spec B §5.6 and §5.3 phase 5
    recommendations): one row per (last day, granularity), upserted."""

    class Granularity(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        RENEWALS_30D = "renewals_30d", "renewal metrics of the 30 days ending on date"

    date = models.DateField(help_text="the last day of the period")
    granularity = models.CharField(max_length=16, choices=Granularity.choices)
    period_start = models.DateField()
    period_end = models.DateField()
    total_revenue_cents = models.BigIntegerField(default=0)
    metrics = models.JSONField(default=dict)
    calculated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "license_performance_snapshots"
        constraints = [models.UniqueConstraint(fields=["date", "granularity"], name="performance_snapshot_per_period")]
