"""Asset rules shared by the API and the jobs: accepting uploads, status changes with
their audit rows, atomic metadata merges, quarantine, and what the API shows."""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.models import AuditEvent
from yesgoddess.media.detect import asset_type_for_mime, check_declared_type, detect_mime

from .models import AssetStatus, IpAsset, ScanStatus

THUMBNAIL_SIZES = ("small", "medium", "large")
# processing_error steps an operator retries by regenerating, and the steps to regenerate
# (the scan is retried by a rescan; see faults.py).
REGENERATE_STEPS = {"thumbnails": ["thumbnails"], "extracted": ["metadata"], "finalize": ["thumbnails", "metadata"]}
# The metadata key of each step the move to REVIEW waits for.
FIRST_STEP_KEYS = {"thumbnails": "thumbnails", "extracted": "metadata"}


class UploadRejected(Exception):
    """An upload refused before anything was stored; the message is the reason."""


def sanitize_filename(name: str) -> str:
    cleaned = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)).strip("_.")
    return cleaned[:200] or "file"


def declared_type(upload: UploadedFile) -> str | None:
    """The asset type the client claims, from its content type, else the file name."""
    claimed = asset_type_for_mime(upload.content_type or "")
    if claimed is None:
        guessed, _ = mimetypes.guess_type(upload.name or "")
        claimed = asset_type_for_mime(guessed or "")
    return claimed


@contextlib.contextmanager
def spooled(upload: UploadedFile) -> Iterator[Path]:
    """The upload as a local file (content sniffing needs a path, and may need all of it)."""
    if hasattr(upload, "temporary_file_path"):
        yield Path(upload.temporary_file_path())
        return
    with tempfile.NamedTemporaryFile(prefix="upload-", suffix=Path(upload.name or "").suffix) as tmp:
        for chunk in upload.chunks():
            tmp.write(chunk)
        tmp.flush()
        yield Path(tmp.name)


def accept_upload(*, user: Any, upload: UploadedFile, title: str, description: str | None, project: Any) -> IpAsset:
    """Validate, store and register an upload, and enqueue its virus scan (after commit)."""
    if not upload.size:
        raise UploadRejected("The file is empty.")
    if upload.size > settings.UPLOAD_MAX_BYTES:
        raise UploadRejected(f"The file is {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES} bytes.")
    with spooled(upload) as path:
        detected = detect_mime(path)
        asset_type = asset_type_for_mime(detected)
        if asset_type is None:
            raise UploadRejected(f"Files of type {detected} are not accepted.")
        mismatch = check_declared_type(detected, declared_type(upload))
        if mismatch:
            raise UploadRejected(mismatch)
        key = f"originals/{uuid.uuid4().hex}/{sanitize_filename(upload.name or 'file')}"
        with path.open("rb") as fh:
            key = default_storage.save(key, File(fh))
    try:
        with transaction.atomic():
            now = timezone.now()
            asset = IpAsset.objects.create(
                project=project,
                title=title,
                description=description or None,
                type=asset_type,
                storage_key=key,
                original_filename=(upload.name or "")[:255],
                file_size=upload.size,
                mime_type=detected,
                declared_mime_type=(upload.content_type or "")[:100],
                status=AssetStatus.PROCESSING,
                scan_status=ScanStatus.PENDING,
                processing_started_at=now,
                created_by=user,
                updated_by=user,
            )
            audit(asset, "ASSET_UPLOADED", None, AssetStatus.PROCESSING, actor=user)
            enqueue("asset-virus-scan", asset_id=asset.pk, dedup_key=f"asset-{asset.pk}")
    except BaseException:
        default_storage.delete(key)  # the row never existed: leave no orphan file
        raise
    return asset


def audit(
    asset: IpAsset, action: str, before: str | None, after: str | None, *, actor: Any = None, **details: Any
) -> None:
    AuditEvent.objects.create(
        action=action,
        entity_type="asset",
        entity_id=str(asset.pk),
        actor=actor,
        before={"status": before} if before else None,
        after={"status": after, **details} if after else details,
    )


def change_status(
    asset_id: int, *, from_statuses: tuple[str, ...], to: str, action: str, actor: Any = None, **fields: Any
) -> bool:
    """Move an asset to `to` only if it is in one of `from_statuses` (a conditional
    UPDATE, so two workers cannot both make the change); write the audit row."""
    with transaction.atomic():
        asset = IpAsset.objects.select_for_update().filter(pk=asset_id, status__in=from_statuses).first()
        if asset is None:
            return False
        before = asset.status
        IpAsset.objects.filter(pk=asset_id).update(status=to, updated_at=timezone.now(), **fields)
        details = {k: v for k, v in fields.items() if k in ("rejection_reason",)}
        audit(asset, action, before, to, actor=actor, **details)
        return True


