"""The asset pipeline: virus scan, thumbnails, metadata, the move to REVIEW.

Flow (DECISIONS.md, Assets): upload -> PROCESSING + `asset-virus-scan` (critical).
CLEAN -> `asset-thumbnail-generation` and `asset-metadata-extraction` (media), and
`asset-virus-scan-finalize`, which RQ runs once both have ended and which moves the
asset to REVIEW when both succeeded. INFECTED -> REJECTED, file quarantined, uploader
and admins told. Never CLEAN without a verdict from clamd.

Every path ends in REVIEW, in REJECTED with a reason (the file is bad: infected or
unreadable), or in a visible error of ours that a retry clears (`faults.py`):
- scanner unreachable -> `scanner.ScannerUnavailable` propagates and RQ retries over
  about 24 hours (the registry); the delay is recorded and the uploader told once that
  processing is delayed; the final failure sets scan ERROR and tells admins, and the
  `asset-virus-scan.sweep` job rescans every such asset once clamd answers again;
- clamd refuses the file, or the original is missing from storage -> scan ERROR at once
  (not retryable by the sweep: a person has to look), admins and uploader told;
- a tool missing, timed out or killed (`MachineFault`), or any other error of ours in
  thumbnails, metadata or finalize -> retried, then `processing_error` (a regenerate
  clears it); never REJECTED.

A step that can never use its asset (missing, not scanned clean, unreadable file)
raises `AssetUnusable`; the job handlers in `jobs/handlers/assets.py` and
`jobs/handlers/asset_derivatives.py` turn it into a failure without retries.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.errors import InvalidInput
from yesgoddess.media.errors import MachineFault, MediaError
from yesgoddess.media.metadata import extract_metadata
from yesgoddess.media.thumbnails import make_thumbnails
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import alert_admins, notify

from . import faults, scanner
from .models import AssetStatus, IpAsset, ScanStatus
from .services import audit, change_status, local_copy, merge_metadata, quarantine, reject

log = logging.getLogger(__name__)


class AssetUnusable(InvalidInput):
    """A pipeline step can never work with this asset (it does not exist, has not passed
    the scan, or its file cannot be read): retrying cannot help. The message says why."""


def load_asset(asset_id: int) -> IpAsset:
    asset = IpAsset.objects.filter(pk=asset_id).first()
    if asset is None:
        raise AssetUnusable(f"Asset {asset_id} does not exist.")
    return asset


def processable_asset(asset_id: int) -> IpAsset | None:
    """The asset, if a processing step may work on it; None when it was deleted meanwhile."""
    asset = load_asset(asset_id)
    if asset.deleted_at is not None:
        return None
    if asset.scan_status != ScanStatus.CLEAN:
        raise AssetUnusable(f"Asset {asset_id} has not passed the virus scan (scan status {asset.scan_status}).")
    return asset


def record_step_failure(asset_id: int | None, key: str, error: str) -> None:
    """Record a step's final failure under metadata[key] (the step's own key), where the
    API shows it, without touching what other steps wrote. A deleted asset records nothing."""
    if IpAsset.objects.filter(pk=asset_id).exists():
        merge_metadata(asset_id, key, {"error": error, "failed_at": timezone.now().isoformat()})


# --- enqueueing the pipeline ----------------------------------------------------------------

STEP_JOBS = {
    "thumbnails": "asset-thumbnail-generation",
    "metadata": "asset-metadata-extraction",
    "preview": "asset-preview-generation",
    "variants": "asset-format-conversion",
}
# What else runs after a clean scan, by type (spec A §2.4 port note, the original's
# getDefaultProcessingConfig): previews for video and audio, web variants for images and
# audio; video renditions only on request (expensive).
AFTER_SCAN = {"IMAGE": ("variants",), "VIDEO": ("preview",), "AUDIO": ("preview", "variants")}
FIRST_STEPS = ("thumbnails", "metadata")


def enqueue_processing(
    asset_id: int, steps: tuple[str, ...] = FIRST_STEPS, asset_type: str | None = None
) -> dict[str, str]:
    """Enqueue the media jobs for `steps` (plus the type's extras after a scan), and the
    finalize job after thumbnails and metadata. Previews and variants depend on those
    too: they run later and never hold up the move to REVIEW. Deduplicated per asset."""
    first = [step for step in steps if step in FIRST_STEPS]
    later = dict.fromkeys(s for s in (*steps, *AFTER_SCAN.get(asset_type or "", ())) if s not in FIRST_STEPS)
    dedup = f"asset-{asset_id}"
    ids = {step: enqueue(STEP_JOBS[step], asset_id=asset_id, dedup_key=dedup) for step in first}
    first_ids = list(ids.values())
    for step in later:
        ids[step] = enqueue(STEP_JOBS[step], asset_id=asset_id, depends_on=first_ids or None, dedup_key=dedup)
    if first_ids:
        ids["finalize"] = enqueue("asset-virus-scan-finalize", asset_id=asset_id, depends_on=first_ids, dedup_key=dedup)
    return ids


# --- virus scan ----------------------------------------------------------------------------


def scan_asset(asset_id: int, *, force: bool = False) -> dict[str, Any]:
    """Stream the original through clamd and act on the verdict. An unreachable scanner
    raises `scanner.ScannerUnavailable` (worth a retry); a refused file, `AssetUnusable`."""
    asset = load_asset(asset_id)
    if asset.deleted_at is not None:
        return {"skipped": "deleted"}
    if asset.scan_status in (ScanStatus.CLEAN, ScanStatus.INFECTED) and not force:
        return {"skipped": f"already {asset.scan_status}"}
    if asset.scan_status == ScanStatus.INFECTED:  # its verdict stands (and upload-cleanup's rule with it)
        raise AssetUnusable(f"Asset {asset_id} is infected and quarantined; it is never rescanned.")
    IpAsset.objects.filter(pk=asset_id).update(scan_status=ScanStatus.SCANNING, updated_at=timezone.now())
    try:
        with default_storage.open(asset.storage_key, "rb") as original:
            verdict = scanner.scan(original, settings.CLAMD_SOCKET)
    except FileNotFoundError:
        missing = f"The file of asset {asset_id} is missing from storage ({asset.storage_key})."
        raise refuse_scan(asset, missing) from None
    except scanner.ScanRefused as exc:
        raise refuse_scan(asset, str(exc)) from None
    except scanner.ScannerUnavailable as exc:
        note_scan_delayed(asset, str(exc))
        raise  # RQ retries it (over hours: jobs/registry.py)
    result = {
        "scanned": True,
        "engine": verdict.engine,
        "clean": verdict.clean,
        "threats": verdict.threats,
        "scanned_at": timezone.now().isoformat(),
    }
    if verdict.clean:
        return _handle_clean(asset, result)
    return _handle_infected(asset, result)


def _handle_clean(asset: IpAsset, result: dict[str, Any]) -> dict[str, Any]:
    with transaction.atomic():
        IpAsset.objects.filter(pk=asset.pk).update(
            scan_status=ScanStatus.CLEAN, scan_result=result, updated_at=timezone.now()
        )
        faults.clear(asset.pk, faults.SCAN)
        audit(asset, "ASSET_SCAN_CLEAN", asset.status, asset.status, engine=result["engine"])
        if asset.status == AssetStatus.PROCESSING:
            enqueue_processing(asset.pk, asset_type=asset.type)
    return {"clean": 1}


def _handle_infected(asset: IpAsset, result: dict[str, Any]) -> dict[str, Any]:
    quarantine_key = quarantine(asset) if default_storage.exists(asset.storage_key) else asset.quarantine_key
    reason = f"A virus was found in the file: {', '.join(result['threats'])}."
    with transaction.atomic():
        IpAsset.objects.filter(pk=asset.pk).update(
            scan_status=ScanStatus.INFECTED,
            scan_result=result,
            quarantine_key=quarantine_key,
            status=AssetStatus.REJECTED,
            rejection_reason=reason,
            pipeline_failed_at=timezone.now(),
            updated_at=timezone.now(),
        )
        faults.clear(asset.pk, faults.SCAN)
        audit(asset, "ASSET_INFECTED", asset.status, AssetStatus.REJECTED, threats=result["threats"])
        notify(
            [asset.created_by_id],
            type=Notification.Type.SYSTEM,
            priority=Notification.Priority.HIGH,
            title="Your upload was rejected",
            message=f"“{asset.title}”: {reason} The file was quarantined.",
            metadata={"asset_id": asset.pk},
        )
    log.warning("asset=%s infected threats=%s quarantined", asset.pk, result["threats"])
    counts = alert_admins(
        title=f"Infected upload quarantined (asset {asset.pk})",
        message=f"Threats: {', '.join(result['threats'])}. Uploader {asset.created_by_id}.",
        email_template="asset_infected",
        context={
            "asset_id": asset.pk,
            "asset_type": asset.type,
            "file_size": asset.file_size,
            "uploader_id": asset.created_by_id,
            "threats": result["threats"],
            "quarantine_key": quarantine_key,
        },
        metadata={"asset_id": asset.pk},
    )
    return {"infected": 1, **counts}


def note_scan_delayed(asset: IpAsset, error: str) -> None:
    """clamd did not answer and RQ will retry: the scan waits again (PENDING), the delay is
    recorded, and once the first retry failed too (no mere blip) the uploader is told
    that processing is delayed, not that the file is bad."""
    IpAsset.objects.filter(pk=asset.pk, scan_status=ScanStatus.SCANNING).update(scan_status=ScanStatus.PENDING)
    entry = faults.note_delayed(asset.pk, faults.SCAN, error)
    if entry["attempts"] >= 2 and asset.status == AssetStatus.PROCESSING:
        faults.tell_uploader_delayed(asset)


def refuse_scan(asset: IpAsset, reason: str) -> AssetUnusable:
    """clamd answered but will not scan the file, or the original is gone from storage:
    retrying will not help, so scan ERROR now, marked not retryable (the sweep leaves it to
    a person). Our fault, not the file's: never REJECTED. Returns the error to raise."""
    _record_scan_error(asset, reason, retryable=False, job_id=None)
    return AssetUnusable(reason)


def record_scan_failure(asset_id: int | None, error: str, job_id: str) -> None:
    """The scan finally failed (RQ gave up, or the worker died): scan ERROR (never CLEAN),
    retryable: the sweep rescans it once clamd answers. An asset that got a verdict
    meanwhile, no longer exists, or whose refusal `refuse_scan` recorded, is left alone."""
    asset = IpAsset.objects.filter(pk=asset_id).first()
    if asset is None or asset.scan_status in (ScanStatus.CLEAN, ScanStatus.INFECTED):
        return
    if asset.scan_status == ScanStatus.ERROR and (asset.scan_result or {}).get("retryable") is False:
        return
    _record_scan_error(asset, error, retryable=True, job_id=job_id)


def _record_scan_error(asset: IpAsset, error: str, *, retryable: bool, job_id: str | None) -> None:
    now = timezone.now()
    with transaction.atomic():
        IpAsset.objects.filter(pk=asset.pk).update(
            scan_status=ScanStatus.ERROR,
            scan_result={"error": error, "failed_at": now.isoformat(), "retryable": retryable},
            pipeline_failed_at=now,
            updated_at=now,
        )
        faults.record_final(asset.pk, faults.SCAN, error, retryable=retryable)
        audit(asset, "ASSET_SCAN_FAILED", asset.status, asset.status, error=error, retryable=retryable)
    if asset.deleted_at is None and asset.status == AssetStatus.PROCESSING:
        faults.tell_uploader_delayed(asset)  # a rescan of an asset in REVIEW delays nobody
    alert_admins(
        title=f"Virus scan failed (asset {asset.pk})",
        message=error,
        email_template="asset_scan_failed",
        context={
            "asset_id": asset.pk,
            "asset_type": asset.type,
            "file_size": asset.file_size,
            "error": error,
            "retryable": retryable,
        },
        priority=Notification.Priority.HIGH,
        metadata={"asset_id": asset.pk, "job_id": job_id},
    )


# --- thumbnails ------------------------------------------------------------------------------


def generate_thumbnails(asset_id: int) -> dict[str, Any]:
    """Small/medium/large JPEG thumbnails under derivatives/<id>/, listed in metadata.
    A file the media code cannot read rejects the asset."""
    asset = processable_asset(asset_id)
    if asset is None:
        return {"skipped": "deleted"}
    with local_copy(asset.storage_key) as source, tempfile.TemporaryDirectory(prefix="thumbs-") as out:
        try:
            made = make_thumbnails(source, asset.type, asset.mime_type, Path(out), timeout=settings.MEDIA_TOOL_TIMEOUT)
        except MediaError as exc:
            reject(asset_id, str(exc))
            raise AssetUnusable(str(exc)) from None
        except MachineFault as exc:  # the machine's fault: retried, never a rejection
            faults.note_delayed(asset_id, "thumbnails", str(exc))
            raise
        sizes = {}
        for size, info in made["sizes"].items():
            key = f"derivatives/{asset_id}/thumbnail_{size}.jpg"
            with open(info["path"], "rb") as fh:
                key = default_storage.save(key, File(fh))
            sizes[size] = {"key": key, "width": info["width"], "height": info["height"]}
    merge_metadata(
        asset_id,
        "thumbnails",
        {
            "source": made["source"],
            "is_type_icon": made["source"] == "type-icon",  # not a picture of the content
            "sizes": sizes,
            "generated_at": timezone.now().isoformat(),
        },
    )
    faults.clear(asset_id, "thumbnails")
    return {"thumbnails": len(sizes)}


def record_thumbnail_failure(asset_id: int | None, error: str, job_id: str) -> None:
    """Final failure of the thumbnails: the error under metadata["thumbnails"]; if the
    asset now waits in PROCESSING (the failure was ours), a visible, retryable error."""
    record_step_failure(asset_id, "thumbnails", error)
    faults.record_step_fault(asset_id, "thumbnails", error, job_id)


# --- metadata extraction ------------------------------------------------------------------------


def extract_asset_metadata(asset_id: int) -> dict[str, Any]:
    """Technical metadata of the file under metadata["extracted"]. A file the media code
    cannot read rejects the asset."""
    asset = processable_asset(asset_id)
    if asset is None:
        return {"skipped": "deleted"}
    with local_copy(asset.storage_key) as source:
        try:
            extracted = extract_metadata(source, asset.type, asset.mime_type, timeout=settings.MEDIA_TOOL_TIMEOUT)
        except MediaError as exc:
            reject(asset_id, str(exc))
            raise AssetUnusable(str(exc)) from None
        except MachineFault as exc:  # the machine's fault: retried, never a rejection
            faults.note_delayed(asset_id, "extracted", str(exc))
            raise
        size = source.stat().st_size
    merge_metadata(
        asset_id,
        "extracted",
        {
            **extracted,
            "detected_mime_type": asset.mime_type,
            "file_size": size,
            "extracted_at": timezone.now().isoformat(),
        },
    )
    faults.clear(asset_id, "extracted")
    return {"fields": len(extracted)}


def record_metadata_failure(asset_id: int | None, error: str, job_id: str) -> None:
    """Final failure of the metadata extraction; see `record_thumbnail_failure`."""
    record_step_failure(asset_id, "extracted", error)
    faults.record_step_fault(asset_id, "extracted", error, job_id)


# --- the move to REVIEW ---------------------------------------------------------------------------


def finish_processing(asset_id: int) -> dict[str, Any]:
    """Move a clean asset to REVIEW once thumbnails and metadata both succeeded."""
    asset = load_asset(asset_id)
    metadata = asset.metadata or {}
    done = all(key in metadata and "error" not in metadata[key] for key in ("thumbnails", "extracted"))
    if asset.deleted_at is not None or asset.scan_status != ScanStatus.CLEAN or not done:
        return {"moved_to_review": 0}
    moved = change_status(
        asset_id, from_statuses=(AssetStatus.PROCESSING,), to=AssetStatus.REVIEW, action="ASSET_READY_FOR_REVIEW"
    )
    faults.clear(asset_id)  # every step this asset needs has succeeded
    return {"moved_to_review": int(moved)}


def record_finalize_failure(asset_id: int | None, error: str, job_id: str) -> None:
    """Final failure of the move to REVIEW itself (say the database was down through every
    retry): a visible, retryable error rather than an asset left in PROCESSING."""
    faults.record_step_fault(asset_id, "finalize", error, job_id)
