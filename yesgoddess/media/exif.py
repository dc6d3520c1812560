"""EXIF as a JSON-safe dict of readable tag names.

Binary blobs (MakerNote, thumbnails, print-matching data) are dropped: they are large,
vendor-specific and useless in a JSON column. Rationals become floats, short ASCII byte
strings become text.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from PIL import ExifTags, Image, TiffImagePlugin

_SKIPPED_TAGS = {
    0x927C,  # MakerNote
    0x9286,  # UserComment is handled separately
    0xC4A5,  # PrintImageMatching
    0x8769,  # ExifOffset (pointer, expanded below)
    0x8825,  # GPSInfo (pointer, expanded below)
    0xA005,  # InteropOffset (pointer)
    0x02BC,  # XMLPacket (XMP, large)
    0x8773,  # InterColorProfile
    0x83BB,  # IPTC/NAA
}
_MAX_TEXT = 1000
_MAX_BYTES_AS_TEXT = 256


def _json_safe(value: Any) -> Any:
    """A JSON-safe version of an EXIF value, or None when it should be dropped."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        number = float(value) if value.denominator else math.nan
        return round(number, 6) if math.isfinite(number) else None
    if isinstance(value, bool | int | str | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, str):
            value = value.replace("\x00", "").strip()[:_MAX_TEXT]
            return value or None
        return value
    if isinstance(value, bytes):
        if len(value) > _MAX_BYTES_AS_TEXT:
            return None
        try:
            text = value.rstrip(b"\x00").decode("ascii")
        except UnicodeDecodeError:
            return None
        return text.strip() if text.isprintable() and text.strip() else None
    if isinstance(value, tuple | list):
        items = [_json_safe(item) for item in value[:64]]
        return items if all(item is not None for item in items) and items else None
    return None


def _user_comment(raw: Any) -> str | None:
    """UserComment starts with an 8-byte character-code prefix (EXIF 2.3, 4.6.5)."""
    if isinstance(raw, str):
        return raw.strip("\x00 ") or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    code, body = raw[:8], raw[8:]
    encoding = {b"ASCII\x00\x00\x00": "ascii", b"UNICODE\x00": "utf-16"}.get(code)
    if encoding is None:
        return None
    try:
        text = body.decode(encoding).strip("\x00 ")
    except UnicodeDecodeError:
        return None
    return text[:_MAX_TEXT] or None


def _named(ifd: dict, names: dict[int, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for tag, raw in ifd.items():
        if tag in _SKIPPED_TAGS:
            continue
        value = _json_safe(raw)
        if value is not None:
            result[names.get(tag, f"Tag0x{tag:04X}")] = value
    return result


def exif_as_dict(image: Image.Image) -> dict[str, Any]:
    """Base IFD, Exif IFD and GPS IFD merged into one dict; GPS under "GPSInfo"."""
    try:
        exif = image.getexif()
        if not exif:
            return {}
        result = _named(dict(exif), ExifTags.TAGS)
        exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
        result.update(_named(exif_ifd, ExifTags.TAGS))
        comment = _user_comment(exif_ifd.get(0x9286))
        if comment:
            result["UserComment"] = comment
        gps = _named(exif.get_ifd(ExifTags.IFD.GPSInfo), ExifTags.GPSTAGS)
        if gps:
            result["GPSInfo"] = gps
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        # A damaged EXIF block should not make the whole metadata extraction fail.
        return {}
    return result
