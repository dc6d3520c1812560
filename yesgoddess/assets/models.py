"""IP assets and what hangs off them (spec A §3.2-§3.5)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AssetType(models.TextChoices):
    IMAGE = "IMAGE"
    VIDEO = "VIDEO"
    AUDIO = "AUDIO"
    DOCUMENT = "DOCUMENT"
    THREE_D = "THREE_D"
    OTHER = "OTHER"


class AssetStatus(models.TextChoices):
    DRAFT = "DRAFT"
    PROCESSING = "PROCESSING"
    REVIEW = "REVIEW"
    APPROVED = "APPROVED"
    PUBLISHED = "PUBLISHED"
    REJECTED = "REJECTED"
    ARCHIVED = "ARCHIVED"


class ScanStatus(models.TextChoices):
    PENDING = "PENDING"
    SCANNING = "SCANNING"
    CLEAN = "CLEAN"
    INFECTED = "INFECTED"
    ERROR = "ERROR"


class IpAsset(models.Model):
    """An uploaded file and its processing state.

    Storage keys, never signed URLs, are stored: the original at `storage_key`, the
    quarantined copy at `quarantine_key`, derivatives under `derivatives/<id>/` and
    listed in `metadata` (each job writes its own top-level key, merged atomically).
    """

    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="assets"
    )
    title = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    type = models.CharField(max_length=16, choices=AssetType.choices)
    storage_key = models.CharField(max_length=1024, unique=True)
    quarantine_key = models.CharField(max_length=1024, null=True, blank=True)
    original_filename = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField()
    mime_type = models.CharField(max_length=100, help_text="detected from the content")
    declared_mime_type = models.CharField(max_length=100, blank=True)
    version = models.IntegerField(default=1)
    parent_asset = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derivatives"
    )
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=AssetStatus.choices, default=AssetStatus.DRAFT)
    scan_status = models.CharField(max_length=16, choices=ScanStatus.choices, default=ScanStatus.PENDING)
    scan_result = models.JSONField(null=True, blank=True)
    rejection_reason = models.TextField(null=True, blank=True)
    # Set when the pipeline gave up on the asset (scan error, unreadable file); what
    # upload-cleanup's "failed uploads" rule keys on.
    pipeline_failed_at = models.DateTimeField(null=True, blank=True)
    # Set once the upload was accepted and processing began: an asset that ever reached
    # PROCESSING is never an abandoned upload (spec A §2.12 defect).
    processing_started_at = models.DateTimeField(null=True, blank=True)
    # Failures that were ours, not the file's (clamd unreachable, a tool missing or out of
    # time, a killed worker), by step: {"scan" | "thumbnails" | "extracted" | "finalize":
    # {"error", "since", "at", "attempts", "final"}}. "final": false while RQ still retries
    # (processing is delayed), true once it gave up (a rescan or regenerate clears it; the
    # scan sweep rescans by itself). NULL when nothing is wrong. Never a rejection, never
    # purged. See `faults.py`.
    processing_error = models.JSONField(null=True, blank=True)
    # When the uploader was told that processing is delayed on our side (once per episode;
    # cleared with the last processing_error entry).
    delay_notified_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assets")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "ip_assets"
        indexes = [
            models.Index(fields=["project", "status"], name="asset_project_status_idx"),
            models.Index(fields=["created_by", "status"], name="asset_creator_status_idx"),
            models.Index(fields=["type", "status"], name="asset_type_status_idx"),
            models.Index(fields=["deleted_at"], name="asset_deleted_idx", condition=Q(deleted_at__isnull=False)),
            models.Index(fields=["scan_status", "updated_at"], name="asset_scan_updated_idx"),
            models.Index(fields=["status", "created_at"], name="asset_status_created_idx"),
            models.Index(fields=["id"], name="asset_processing_error_idx", condition=Q(processing_error__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.type})"

    @property
    def derivatives_prefix(self) -> str:
        return f"derivatives/{self.pk}/"


class FileRelationship(models.Model):
    """A typed link between two assets (derived_from, preview_of, ...)."""

    source_asset = models.ForeignKey(IpAsset, on_delete=models.CASCADE, related_name="outgoing_relationships")
    target_asset = models.ForeignKey(IpAsset, on_delete=models.CASCADE, related_name="incoming_relationships")
    relationship_type = models.CharField(max_length=32)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "file_relationships"
        constraints = [
            models.UniqueConstraint(
                fields=["source_asset", "target_asset", "relationship_type"],
                condition=Q(deleted_at__isnull=True),
                name="file_relationship_unique_live",
            ),
            models.CheckConstraint(
                condition=~Q(source_asset=models.F("target_asset")), name="file_relationship_not_self"
            ),
        ]


class OwnershipType(models.TextChoices):
    PRIMARY = "PRIMARY"
    CONTRIBUTOR = "CONTRIBUTOR"
    DERIVATIVE = "DERIVATIVE"
    TRANSFERRED = "TRANSFERRED"


class IpOwnership(models.Model):
    """A creator's share of an asset, in basis points (10,000 = 100 %)."""

    ip_asset = models.ForeignKey(IpAsset, on_delete=models.CASCADE, related_name="ownerships")
    creator = models.ForeignKey("creators.Creator", on_delete=models.PROTECT, related_name="ownerships")
    share_bps = models.IntegerField()
    ownership_type = models.CharField(max_length=16, choices=OwnershipType.choices, default=OwnershipType.PRIMARY)
    start_date = models.DateTimeField(default=timezone.now)
    end_date = models.DateTimeField(null=True, blank=True)
    contract_reference = models.TextField(null=True, blank=True)
    disputed = models.BooleanField(default=False)
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="when a dispute was resolved")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ip_ownerships"
        indexes = [models.Index(fields=["ip_asset", "start_date", "end_date"], name="ownership_active_idx")]
        constraints = [
            models.CheckConstraint(condition=Q(share_bps__gt=0, share_bps__lte=10000), name="ownership_share_range")
        ]


