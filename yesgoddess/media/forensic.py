"""Forensic watermark ids: a short keyed hash of (user, asset, issue time).

The id is an HMAC-SHA256, so nobody without the key can forge an id that points at another
user, and the same (user, asset, time) always gives the same id, so a leaked copy can be
traced by recomputing ids for the downloads on record. The key is a parameter: the caller
reads it from settings, this module never does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta

# 10 bytes = 80 bits = exactly 16 base32 characters (no padding): short enough to print
# in a visible mark, far too many to guess or to collide among real downloads.
_DIGEST_BYTES = 10
FORENSIC_ID_LENGTH = 16
FORENSIC_ID_PATTERN = re.compile(r"^[a-z2-7]{16}$")
# Domain separation: the same key may sign other things without their MACs being reusable here.
_DOMAIN = b"yesgoddess/forensic-id/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_milliseconds(issued_at: datetime) -> int:
    """Integer milliseconds since 1970 (exact, no float rounding); naive datetimes are refused.

    Milliseconds, not microseconds: an issue time that went through JSON or JavaScript
    (millisecond precision) still verifies.
    """
    if issued_at.tzinfo is None or issued_at.utcoffset() is None:
        raise ValueError("issued_at must be timezone-aware (a naive datetime is ambiguous)")
    return (issued_at - _EPOCH) // timedelta(milliseconds=1)


def _message(user_id: object, asset_id: object, issued_at: datetime) -> bytes:
    # Each part is length-prefixed, so ("ab", "c") and ("a", "bc") can never give the same message.
    parts = [str(user_id).encode(), str(asset_id).encode(), str(_epoch_milliseconds(issued_at)).encode()]
    return _DOMAIN + b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def forensic_id(user_id: object, asset_id: object, issued_at: datetime, key: bytes) -> str:
    """16 lowercase base32 characters ([a-z2-7]) identifying who got which asset when.

    Deterministic for the same inputs and key; raises ValueError for an empty key or a naive
    issued_at.
    """
    if not isinstance(key, bytes | bytearray) or not key:
        raise ValueError("The forensic key must be non-empty bytes")
    digest = hmac.new(bytes(key), _message(user_id, asset_id, issued_at), hashlib.sha256).digest()
    return base64.b32encode(digest[:_DIGEST_BYTES]).decode("ascii").lower()


def verify_forensic_id(fid: str, user_id: object, asset_id: object, issued_at: datetime, key: bytes) -> bool:
    """True when `fid` is the id of (user_id, asset_id, issued_at) under `key`; constant-time compare."""
    if not isinstance(fid, str):
        return False
    expected = forensic_id(user_id, asset_id, issued_at, key)
    # compare_digest needs equal types; encode so non-ASCII input cannot raise.
    return hmac.compare_digest(fid.strip().lower().encode("utf-8"), expected.encode("ascii"))
