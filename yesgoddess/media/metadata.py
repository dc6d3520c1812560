"""Technical metadata of an asset file as a JSON-safe dict (str, int, float, bool, None, list, dict).

One extractor per asset type; types without one give {}. Unreadable files raise MediaError.
"""

from __future__ import annotations

import math
from pathlib import Path

from .av import duration_seconds, evaluate_fraction, first_stream, probe, to_float, to_int
from .errors import MediaError
from .exif import exif_as_dict
from .imaging import displayed_size, exif_orientation, has_transparency, open_image
from .office import OOXML_FORMATS, read_ooxml_properties
from .pdf import TEXT_EXCERPT_CHARS, read_pdf_info, read_pdf_text
from .tools import ensure_not_empty

_AUDIO_TAGS = ("title", "artist", "album", "date", "genre", "track")
_TEXT_READ_CHUNK = 1 << 20


def _mime(mime: str) -> str:
    return mime.split(";", 1)[0].strip().lower()


def image_metadata(src: Path) -> dict:
    """Header-level facts and EXIF; the pixels are not decoded (thumbnails do that)."""
    with open_image(src) as image:
        display_width, display_height = displayed_size(image)
        return {
            "width": image.width,
            "height": image.height,
            "display_width": display_width,
            "display_height": display_height,
            "format": (image.format or "").lower() or None,
            "mode": image.mode,
            "has_alpha": has_transparency(image),
            "frames": int(getattr(image, "n_frames", 1)),
            "animated": bool(getattr(image, "is_animated", False)),
            "orientation": exif_orientation(image),
            "exif": exif_as_dict(image),
        }


def _aspect_ratio(stream: dict, width: int | None, height: int | None) -> str | None:
    declared = stream.get("display_aspect_ratio")
    if declared and declared not in {"0:1", "N/A"}:
        return declared
    if width and height:
        divisor = math.gcd(width, height)
        return f"{width // divisor}:{height // divisor}"
    return None


def _rotation(stream: dict) -> int:
    """Display rotation from the stream's display matrix side data (phones record portrait this way)."""
    for side_data in stream.get("side_data_list", []):
        if "rotation" in side_data:
            return int(to_float(side_data["rotation"]) or 0)
    return int(to_float(stream.get("tags", {}).get("rotate")) or 0)


def _seconds(info: dict, stream: dict) -> float | None:
    duration = duration_seconds(info, stream)
    return round(duration, 3) if duration is not None else None


def _string_tags(tags: dict | None) -> dict[str, str]:
    return {str(key): str(value) for key, value in (tags or {}).items()}


def video_metadata(src: Path, timeout: float) -> dict:
    info = probe(src, timeout=timeout)
    video = first_stream(info, "video")
    if video is None:
        raise MediaError("No video stream found")
    audio = first_stream(info, "audio")
    container = info.get("format", {})
    width, height = to_int(video.get("width")), to_int(video.get("height"))
    return {
        "duration": _seconds(info, video),
        "width": width,
        "height": height,
        "resolution": f"{width}x{height}" if width and height else None,
        "aspect_ratio": _aspect_ratio(video, width, height),
        "rotation": _rotation(video),
        "video_codec": video.get("codec_name"),
        "fps": evaluate_fraction(video.get("avg_frame_rate")) or evaluate_fraction(video.get("r_frame_rate")),
        "bitrate": to_int(container.get("bit_rate")) or to_int(video.get("bit_rate")),
        "format": container.get("format_name"),
        "has_audio": audio is not None,
        "audio_codec": audio.get("codec_name") if audio else None,
        "sample_rate": to_int(audio.get("sample_rate")) if audio else None,
        "tags": _string_tags(container.get("tags")),
    }


def _track_number(value: str | None) -> int | None:
    """ "3/12" -> 3."""
    if not value:
        return None
    head = value.split("/", 1)[0].strip()
    return int(head) if head.isdigit() else None