class StorageMetrics(models.Model):
    """One storage snapshot per (UTC day, entity). `entity_id` is "" for the platform
    row, so the unique key never holds a NULL and re-runs update in place."""

    class EntityType(models.TextChoices):
        PLATFORM = "platform"
        USER = "user"
        PROJECT = "project"
        BRAND = "brand"

    snapshot_date = models.DateField()
    entity_type = models.CharField(max_length=16, choices=EntityType.choices)
    entity_id = models.CharField(max_length=64, blank=True, default="")
    total_bytes = models.BigIntegerField(default=0)
    file_count = models.IntegerField(default=0)
    average_file_size = models.BigIntegerField(default=0)
    largest_file_size = models.BigIntegerField(default=0)
    largest_file_id = models.CharField(max_length=64, null=True, blank=True)
    # Growth since the entity's previous snapshot in basis points (10,000 = +100 %). A
    # bigint, clamped to its range by the query: a 500-byte owner who uploads a 110 MB video
    # grows by 2.2 billion bps, past a 32-bit integer (issue 21, item 5).
    storage_trend_bps = models.BigIntegerField(default=0)
    breakdown_by_type = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "storage_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot_date", "entity_type", "entity_id"], name="storage_metrics_day_entity"
            )
        ]
        indexes = [
            models.Index(fields=["entity_type", "entity_id", "-snapshot_date"], name="storage_metrics_entity_idx")
        ]


class OwnershipFinding(models.Model):
    """An asset whose active ownership shares do not sum to 10,000 bps (no owners
    included). Open while `resolved_at` is null; admins are told once per finding."""

    ip_asset = models.ForeignKey(IpAsset, on_delete=models.CASCADE, related_name="ownership_findings")
    total_bps = models.IntegerField()
    owner_count = models.IntegerField()
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "ownership_findings"
        constraints = [
            models.UniqueConstraint(
                fields=["ip_asset"], condition=Q(resolved_at__isnull=True), name="ownership_finding_one_open"
            )
        ]


class WatermarkIssuance(models.Model):
    """One forensically watermarked copy handed to one person: who got which asset when,
    with which options, under which forensic id. Staff look a leaked copy's id up here
    (`watermarks.lookup`, `GET /api/watermarks/<id>`, the admin).

    Append-only: a database trigger refuses UPDATE and DELETE (migration 0006), and so
    do `save()` on an existing row and `delete()`. The record outlives its asset (no
    database constraint on `asset_id`, so asset-cleanup can still purge the asset and
    its files) and keeps its recipient (PROTECT: account deletion anonymises instead).
    """

    asset = models.ForeignKey(
        IpAsset, on_delete=models.DO_NOTHING, db_constraint=False, related_name="watermark_issuances"
    )
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    forensic_id = models.CharField(max_length=16, unique=True)
    options = models.JSONField(default=dict, help_text="text, logo_asset_id, position, opacity, scale")
    storage_key = models.CharField(max_length=1024, help_text="the watermarked copy")
    issued_at = models.DateTimeField(help_text="the moment signed into the forensic id")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "watermark_issuances"
        indexes = [
            models.Index(fields=["asset", "issued_at"], name="watermark_asset_idx"),
            models.Index(fields=["recipient", "issued_at"], name="watermark_recipient_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.forensic_id} (asset {self.asset_id} to user {self.recipient_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("A watermark issuance is append-only: it is never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("A watermark issuance is append-only: it is never deleted.")
