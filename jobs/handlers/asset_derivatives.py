"""Handlers of the asset derivative jobs: asset-preview-generation,
asset-format-conversion, asset-watermarking, and their final-failure hooks.
What is made and where it is stored is `yesgoddess.assets.derivatives`."""

from __future__ import annotations

from typing import Any

from yesgoddess.assets import derivatives


def generate_preview(*, asset_id: int) -> dict[str, Any]:
    """Preview clip of a video or audio asset."""
    return derivatives.generate_preview(asset_id)


def record_preview_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-preview-generation`, recorded on the asset."""
    derivatives.record_preview_failure(kwargs.get("asset_id"), error)


def convert_formats(*, asset_id: int) -> dict[str, Any]:
    """Web variants of an image, video or audio asset."""
    return derivatives.convert_formats(asset_id)


def record_variants_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-format-conversion`, recorded on the asset."""
    derivatives.record_variants_failure(kwargs.get("asset_id"), error)


def watermark_asset(
    *,
    asset_id: int,
    text: str | None = None,
    logo_asset_id: int | None = None,
    position: str = derivatives.DEFAULT_POSITION,
    opacity: float = derivatives.DEFAULT_OPACITY,
    scale: float = derivatives.DEFAULT_SCALE,
    forensic: bool = False,
    user_id: int | None = None,
    issued_at: str | None = None,
) -> dict[str, Any]:
    """A watermarked copy of an image or video (forensic id on request, recorded)."""
    return derivatives.watermark_asset(
        asset_id,
        text=text,
        logo_asset_id=logo_asset_id,
        position=position,
        opacity=opacity,
        scale=scale,
        forensic=forensic,
        user_id=user_id,
        issued_at=issued_at,
    )


def record_watermark_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of `asset-watermarking`, recorded on the asset."""
    derivatives.record_watermark_failure(kwargs.get("asset_id"), error)
