"""Handlers of the asset pipeline jobs: asset-virus-scan, asset-thumbnail-generation,
asset-metadata-extraction, asset-virus-scan-finalize, their final-failure hooks, and
asset-virus-scan.sweep. The pipeline itself is `yesgoddess.assets.processing`; the sweep,
`yesgoddess.assets.recovery`."""

from __future__ import annotations

from typing import Any

from yesgoddess.assets import processing, recovery


def scan_asset(*, asset_id: int, force: bool = False) -> dict[str, Any]:
    """Stream the original through clamd and act on the verdict (an unreachable scanner
    raises, so the job is retried)."""
    return processing.scan_asset(asset_id, force=force)


def record_scan_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-virus-scan`: scan ERROR (never CLEAN), admins told."""
    processing.record_scan_failure(kwargs.get("asset_id"), error, job_id)


def generate_thumbnails(*, asset_id: int) -> dict[str, Any]:
    """Small/medium/large JPEG thumbnails of a clean asset."""
    return processing.generate_thumbnails(asset_id)


def record_thumbnail_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-thumbnail-generation`, recorded on the asset."""
    processing.record_thumbnail_failure(kwargs.get("asset_id"), error, job_id)


def extract_asset_metadata(*, asset_id: int) -> dict[str, Any]:
    """Technical metadata of a clean asset's file."""
    return processing.extract_asset_metadata(asset_id)


def record_metadata_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-metadata-extraction`, recorded on the asset."""
    processing.record_metadata_failure(kwargs.get("asset_id"), error, job_id)


def finish_processing(*, asset_id: int) -> dict[str, Any]:
    """Move a clean asset to REVIEW once thumbnails and metadata both succeeded."""
    return processing.finish_processing(asset_id)


def record_finalize_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-virus-scan-finalize`: a visible, retryable error."""
    processing.record_finalize_failure(kwargs.get("asset_id"), error, job_id)


def rescan_failed_scans() -> dict[str, int]:
    """Once clamd answers, rescan every asset whose scan failed on our side."""
    return recovery.rescan_failed_scans()
