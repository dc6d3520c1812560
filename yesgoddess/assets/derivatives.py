"""Asset derivatives: previews, format conversion, watermarking (spec A §2.8-§2.10 as
settled by DECISIONS.md). Every file goes under derivatives/<asset_id>/ with a fixed name
per variant, so a second run rewrites the same files instead of adding a second set; the
list of what exists is merged into the asset's metadata under the step's own key
("preview", "variants", "watermark"), where a final failure is recorded too.

Derivatives are made only from live, clean, non-rejected assets of the right type; any
other request raises `AssetUnusable`, as does a file the media code cannot read (the
original is kept: unlike thumbnails, a failed derivative does not reject the asset). A
tool that is missing or out of time (`MachineFault`) is the machine's fault: it propagates,
so RQ retries the job, and the final failure is recorded under the step's key.

Every forensic watermark is also recorded, append-only, in `WatermarkIssuance`
(`watermarks.py`): metadata["watermark"] only says what the latest run made.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from yesgoddess.media.conversion import convert_audio, convert_image, convert_video
from yesgoddess.media.errors import MediaError
from yesgoddess.media.forensic import forensic_id
from yesgoddess.media.previews import make_audio_preview, make_video_preview
from yesgoddess.media.watermark import POSITIONS, watermark_image, watermark_video

from .models import AssetStatus, AssetType, IpAsset
from .processing import AssetUnusable, processable_asset, record_step_failure
from .services import local_copy, merge_metadata
from .watermarks import record_issuance

PREVIEW_TYPES = (AssetType.VIDEO, AssetType.AUDIO)
CONVERTIBLE_TYPES = (AssetType.IMAGE, AssetType.VIDEO, AssetType.AUDIO)
WATERMARKABLE_TYPES = (AssetType.IMAGE, AssetType.VIDEO)

# What a watermark request leaves out (the `asset-watermarking` job's defaults too).
DEFAULT_POSITION = "bottom-right"
DEFAULT_OPACITY = 0.5
DEFAULT_SCALE = 0.2


def derivable_asset(asset_id: int, allowed_types: tuple[str, ...], what: str) -> IpAsset | None:
    """The asset if `what` may be made from it; None if it was deleted meanwhile."""
    asset = processable_asset(asset_id)
    if asset is None:
        return None
    if asset.status == AssetStatus.REJECTED:
        raise AssetUnusable(f"Asset {asset_id} was rejected ({asset.rejection_reason}); no {what} is made.")
    if asset.type not in allowed_types:
        raise AssetUnusable(f"Asset {asset_id} is {asset.type}; {what} is made for {', '.join(allowed_types)} only.")
    return asset


def store(asset_id: int, local: str | Path, name: str) -> str:
    """Save a local file as derivatives/<asset_id>/<name> (overwriting); return its key."""
    with open(local, "rb") as fh:
        return default_storage.save(f"derivatives/{asset_id}/{name}", File(fh))


def record_preview_failure(asset_id: int | None, error: str) -> None:
    record_step_failure(asset_id, "preview", error)


def record_variants_failure(asset_id: int | None, error: str) -> None:
    record_step_failure(asset_id, "variants", error)


def record_watermark_failure(asset_id: int | None, error: str) -> None:
    record_step_failure(asset_id, "watermark", error)


# --- previews ------------------------------------------------------------------------------------


def generate_preview(asset_id: int) -> dict[str, Any]:
    """Video: 10 s H.264 clip from 10 % of the duration; audio: 30 s MP3 at 128 kbps."""
    asset = derivable_asset(asset_id, PREVIEW_TYPES, "a preview")
    if asset is None:
        return {"skipped": "deleted"}
    video = asset.type == AssetType.VIDEO
    name = "preview.mp4" if video else "preview.mp3"
    with local_copy(asset.storage_key) as source, tempfile.TemporaryDirectory(prefix="preview-") as out:
        try:
            made = (make_video_preview if video else make_audio_preview)(source, Path(out) / name)
        except MediaError as exc:
            raise AssetUnusable(str(exc)) from None
        key = store(asset_id, made["path"], name)
    details = {k: v for k, v in made.items() if k != "path"}
    merge_metadata(
        asset_id,
        "preview",
        {
            "key": key,
            "content_type": "video/mp4" if video else "audio/mpeg",
            **details,
            "generated_at": timezone.now().isoformat(),
        },
    )
    return {"preview_bytes": made["size_bytes"]}


# --- format conversion ----------------------------------------------------------------------------


def convert_formats(asset_id: int) -> dict[str, Any]:
    """Web variants: images -> WebP, AVIF and responsive widths; video -> 720p/480p H.264;
    audio -> MP3 320/192/128 and AAC. Each recorded under metadata["variants"]."""
    asset = derivable_asset(asset_id, CONVERTIBLE_TYPES, "format conversion")
    if asset is None:
        return {"skipped": "deleted"}
    convert = {AssetType.IMAGE: convert_image, AssetType.VIDEO: convert_video, AssetType.AUDIO: convert_audio}
    with local_copy(asset.storage_key) as source, tempfile.TemporaryDirectory(prefix="variants-") as out:
        try:
            made = convert[asset.type](source, Path(out))
        except MediaError as exc:
            raise AssetUnusable(str(exc)) from None
        variants = {}
        for variant in made:
            key = store(asset_id, variant["path"], f"variants/{Path(variant['path']).name}")
            variants[variant["variant"]] = {
                "key": key,
                **{k: v for k, v in variant.items() if k not in ("path", "variant")},
            }
    stale = set(_stored_variant_keys(asset_id)) - {v["key"] for v in variants.values()}
    for key in stale:  # a variant this run no longer makes (e.g. the source was replaced)
        default_storage.delete(key)
    merge_metadata(asset_id, "variants", {"items": variants, "generated_at": timezone.now().isoformat()})
    return {"variants": len(variants)}


def _stored_variant_keys(asset_id: int) -> list[str]:
    try:
        return [
            f"derivatives/{asset_id}/variants/{name}"
            for name in default_storage.listdir(f"derivatives/{asset_id}/variants")[1]
        ]
    except FileNotFoundError:
        return []


# --- watermarking ----------------------------------------------------------------------------------


def watermark_asset(
    asset_id: int,
    *,
    text: str | None = None,
    logo_asset_id: int | None = None,
    position: str = DEFAULT_POSITION,
    opacity: float = DEFAULT_OPACITY,
    scale: float = DEFAULT_SCALE,
    forensic: bool = False,
    user_id: int | None = None,
    issued_at: str | None = None,
) -> dict[str, Any]:
    """A watermarked copy (the original is never touched). `forensic` embeds an HMAC
    id of (user, asset, time) in the visible mark and in the file's metadata, and records
    the issuance. `issued_at` (ISO 8601, with offset) is the time signed into the id: the
    API passes the request's time, so a retried job makes the same copy and record."""
    asset = derivable_asset(asset_id, WATERMARKABLE_TYPES, "a watermark")
    if asset is None:
        return {"skipped": "deleted"}
    if position not in POSITIONS:
        raise AssetUnusable(f"Unknown position {position!r}; use one of {', '.join(POSITIONS)}.")
    if forensic and user_id is None:
        raise AssetUnusable("A forensic watermark needs the user_id it is issued to.")
    if forensic and not get_user_model().objects.filter(pk=user_id).exists():
        raise AssetUnusable(f"User {user_id}, the recipient of the forensic watermark, does not exist.")
    issued = _issue_time(issued_at)
    fid = forensic_id(user_id, asset_id, issued, settings.WATERMARK_FORENSIC_KEY.encode()) if forensic else None
    logo = IpAsset.objects.filter(pk=logo_asset_id, deleted_at__isnull=True).first() if logo_asset_id else None
    if logo_asset_id and logo is None:
        raise AssetUnusable(f"Logo asset {logo_asset_id} does not exist.")
    # Videos come out as MP4 whatever the source container; images keep their format.
    suffix = ".mp4" if asset.type == AssetType.VIDEO else (Path(asset.storage_key).suffix.lower() or ".png")
    name = f"watermarked/{fid or 'standard'}{suffix}"
    with local_copy(asset.storage_key) as source, tempfile.TemporaryDirectory(prefix="watermark-") as out:
        with local_copy(logo.storage_key) if logo else contextlib.nullcontext() as logo_path:
            mark = watermark_image if asset.type == AssetType.IMAGE else watermark_video
            options = {
                "text": text,
                "logo_path": logo_path,
                "position": position,
                "opacity": opacity,
                "scale": scale,
                "forensic_id": fid,
            }
            try:
                made = mark(source, Path(out) / Path(name).name, **options)
            except MediaError as exc:
                raise AssetUnusable(str(exc)) from None
        key = store(asset_id, made["path"], name)
    with transaction.atomic():
        merge_metadata(
            asset_id,
            "watermark",
            {
                "key": key,
                "position": position,
                "opacity": opacity,
                "text": text,
                "logo_asset_id": logo_asset_id,
                "forensic_id": fid,
                "issued_to": user_id if forensic else None,
                "issued_at": issued.isoformat(),
            },
        )
        recorded = fid is not None and record_issuance(
            asset_id=asset_id,
            recipient_id=user_id,
            forensic_id=fid,
            issued_at=issued,
            options={
                "text": text,
                "logo_asset_id": logo_asset_id,
                "position": position,
                "opacity": opacity,
                "scale": scale,
            },
            key=key,
        )
    return {"watermarked": 1, "issuances_recorded": int(recorded)}


def _issue_time(raw: str | None) -> datetime:
    """The issue time of a forensic copy: `raw` (ISO 8601 with an offset), else now."""
    if raw is None:
        return timezone.now()
    try:
        issued = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        issued = None
    if issued is None or issued.tzinfo is None:
        raise AssetUnusable(f"issued_at must be an ISO 8601 time with an offset, not {raw!r}.")
    return issued
