"""Asset housekeeping, run on a schedule (spec A §2.11-§2.13, defects fixed): purging
assets soft-deleted long ago (`asset-cleanup`), purging abandoned, failed and infected
uploads (`upload-cleanup`), and the daily storage snapshot per platform, user, project and
brand (`storage-metrics-calculation`). The jobs in `jobs/handlers/asset_housekeeping.py`
each call one function here.

A hard delete removes the row first and the stored files only once the row is gone, so
an asset still referenced by licenses, royalty lines or derivative assets is kept (and
reported) with its files intact. An upload whose processing failed on our side (scan
ERROR, a tool out of time: `faults.py`) is never purged: only the file's own faults are."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError, QuerySet, RestrictedError
from django.utils import timezone

from yesgoddess.core.batches import in_pk_batches, referencing_models

from .models import AssetStatus, IpAsset, ScanStatus
from .services import audit, derivative_keys

log = logging.getLogger(__name__)

SOFT_DELETE_RETENTION = timedelta(days=30)
ABANDONED_AFTER = timedelta(hours=24)
FAILED_RETENTION = timedelta(days=7)
INFECTED_RETENTION = timedelta(days=30)


@dataclass
class Removal:
    deleted: int = 0
    skipped_referenced: int = 0
    files_deleted: int = 0
    file_errors: int = 0
    bytes_freed: int = 0
    skipped_ids: list[int] = field(default_factory=list)


def stored_keys(asset: IpAsset) -> list[str]:
    keys = [asset.storage_key, *derivative_keys(asset.pk)]
    if asset.quarantine_key:
        keys.append(asset.quarantine_key)
    return keys


def hard_delete(asset: IpAsset, action: str, removal: Removal) -> None:
    """Delete the row (cascading to ownerships and relationships) and then every stored
    file of the asset. A row that licenses, royalty lines or derivative assets still
    reference is kept and reported: files are only deleted once the row is gone."""
    keys = stored_keys(asset)
    try:
        with transaction.atomic():
            audit(asset, action, asset.status, None, scan_status=asset.scan_status, files=len(keys))
            asset.delete()
    except (ProtectedError, RestrictedError) as exc:
        removal.skipped_referenced += 1
        removal.skipped_ids.append(asset.pk)
        labels = referencing_models(exc)
        log.warning("asset=%s kept: still referenced by %s", asset.pk, ", ".join(labels) or "other rows")
        return
    removal.deleted += 1
    for key in keys:
        try:
            if default_storage.exists(key):
                size = default_storage.size(key)
                default_storage.delete(key)
                removal.files_deleted += 1
                removal.bytes_freed += size
        except OSError as exc:
            removal.file_errors += 1
            log.error("asset=%s could not delete stored file %s: %s", asset.pk, key, exc)


def report(removal: Removal) -> dict[str, int]:
    return {k: v for k, v in removal.__dict__.items() if isinstance(v, int)}


# --- purging soft-deleted assets (asset-cleanup) ---------------------------------------------


def cleanup_deleted_assets() -> dict[str, int]:
    """Hard-delete assets soft-deleted more than 30 days ago, with every stored file."""
    cutoff = timezone.now() - SOFT_DELETE_RETENTION
    removal = Removal()
    for asset in in_pk_batches(IpAsset.objects.filter(deleted_at__lt=cutoff)):
        hard_delete(asset, "ASSET_PURGED", removal)
    return report(removal)


# --- purging unfinished uploads (upload-cleanup) ---------------------------------------------


def abandoned_uploads(now: datetime) -> QuerySet:
    # Never confirmed: still DRAFT, never scanned, never started processing. An asset
    # moved back to DRAFT after processing keeps its processing_started_at and is safe.
    return IpAsset.objects.filter(
        status=AssetStatus.DRAFT,
        scan_status=ScanStatus.PENDING,
        processing_started_at__isnull=True,
        created_at__lt=now - ABANDONED_AFTER,
        deleted_at__isnull=True,
    )


def failed_uploads(now: datetime) -> QuerySet:
    # The pipeline rejected the file itself (it could not read it) a week ago and nothing
    # has touched the asset since; infected ones have their own, longer rule. A failure of
    # ours (scan ERROR: clamd down or refusing; a processing_error: a tool out of time, a
    # killed worker) is never purged: the upload waits for a rescan or a regenerate.
    return (
        IpAsset.objects.filter(
            status=AssetStatus.REJECTED,
            pipeline_failed_at__lt=now - FAILED_RETENTION,
            updated_at__lt=now - FAILED_RETENTION,
            deleted_at__isnull=True,
            processing_error__isnull=True,
        )
        .exclude(scan_status=ScanStatus.INFECTED)
        .exclude(scan_status=ScanStatus.ERROR)
    )


def infected_uploads(now: datetime) -> QuerySet:
    return IpAsset.objects.filter(scan_status=ScanStatus.INFECTED, updated_at__lt=now - INFECTED_RETENTION)


def cleanup_uploads(*, dry_run: bool = False) -> dict[str, int]:
    """Abandoned uploads (24 h) -> file deleted, REJECTED and soft-deleted; failed
    uploads (7 days) and infected ones (30 days) -> files and row deleted."""
    now = timezone.now()
    if dry_run:
        return {
            "abandoned": abandoned_uploads(now).count(),
            "failed": failed_uploads(now).count(),
            "infected": infected_uploads(now).count(),
            "dry_run": 1,
        }
    abandoned = 0
    freed = 0
    for asset in in_pk_batches(abandoned_uploads(now)):
        if default_storage.exists(asset.storage_key):
            freed += default_storage.size(asset.storage_key)
            default_storage.delete(asset.storage_key)
        with transaction.atomic():
            updated = IpAsset.objects.filter(pk=asset.pk, status=AssetStatus.DRAFT).update(
                status=AssetStatus.REJECTED,
                deleted_at=now,
                rejection_reason="The upload was never completed.",
                updated_at=now,
            )
            if updated:
                audit(asset, "ASSET_UPLOAD_ABANDONED", AssetStatus.DRAFT, AssetStatus.REJECTED)
                abandoned += 1
    failed, infected = Removal(), Removal()
    for asset in in_pk_batches(failed_uploads(now)):
        hard_delete(asset, "ASSET_FAILED_UPLOAD_PURGED", failed)
    for asset in in_pk_batches(infected_uploads(now)):
        hard_delete(asset, "ASSET_INFECTED_PURGED", infected)
    return {
        "abandoned": abandoned,
        "failed": failed.deleted,
        "infected": infected.deleted,
        "skipped_referenced": failed.skipped_referenced + infected.skipped_referenced,
        "bytes_freed": freed + failed.bytes_freed + infected.bytes_freed,
        "file_errors": failed.file_errors + infected.file_errors,
    }


# --- storage snapshot (storage-metrics-calculation) ------------------------------------------

# One statement per entity kind: aggregate live assets per entity, per type, then upsert
# today's row. The trend compares with the entity's latest snapshot before today. Every
# computed value is clamped into its column's range, so no entity's numbers, however odd
# (a 500-byte owner who uploads a 110 MB video grows by 2.2 billion bps), can make the
# statement fail for everyone else.
SNAPSHOT_SQL = """
WITH scoped AS (
    SELECT {entity_expr} AS entity_id, a.id, a.type, a.file_size
    FROM ip_assets a {join}
    WHERE a.deleted_at IS NULL {where}
), by_type AS (
    SELECT entity_id, type, SUM(file_size) AS bytes, COUNT(*) AS files FROM scoped GROUP BY entity_id, type
), totals AS (
    SELECT entity_id, SUM(file_size) AS total, COUNT(*) AS files, MAX(file_size) AS largest
    FROM scoped GROUP BY entity_id
), largest AS (
    SELECT DISTINCT ON (entity_id) entity_id, id FROM scoped ORDER BY entity_id, file_size DESC, id
), entities AS (
    {entities}
), current AS (
    SELECT e.entity_id,
           COALESCE(t.total, 0) AS total, COALESCE(t.files, 0) AS files, COALESCE(t.largest, 0) AS largest,
           l.id AS largest_id,
           COALESCE((SELECT jsonb_object_agg(b.type, jsonb_build_object('bytes', b.bytes::text, 'count', b.files))
                     FROM by_type b WHERE b.entity_id = e.entity_id), '{{}}'::jsonb) AS breakdown
    FROM entities e LEFT JOIN totals t USING (entity_id) LEFT JOIN largest l USING (entity_id)
)
INSERT INTO storage_metrics (snapshot_date, entity_type, entity_id, total_bytes, file_count, average_file_size,
                             largest_file_size, largest_file_id, storage_trend_bps, breakdown_by_type,
                             created_at, updated_at)
