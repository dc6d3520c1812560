"""Royalty runs, statements and lines (spec C §4.4 as settled by DECISIONS.md).

Amounts are integer cents. A line's `line_type` says what it is; license and asset are
null for the lines that are not about one license (carry-overs, notes, adjustments).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class RoyaltyRun(models.Model):
    class Status(models.TextChoices):
        DRAFT = "DRAFT"
        CALCULATING = "CALCULATING"
        CALCULATED = "CALCULATED"
        LOCKED = "LOCKED"
        FAILED = "FAILED"

    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    total_revenue_cents = models.BigIntegerField(default=0)
    total_royalties_cents = models.BigIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    notes = models.TextField(null=True, blank=True)
    calculation_job_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "royalty_runs"
        indexes = [
            models.Index(fields=["period_start", "period_end"], name="royalty_run_period_idx"),
            models.Index(fields=["status"], name="royalty_run_status_idx"),
        ]


class RoyaltyStatement(models.Model):
    class Status(models.TextChoices):
        PENDING = "PENDING"
        HELD = "HELD"
        CARRIED = "CARRIED"
        REVIEWED = "REVIEWED"
        DISPUTED = "DISPUTED"
        RESOLVED = "RESOLVED"
        PAID = "PAID"

    royalty_run = models.ForeignKey(RoyaltyRun, on_delete=models.CASCADE, related_name="statements")
    creator = models.ForeignKey("creators.Creator", on_delete=models.PROTECT, related_name="royalty_statements")
    total_earnings_cents = models.BigIntegerField(default=0)
    platform_fee_cents = models.BigIntegerField(default=0)
    net_payable_cents = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    notified_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "royalty_statements"
        constraints = [models.UniqueConstraint(fields=["royalty_run", "creator"], name="statement_per_run_creator")]
        indexes = [models.Index(fields=["creator", "status"], name="statement_creator_status_idx")]


class RoyaltyLine(models.Model):
    class LineType(models.TextChoices):
        LICENSE = "LICENSE"
        CARRYOVER = "CARRYOVER"
        THRESHOLD_NOTE = "THRESHOLD_NOTE"
        ADJUSTMENT = "ADJUSTMENT"

    royalty_statement = models.ForeignKey(RoyaltyStatement, on_delete=models.CASCADE, related_name="lines")
    line_type = models.CharField(max_length=16, choices=LineType.choices, default=LineType.LICENSE)
    license = models.ForeignKey(
        "licensing.License", null=True, blank=True, on_delete=models.PROTECT, related_name="royalty_lines"
    )
    ip_asset = models.ForeignKey(
        "assets.IpAsset", null=True, blank=True, on_delete=models.PROTECT, related_name="royalty_lines"
    )
    revenue_cents = models.BigIntegerField(default=0)
    share_bps = models.IntegerField(default=0)
    calculated_royalty_cents = models.BigIntegerField(default=0)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    metadata = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "royalty_lines"
        indexes = [
            models.Index(fields=["license"], name="royalty_line_license_idx"),
            models.Index(fields=["royalty_statement"], name="royalty_line_statement_idx"),
        ]