def merge_metadata(asset_id: int, key: str, value: Any) -> None:
    """Set metadata[key] = value in one UPDATE (jsonb ||), leaving every other key alone,
    so concurrent jobs writing their own keys never erase each other."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ip_assets SET metadata = COALESCE(metadata, '{}'::jsonb) || jsonb_build_object(%s, %s::jsonb), "
            "updated_at = now() WHERE id = %s",
            [key, json.dumps(value), asset_id],
        )


def reject(asset_id: int, reason: str) -> bool:
    """The pipeline gives up on an asset whose file it cannot use."""
    return change_status(
        asset_id,
        from_statuses=(AssetStatus.PROCESSING,),
        to=AssetStatus.REJECTED,
        action="ASSET_REJECTED",
        rejection_reason=reason,
        pipeline_failed_at=timezone.now(),
    )


def quarantine(asset: IpAsset) -> str:
    """Move the original to quarantine/ (copy, then delete); return the quarantine key."""
    target = f"quarantine/{asset.storage_key}"
    with default_storage.open(asset.storage_key, "rb") as source:
        target = default_storage.save(target, File(source))
    default_storage.delete(asset.storage_key)
    return target


@contextlib.contextmanager
def local_copy(key: str) -> Iterator[Path]:
    """The stored file as a local temp file (ffmpeg, poppler and Pillow want a path)."""
    with (
        default_storage.open(key, "rb") as source,
        tempfile.NamedTemporaryFile(prefix="asset-", suffix=Path(key).suffix) as tmp,
    ):
        shutil.copyfileobj(source, tmp, 1024 * 1024)
        tmp.flush()
        yield Path(tmp.name)


def derivative_keys(asset_id: int) -> list[str]:
    """Every stored key under the asset's derivatives prefix."""
    keys: list[str] = []
    pending = [f"derivatives/{asset_id}"]
    while pending:
        prefix = pending.pop()
        try:
            dirs, files = default_storage.listdir(prefix)
        except (FileNotFoundError, NotADirectoryError):
            continue
        keys += [f"{prefix}/{name}" for name in files]
        pending += [f"{prefix}/{name}" for name in dirs]
    return keys


def retry_hint(asset: IpAsset) -> dict[str, Any] | None:
    """How to retry what `processing_error` holds: a rescan for the scan, else a
    regenerate of the failed steps and of any first step without a result yet (REVIEW
    needs both). None when nothing of ours failed."""
    errors = asset.processing_error or {}
    if not errors:
        return None
    if "scan" in errors:
        return {"method": "POST", "path": f"/api/assets/{asset.pk}/rescan"}
    steps = {step for key in errors for step in REGENERATE_STEPS.get(key, ())}
    metadata = asset.metadata or {}
    steps |= {step for key, step in FIRST_STEP_KEYS.items() if not metadata.get(key) or "error" in metadata[key]}
    return {"method": "POST", "path": f"/api/assets/{asset.pk}/regenerate", "body": {"steps": sorted(steps)}}


def asset_json(asset: IpAsset) -> dict[str, Any]:
    metadata = asset.metadata or {}
    thumbnails = metadata.get("thumbnails") or {}
    sizes = thumbnails.get("sizes") or {}
    return {
        "id": asset.pk,
        "title": asset.title,
        "description": asset.description,
        "type": asset.type,
        "mime_type": asset.mime_type,
        "file_size": asset.file_size,
        "status": asset.status,
        "scan_status": asset.scan_status,
        "rejection_reason": asset.rejection_reason,
        # A failure of ours (never the file's): processing is delayed or waits for a retry.
        "processing_error": asset.processing_error,
        "retry": retry_hint(asset),
        "project_id": asset.project_id,
        "thumbnails": {size: default_storage.url(sizes[size]["key"]) for size in THUMBNAIL_SIZES if size in sizes},
        "metadata": metadata,
        "created_at": asset.created_at.isoformat(),
        "updated_at": asset.updated_at.isoformat(),
        "deleted_at": asset.deleted_at.isoformat() if asset.deleted_at else None,
    }