SELECT %(day)s, %(kind)s, c.entity_id, LEAST(c.total, {bigint_max}), LEAST(c.files, {int_max}),
       CASE WHEN c.files > 0 THEN LEAST(c.total / c.files, {bigint_max}) ELSE 0 END,
       c.largest, c.largest_id::text,
       COALESCE((SELECT CASE WHEN p.total_bytes > 0
                             THEN LEAST(ROUND((c.total - p.total_bytes) * 10000.0 / p.total_bytes),
                                        {bigint_max})::bigint
                             ELSE 0 END
                 FROM storage_metrics p
                 WHERE p.entity_type = %(kind)s AND p.entity_id = c.entity_id AND p.snapshot_date < %(day)s
                 ORDER BY p.snapshot_date DESC LIMIT 1), 0),
       c.breakdown, now(), now()
FROM current c
ON CONFLICT (snapshot_date, entity_type, entity_id) DO UPDATE SET
    total_bytes = EXCLUDED.total_bytes, file_count = EXCLUDED.file_count,
    average_file_size = EXCLUDED.average_file_size, largest_file_size = EXCLUDED.largest_file_size,
    largest_file_id = EXCLUDED.largest_file_id, storage_trend_bps = EXCLUDED.storage_trend_bps,
    breakdown_by_type = EXCLUDED.breakdown_by_type, updated_at = now()
