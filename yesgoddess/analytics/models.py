"""Analytics events, their enrichment and the metric roll-ups (spec B §8.13-8.14,
spec C §2.5-§2.7, §4.7, §4.8).

Jobs of every domain record what happened as `Event` rows (`system_event`); clients post
theirs to `POST /api/events/` (`yesgoddess.analytics.views`), which marks them
`enrich_pending`. The batched enrichment (`enrichment.py`) clears the flag in the same
statement that merges the enrichment keys, so a pending event is exactly one that still
needs it (partial index `event_enrich_pending_idx`). Events written by jobs are never
pending: they carry ids only and have no user agent or session to enrich.

Every metric table is keyed with NULLs *not* distinct (PostgreSQL 15), so a group with
no project or license upserts like any other (the original's keys let NULLs duplicate).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone


class Event(models.Model):
    occurred_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=50)
    event_type = models.CharField(max_length=100)
    actor_type = models.CharField(max_length=50, null=True, blank=True)
    actor_id = models.CharField(max_length=64, null=True, blank=True)
    # No single-column indexes on the references: the (column, occurred_at) indexes below
    # serve every lookup by one of them, and each index is written for every event stored
    # and again when its enrichment is merged in.
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    ip_asset = models.ForeignKey(
        "assets.IpAsset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    license = models.ForeignKey(
        "licensing.License", null=True, blank=True, on_delete=models.SET_NULL, related_name="events", db_index=False
    )
    user_id = models.BigIntegerField(null=True, blank=True)
    brand_id = models.BigIntegerField(null=True, blank=True)
    creator_id = models.BigIntegerField(null=True, blank=True)
    post = models.ForeignKey(
        "blog.Post", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    props_json = models.JSONField(default=dict, blank=True)
    session_id = models.CharField(max_length=128, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Enrichment state: pending (posted through the API, not enriched yet), then either
    # enriched_at or enrichment_error (a poison event: the reason, never retried).
    enrich_pending = models.BooleanField(default=False, db_default=False)
    enriched_at = models.DateTimeField(null=True, blank=True)
    enrichment_error = models.TextField(null=True, blank=True)

    class Meta:
        db_table = "events"
        indexes = [
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
            models.Index(fields=["event_type", "occurred_at"], name="event_type_occurred_idx"),
            # Partial: a lookup is always by one id (`license_id = x` implies NOT NULL), and
            # most events lack most references, whose NULL entries were written on every
            # insert and again on every enrichment update for nothing (about 14 us an event).
            models.Index(
                fields=["license", "occurred_at"], name="event_license_occurred_idx", condition=Q(license__isnull=False)
            ),
            models.Index(
                fields=["ip_asset", "occurred_at"], name="event_asset_occurred_idx", condition=Q(ip_asset__isnull=False)
            ),
            models.Index(
                fields=["project", "occurred_at"], name="event_project_occurred_idx", condition=Q(project__isnull=False)
            ),
            models.Index(
                fields=["post", "occurred_at"], name="event_post_occurred_idx", condition=Q(post__isnull=False)
            ),
            models.Index(fields=["id"], name="event_enrich_pending_idx", condition=Q(enrich_pending=True)),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.occurred_at:%Y-%m-%d %H:%M}"


def system_event(event_type: str, **fields: Any) -> Event:
    """An unsaved Event written by a job (source "system"); ids only, never personal data."""
    return Event(source="system", actor_type="system", event_type=event_type, **fields)


class DailyMetric(models.Model):
    # No single-column indexes: the (column, date) indexes below serve every lookup by one
    # of these columns, and each index is written for every row the nightly roll-up stores.
    date = models.DateField()
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    ip_asset = models.ForeignKey(
        "assets.IpAsset", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    license = models.ForeignKey(
        "licensing.License",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="daily_metrics",
        db_index=False,
    )
    views = models.IntegerField(default=0)
    clicks = models.IntegerField(default=0)
    conversions = models.IntegerField(default=0)
    revenue_cents = models.BigIntegerField(default=0)
    unique_visitors = models.IntegerField(default=0)
    engagement_time = models.IntegerField(default=0)
    metadata = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "daily_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["date", "project", "ip_asset", "license"], name="daily_metric_key", nulls_distinct=False
            )
        ]
        indexes = [
            models.Index(fields=["license", "date"], name="daily_metric_license_idx"),
            models.Index(fields=["ip_asset", "date"], name="daily_metric_asset_idx"),
            models.Index(fields=["project", "date"], name="daily_metric_project_idx"),
        ]


class Attribution(models.Model):
    """Where an event came from (spec C §4.7): written by the enrichment, one per event."""

    event = models.OneToOneField(Event, on_delete=models.CASCADE, related_name="attribution")
    utm_source = models.CharField(max_length=255, null=True, blank=True)
    utm_medium = models.CharField(max_length=255, null=True, blank=True)
    utm_campaign = models.CharField(max_length=255, null=True, blank=True)
    utm_term = models.CharField(max_length=255, null=True, blank=True)
    utm_content = models.CharField(max_length=255, null=True, blank=True)
    referrer = models.TextField(null=True, blank=True)
    landing_page = models.TextField(null=True, blank=True)
    device_type = models.CharField(max_length=50, null=True, blank=True)
    browser = models.CharField(max_length=100, null=True, blank=True)
    os = models.CharField(max_length=100, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "attribution"
        indexes = [
            models.Index(fields=["utm_source", "utm_medium", "utm_campaign"], name="attribution_utm_idx"),
        ]


class RollupMetric(models.Model):
    """Abstract: the dimensions and figures of a weekly or monthly roll-up."""

    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    ip_asset = models.ForeignKey("assets.IpAsset", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    license = models.ForeignKey("licensing.License", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    total_views = models.IntegerField(default=0, db_default=0)
    total_clicks = models.IntegerField(default=0, db_default=0)
    total_conversions = models.IntegerField(default=0, db_default=0)
    total_revenue_cents = models.BigIntegerField(default=0, db_default=0)
    unique_visitors = models.IntegerField(default=0, db_default=0)
    total_engagement_time = models.BigIntegerField(default=0, db_default=0)
    # Growth against the previous period's row: NULL when there is none.
    views_growth_percent = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    clicks_growth_percent = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    conversions_growth_percent = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    revenue_growth_percent = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    # Totals divided by the number of days that had a daily row (spec C §2.6.1 step 6).
    avg_daily_views = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    avg_daily_clicks = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    avg_daily_conversions = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    avg_daily_revenue_cents = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    aggregation_version = models.CharField(max_length=20, default="1.0", db_default="1.0")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        abstract = True


class WeeklyMetric(RollupMetric):
    """One ISO week (Monday to Sunday, UTC) per (project, asset, license)."""

    week_start_date = models.DateField()
    week_end_date = models.DateField()
    days_in_period = models.IntegerField(default=7, db_default=7)

    class Meta:
        db_table = "weekly_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["week_start_date", "project", "ip_asset", "license"],
                name="weekly_metric_key",
                nulls_distinct=False,
            )
        ]
        indexes = [
            models.Index(fields=["-week_start_date"], name="weekly_metric_week_idx"),
            models.Index(fields=["project", "-week_start_date"], name="weekly_metric_project_idx"),
            models.Index(fields=["ip_asset", "-week_start_date"], name="weekly_metric_asset_idx"),
            models.Index(fields=["license", "-week_start_date"], name="weekly_metric_license_idx"),
        ]


class MonthlyMetric(RollupMetric):
    """One calendar month (UTC) per (project, asset, license)."""

    month_start_date = models.DateField()
    month_end_date = models.DateField()
    year = models.IntegerField()
    month = models.IntegerField()
    weeks_in_month = models.IntegerField(null=True, blank=True)
    weekly_breakdown = models.JSONField(default=list, blank=True)
    days_in_period = models.IntegerField()

    class Meta:
        db_table = "monthly_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["year", "month", "project", "ip_asset", "license"],
                name="monthly_metric_key",
                nulls_distinct=False,
            ),
            models.CheckConstraint(condition=Q(month__gte=1, month__lte=12), name="monthly_metric_month"),
        ]
        indexes = [
            models.Index(fields=["-year", "-month"], name="monthly_metric_period_idx"),
            models.Index(fields=["project", "-year", "-month"], name="monthly_metric_project_idx"),
            models.Index(fields=["ip_asset", "-year", "-month"], name="monthly_metric_asset_idx"),
            models.Index(fields=["license", "-year", "-month"], name="monthly_metric_license_idx"),
        ]


class PostDailyMetric(models.Model):
    """One blog post's figures for one UTC day (spec C §2.5.3, §4.8)."""

    date = models.DateField()
    post = models.ForeignKey("blog.Post", on_delete=models.CASCADE, related_name="daily_metrics")
    views = models.IntegerField(default=0, db_default=0)
    unique_visitors = models.IntegerField(default=0, db_default=0)
    total_engagement_time_seconds = models.BigIntegerField(default=0, db_default=0)
    avg_engagement_time_seconds = models.FloatField(default=0, db_default=0)
    avg_scroll_depth_percentage = models.FloatField(default=0, db_default=0)
    cta_clicks = models.IntegerField(default=0, db_default=0)
    shares = models.IntegerField(default=0, db_default=0)
    bounce_rate = models.FloatField(default=0, db_default=0)
    conversion_rate = models.FloatField(default=0, db_default=0)
    email_captures = models.IntegerField(default=0, db_default=0)
    email_capture_rate = models.FloatField(default=0, db_default=0)
    top_referrers = models.JSONField(default=list, blank=True)
    top_cta_types = models.JSONField(default=list, blank=True)
    device_breakdown = models.JSONField(default=dict, blank=True)
    source_breakdown = models.JSONField(default=dict, blank=True)
    social_share_breakdown = models.JSONField(default=dict, blank=True)
    experiment_data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        db_table = "post_daily_metrics"
        constraints = [models.UniqueConstraint(fields=["date", "post"], name="post_daily_metric_key")]
        indexes = [
            models.Index(fields=["date"], name="post_daily_metric_date_idx"),
            models.Index(fields=["post", "date"], name="post_daily_metric_post_idx"),
        ]


class MetricsAggregationLog(models.Model):
    """One row per aggregation run (daily, post_daily, weekly, monthly): RUNNING, then
    COMPLETED with its counts and duration, or FAILED with the error."""

    class Status(models.TextChoices):
        RUNNING = "RUNNING"
        COMPLETED = "COMPLETED"
        FAILED = "FAILED"

    job_type = models.CharField(max_length=50)
    period_start_date = models.DateField()
    period_end_date = models.DateField()
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    records_processed = models.IntegerField(default=0, db_default=0)
    records_created = models.IntegerField(default=0, db_default=0)
    records_updated = models.IntegerField(default=0, db_default=0)
    records_deleted = models.IntegerField(default=0, db_default=0)
    errors_count = models.IntegerField(default=0, db_default=0)
    duration_seconds = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    error_message = models.TextField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "metrics_aggregation_jobs_log"
        indexes = [
            models.Index(fields=["job_type", "-period_start_date"], name="metrics_log_type_period_idx"),
            models.Index(fields=["status", "-started_at"], name="metrics_log_status_idx"),
        ]