def audio_tags(container: dict, stream: dict) -> dict:
    """title/artist/album/date/year/genre/track from container tags, then stream tags (Ogg keeps them there).

    Tag names differ in case between formats (ID3 "title", Vorbis "TITLE"), so keys are matched
    case-insensitively. Every key is present; missing tags are None.
    """
    merged: dict[str, str] = {}
    for tags in (stream.get("tags") or {}, container.get("tags") or {}):
        merged.update({str(key).lower(): str(value).strip() for key, value in tags.items()})
    found = {key: merged.get(key) or None for key in _AUDIO_TAGS}
    date = found["date"] or merged.get("year") or merged.get("tyer")
    found["date"] = date or None
    found["year"] = int(date[:4]) if date and date[:4].isdigit() else None
    found["track"] = _track_number(found["track"])
    return found


def audio_metadata(src: Path, timeout: float) -> dict:
    info = probe(src, timeout=timeout)
    audio = first_stream(info, "audio")
    if audio is None:
        raise MediaError("No audio stream found")
    container = info.get("format", {})
    return {
        "duration": _seconds(info, audio),
        "bitrate": to_int(container.get("bit_rate")) or to_int(audio.get("bit_rate")),
        "sample_rate": to_int(audio.get("sample_rate")),
        "channels": to_int(audio.get("channels")),
        "codec": audio.get("codec_name"),
        "format": container.get("format_name"),
        "tags": audio_tags(container, audio),
    }


def pdf_metadata(src: Path, timeout: float) -> dict:
    result = read_pdf_info(src, timeout=timeout)
    text = read_pdf_text(src, timeout=timeout)
    result["text_length"] = len(text)
    result["text_excerpt"] = text[:TEXT_EXCERPT_CHARS]
    result["text_truncated"] = len(text) > TEXT_EXCERPT_CHARS
    return result


def text_metadata(src: Path) -> dict:
    """Line, word and character counts of a plain-text file, read in chunks (it may be large)."""
    lines = words = chars = 0
    excerpt_parts: list[str] = []
    excerpt_length = 0
    last_char = ""
    with src.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        while chunk := handle.read(_TEXT_READ_CHUNK):
            chars += len(chunk)
            lines += chunk.count("\n")
            # A word split across two chunks is counted once: skip the continuation.
            words += len(chunk.split()) - (1 if last_char and not last_char.isspace() and not chunk[0].isspace() else 0)
            last_char = chunk[-1]
            if excerpt_length < TEXT_EXCERPT_CHARS:
                excerpt_parts.append(chunk[: TEXT_EXCERPT_CHARS - excerpt_length])
                excerpt_length += len(excerpt_parts[-1])
    if chars and last_char != "\n":
        lines += 1  # the last line has no newline but is still a line
    return {
        "line_count": lines,
        "word_count": words,
        "char_count": chars,
        "text_length": chars,
        "text_excerpt": "".join(excerpt_parts),
        "text_truncated": chars > TEXT_EXCERPT_CHARS,
    }


def document_metadata(src: Path, mime: str, timeout: float) -> dict:
    if mime == "application/pdf":
        return pdf_metadata(src, timeout)
    if mime in OOXML_FORMATS:
        return read_ooxml_properties(src, mime)
    if mime.startswith("text/"):
        return text_metadata(src)
    # Legacy binary Office files need a parser we do not have: no metadata rather than a guess.
    return {}


def extract_metadata(src: Path, asset_type: str, mime: str, *, timeout: float = 120) -> dict:
    """Type-specific technical metadata; {} for types that have none. MediaError when unreadable."""
    src = Path(src)
    ensure_not_empty(src)
    mime = _mime(mime)
    if asset_type == "IMAGE":
        return image_metadata(src)
    if asset_type == "VIDEO":
        return video_metadata(src, timeout)
    if asset_type == "AUDIO":
        return audio_metadata(src, timeout)
    if asset_type == "DOCUMENT":
        return document_metadata(src, mime, timeout)
    return {}