"""

COLUMN_LIMITS = {"bigint_max": 2**63 - 1, "int_max": 2**31 - 1}

ENTITY_KINDS = {
    "platform": {"entity_expr": "''", "join": "", "where": "", "entities": "SELECT ''::text AS entity_id"},
    "user": {
        "entity_expr": "a.created_by_id::text",
        "join": "",
        "where": "",
        "entities": "SELECT id::text AS entity_id FROM users WHERE deleted_at IS NULL",
    },
    "project": {
        "entity_expr": "a.project_id::text",
        "join": "",
        "where": "AND a.project_id IS NOT NULL",
        "entities": "SELECT id::text AS entity_id FROM projects WHERE deleted_at IS NULL",
    },
    "brand": {
        "entity_expr": "p.brand_id::text",
        "join": "JOIN projects p ON p.id = a.project_id",
        "where": "",
        "entities": "SELECT id::text AS entity_id FROM brands WHERE deleted_at IS NULL",
    },
}


class StorageMetricsIncomplete(Exception):
    """Some entity kinds could not be snapshotted (the others were); worth a retry."""


def calculate_storage_metrics() -> dict[str, int]:
    """Today's (UTC) storage snapshot for the platform and every live user, project and
    brand. Re-running the same day updates the same rows. Each kind is its own statement
    in its own savepoint: one that fails is reported (and the job retried) after the
    others were written, instead of stopping them."""
    day = timezone.now().date()
    counts: dict[str, int] = {}
    failed: dict[str, str] = {}
    for kind, parts in ENTITY_KINDS.items():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(SNAPSHOT_SQL.format(**parts, **COLUMN_LIMITS), {"day": day, "kind": kind})
                counts[kind] = cursor.rowcount
        except DatabaseError as exc:
            log.error("storage snapshot of kind=%s failed: %s", kind, exc)
            failed[kind] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if failed:
        done = ", ".join(f"{kind}={n}" for kind, n in counts.items()) or "none"
        problems = "; ".join(f"{kind}: {error}" for kind, error in failed.items())
        raise StorageMetricsIncomplete(f"Snapshot written for {done}; failed for {problems}.")
    return counts
