"""Analytics events and daily metrics (spec B §8.13-8.14, spec C §4.7).

Jobs of every domain record what happened as `Event` rows; the analytics jobs (enrichment,
roll-ups) read them. `DailyMetric` is keyed by (date, project, asset, license) with NULLs
*not* distinct, so a platform-wide row upserts like any other (the original's key let
NULLs duplicate).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class Event(models.Model):
    occurred_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=50)
    event_type = models.CharField(max_length=100)
    actor_type = models.CharField(max_length=50, null=True, blank=True)
    actor_id = models.CharField(max_length=64, null=True, blank=True)
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ip_asset = models.ForeignKey("assets.IpAsset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    license = models.ForeignKey(
        "licensing.License", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    user_id = models.BigIntegerField(null=True, blank=True)
    brand_id = models.BigIntegerField(null=True, blank=True)
    creator_id = models.BigIntegerField(null=True, blank=True)
    props_json = models.JSONField(default=dict, blank=True)
    session_id = models.CharField(max_length=128, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "events"
        indexes = [
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
            models.Index(fields=["event_type", "occurred_at"], name="event_type_occurred_idx"),
            models.Index(fields=["license", "occurred_at"], name="event_license_occurred_idx"),
            models.Index(fields=["ip_asset", "occurred_at"], name="event_asset_occurred_idx"),
            models.Index(fields=["project", "occurred_at"], name="event_project_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} @ {self.occurred_at:%Y-%m-%d %H:%M}"


def system_event(event_type: str, **fields: Any) -> Event:
    """An unsaved Event written by a job (source "system"); ids only, never personal data."""
    return Event(source="system", actor_type="system", event_type=event_type, **fields)


class DailyMetric(models.Model):
    date = models.DateField()
    project = models.ForeignKey("projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    ip_asset = models.ForeignKey("assets.IpAsset", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    license = models.ForeignKey(
        "licensing.License", null=True, blank=True, on_delete=models.CASCADE, related_name="daily_metrics"
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
            models.Index(fields=["date"], name="daily_metric_date_idx"),
            models.Index(fields=["license", "date"], name="daily_metric_license_idx"),
            models.Index(fields=["ip_asset", "date"], name="daily_metric_asset_idx"),
            models.Index(fields=["project", "date"], name="daily_metric_project_idx"),
        ]
