"""Handlers of the scheduled asset housekeeping jobs: asset-cleanup, upload-cleanup,
storage-metrics-calculation (`yesgoddess.assets.housekeeping`) and ownership-verification
(`yesgoddess.assets.ownership`)."""

from __future__ import annotations

from yesgoddess.assets import housekeeping, ownership


def cleanup_deleted_assets() -> dict[str, int]:
    """Hard-delete assets soft-deleted long ago, with every stored file."""
    return housekeeping.cleanup_deleted_assets()


def cleanup_uploads(*, dry_run: bool = False) -> dict[str, int]:
    """Purge abandoned, failed and infected uploads (`dry_run` only counts them)."""
    return housekeeping.cleanup_uploads(dry_run=dry_run)


def calculate_storage_metrics() -> dict[str, int]:
    """Today's storage snapshot per platform, user, project and brand."""
    return housekeeping.calculate_storage_metrics()


def verify_ownership() -> dict[str, int]:
    """Record assets whose active ownership shares do not sum to 100 %, tell admins."""
    return ownership.verify_ownership()
