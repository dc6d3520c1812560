"""Forensic watermark issuances: the append-only record of who got which watermarked
copy, and the staff lookup of a forensic id found in a leaked copy (issue 21, item 4).

`derivatives.watermark_asset` records one `WatermarkIssuance` per forensic copy it makes.
The forensic id is an HMAC of (recipient, asset, issue time) under WATERMARK_FORENSIC_KEY
(`yesgoddess.media.forensic`), so a record can be checked against its id: `verified` says
the stored recipient, asset and time really give that id under the current key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from yesgoddess.media.forensic import FORENSIC_ID_PATTERN, verify_forensic_id

from .models import IpAsset, WatermarkIssuance

RECORDED_OPTIONS = ("text", "logo_asset_id", "position", "opacity", "scale")


class BadForensicId(ValueError):
    """Not something a forensic watermark could carry."""


def record_issuance(
    *, asset_id: int, recipient_id: int, forensic_id: str, issued_at: datetime, options: dict[str, Any], key: str
) -> bool:
    """Record one forensic copy (once: the same job run again records nothing new,
    since the same recipient, asset and time give the same id). True if recorded now."""
    row = WatermarkIssuance(
        asset_id=asset_id,
        recipient_id=recipient_id,
        forensic_id=forensic_id,
        issued_at=issued_at,
        options={name: options.get(name) for name in RECORDED_OPTIONS},
        storage_key=key,
    )
    if WatermarkIssuance.objects.filter(forensic_id=forensic_id).exists():
        return False
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # the same run, recorded a moment ago by a twin
        return False
    return True


def normalise(raw: str) -> str:
    """The id as stored (lower case, no spaces); BadForensicId for anything else."""
    fid = raw.strip().lower() if isinstance(raw, str) else ""
    if not FORENSIC_ID_PATTERN.fullmatch(fid):
        raise BadForensicId("A forensic id is 16 characters from a-z and 2-7.")
    return fid


def lookup(raw: str) -> dict[str, Any] | None:
    """Who got the copy carrying forensic id `raw`, and when; None if no copy has it."""
    fid = normalise(raw)
    issuance = WatermarkIssuance.objects.select_related("recipient").filter(forensic_id=fid).first()
    if issuance is None:
        return None
    asset = IpAsset.objects.filter(pk=issuance.asset_id).only("title", "deleted_at").first()
    return {
        "forensic_id": issuance.forensic_id,
        "verified": verify_forensic_id(
            fid,
            issuance.recipient_id,
            issuance.asset_id,
            issuance.issued_at,
            settings.WATERMARK_FORENSIC_KEY.encode(),
        ),
        "issued_at": issuance.issued_at.isoformat(),
        "recipient": {"id": issuance.recipient_id, "username": issuance.recipient.get_username()},
        "asset": {
            "id": issuance.asset_id,
            "exists": asset is not None,
            "title": asset.title if asset else None,
            "deleted": bool(asset and asset.deleted_at),
        },
        "options": issuance.options,
        "storage_key": issuance.storage_key,
    }
