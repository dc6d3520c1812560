"""Failures of ours in the asset pipeline, kept apart from failures of the file.

A file the pipeline cannot read is REJECTED with a reason (`services.reject`). Everything
else is our fault: clamd unreachable, ffmpeg/ffprobe/poppler missing or out of time, a
killed worker, a storage or database error. Those never reject and never purge an upload;
they are recorded per step in `IpAsset.processing_error` (the API shows it, with how to
retry), while the asset keeps its status:

- while RQ still retries the step, the entry says `"final": false` (processing is delayed);
- once RQ gives up, `"final": true`; a rescan (scan) or a regenerate (thumbnails, metadata,
  finalize) clears it, and the `asset-virus-scan.sweep` job rescans by itself once clamd
  answers again;
- the uploader is told once per episode that processing is delayed and that nothing is
  wrong with the file; admins are told of every final failure (they can retry).

An entry disappears when its step succeeds; the last one to go also re-arms the uploader
notice. Every write is one UPDATE of the step's own key (jsonb), so concurrent steps of
one asset never erase each other's entries.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import alert_admins, notify

from .models import AssetStatus, IpAsset, ScanStatus
from .services import REGENERATE_STEPS, audit

log = logging.getLogger(__name__)

SCAN = "scan"


def _set_entry(asset_id: int, step: str, entry: dict[str, Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ip_assets SET processing_error = COALESCE(processing_error, '{}'::jsonb) "
            "|| jsonb_build_object(%s, %s::jsonb), updated_at = %s WHERE id = %s",
            [step, json.dumps(entry), timezone.now(), asset_id],
        )


def note_delayed(asset_id: int, step: str, error: str) -> dict[str, Any]:
    """An attempt of `step` failed on our side and RQ will retry it: record the delay
    (first seen, attempts so far, last error) and return the entry."""
    row = IpAsset.objects.filter(pk=asset_id).values_list("processing_error", flat=True).first()
    previous = (row or {}).get(step) or {}
    now = timezone.now().isoformat()
    entry = {
        "error": error,
        "since": previous.get("since") or now,
        "at": now,
        "attempts": int(previous.get("attempts") or 0) + 1,
        "final": False,
    }
    _set_entry(asset_id, step, entry)
    log.warning("asset=%s step=%s delayed (attempt %s): %s", asset_id, step, entry["attempts"], error)
    return entry


def record_final(asset_id: int, step: str, error: str, **extra: Any) -> None:
    """RQ gave up on `step` for a reason of ours: the entry becomes final (visible, and
    retryable by an operator), and the asset counts as a failed pipeline run."""
    row = IpAsset.objects.filter(pk=asset_id).values_list("processing_error", flat=True).first()
    previous = (row or {}).get(step) or {}
    now = timezone.now()
    entry = {
        "error": error,
        "since": previous.get("since") or now.isoformat(),
        "at": now.isoformat(),
        # The failed attempts `note_delayed` counted (a fault it does not see counts once).
        "attempts": int(previous.get("attempts") or 1),
        "final": True,
        **extra,
    }
    _set_entry(asset_id, step, entry)
    IpAsset.objects.filter(pk=asset_id).update(pipeline_failed_at=now)


def clear(asset_id: int, *steps: str) -> None:
    """`steps` succeeded: drop their entries (all entries when no step is named). The
    last entry to go clears the uploader-notice marker, so a later episode is told too."""
    with connection.cursor() as cursor:
        if steps:
            cursor.execute(
                "UPDATE ip_assets SET processing_error = NULLIF(processing_error - %s::text[], '{}'::jsonb) "
                "WHERE id = %s AND processing_error ?| %s::text[]",
                [list(steps), asset_id, list(steps)],
            )
        else:
            cursor.execute(
                "UPDATE ip_assets SET processing_error = NULL WHERE id = %s AND processing_error IS NOT NULL",
                [asset_id],
            )
        cursor.execute(
            "UPDATE ip_assets SET delay_notified_at = NULL "
            "WHERE id = %s AND processing_error IS NULL AND delay_notified_at IS NOT NULL",
            [asset_id],
        )


def tell_uploader_delayed(asset: IpAsset) -> bool:
    """Tell the uploader, once per episode, that processing is held up on our side and
    that nothing is wrong with the file (never "your file is bad"). True if told now."""
    with transaction.atomic():
        claimed = IpAsset.objects.filter(pk=asset.pk, delay_notified_at__isnull=True).update(
            delay_notified_at=timezone.now()
        )
        if not claimed:
            return False
        notify(
            [asset.created_by_id],
            type=Notification.Type.SYSTEM,
            priority=Notification.Priority.MEDIUM,
            title="Processing of your upload is delayed",
            message=(
                f"“{asset.title}”: a problem on our side is holding up processing. Nothing is wrong with "
                "your file and you do not need to upload it again: it will be processed as soon as the "
                "problem is fixed."
            ),
            metadata={"asset_id": asset.pk, "reason": "delayed"},
        )
    return True


def stuck_asset(asset_id: int | None) -> IpAsset | None:
    """The asset, if a media step's final failure leaves it waiting in PROCESSING (live,
    scanned clean, not rejected); None otherwise: a rejected file, a deleted asset or one
    still being scanned is not held up by this step."""
    return IpAsset.objects.filter(
        pk=asset_id, deleted_at__isnull=True, status=AssetStatus.PROCESSING, scan_status=ScanStatus.CLEAN
    ).first()


def record_step_fault(asset_id: int | None, step: str, error: str, job_id: str) -> bool:
    """Final failure of a media step (`thumbnails`, `extracted`, `finalize`) that leaves the
    asset waiting: a visible, retryable error instead of PROCESSING for ever; uploader and
    admins told. A file the step refused was rejected already and is left alone."""
    asset = stuck_asset(asset_id)
    if asset is None:
        return False
    record_final(asset.pk, step, error)
    audit(asset, "ASSET_PROCESSING_FAILED", asset.status, asset.status, step=step, error=error)
    tell_uploader_delayed(asset)
    alert_admins(
        title=f"Asset processing failed on our side (asset {asset.pk}, {step})",
        message=f"{error} The file was not rejected; regenerate {', '.join(REGENERATE_STEPS[step])} to retry.",
        email_template="asset_processing_failed",
        context={
            "asset_id": asset.pk,
            "asset_type": asset.type,
            "file_size": asset.file_size,
            "step": step,
            "steps": REGENERATE_STEPS[step],
            "error": error,
        },
        priority=Notification.Priority.HIGH,
        metadata={"asset_id": asset.pk, "job_id": job_id, "step": step},
    )
    return True
