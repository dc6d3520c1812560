"""Running an asset's pipeline again on request: a rescan, or regenerated derivatives.

One rule for every caller: the API (`views.rescan_asset`, `views.regenerate_asset`) and the
operator's admin actions. Each checks the asset, writes what the request changes, and
enqueues the jobs after commit, deduplicated per asset like the upload's own pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from jobs.api import enqueue

from .models import AssetStatus, IpAsset, ScanStatus
from .processing import enqueue_processing
from .services import audit

REGENERATABLE = ("thumbnails", "metadata", "preview", "variants")
# Steps made only for some asset types (the others apply to every type).
STEP_TYPES = {"preview": ("VIDEO", "AUDIO"), "variants": ("IMAGE", "VIDEO", "AUDIO")}


class RequestRefused(Exception):
    """A rescan or regeneration the asset cannot take; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def request_rescan(asset: IpAsset, actor: Any = None) -> str:
    """Scan the asset again (forced): scan status back to PENDING, an audit row, and the
    scan job after commit. An infected, quarantined asset is never rescanned."""
    if asset.scan_status == ScanStatus.INFECTED:
        raise RequestRefused(409, "The asset is infected and quarantined; it cannot be rescanned.")
    with transaction.atomic():
        IpAsset.objects.filter(pk=asset.pk).update(scan_status=ScanStatus.PENDING, scan_result=None)
        audit(asset, "ASSET_RESCAN_REQUESTED", asset.status, asset.status, actor=actor)
        return enqueue("asset-virus-scan", asset_id=asset.pk, force=True, dedup_key=f"asset-{asset.pk}")


def steps_for_type(asset_type: str) -> tuple[str, ...]:
    """Every step that applies to assets of `asset_type`."""
    return tuple(step for step in REGENERATABLE if asset_type in STEP_TYPES.get(step, (asset_type,)))


def request_regeneration(asset: IpAsset, steps: Sequence[str]) -> dict[str, str]:
    """Run `steps` of the pipeline again for a clean, not rejected asset; return the job
    id of each step (and of the finalize job when thumbnails or metadata run)."""
    if not steps or any(step not in REGENERATABLE for step in steps):
        raise RequestRefused(400, f"steps must be a list drawn from {', '.join(REGENERATABLE)}.")
    if asset.scan_status != ScanStatus.CLEAN:
        raise RequestRefused(409, f"The asset has not passed the virus scan (scan status {asset.scan_status}).")
    if asset.status == AssetStatus.REJECTED:
        raise RequestRefused(409, f"The asset was rejected: {asset.rejection_reason}")
    for step in steps:
        if step not in steps_for_type(asset.type):
            raise RequestRefused(400, f"'{step}' is made for {', '.join(STEP_TYPES[step])} assets, not {asset.type}.")
    with transaction.atomic():
        return enqueue_processing(asset.pk, tuple(dict.fromkeys(steps)))
