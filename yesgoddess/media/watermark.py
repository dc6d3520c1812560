"""Visible watermarks on images and videos, with an optional forensic id in mark and metadata.

The forensic id is written where ordinary tools show it and `read_forensic_id` finds it:
JPEG and WebP: EXIF UserComment; PNG: a tEXt chunk; video: the container's "comment" tag.
Each value is "YesGoddess-Forensic-ID:<id>", so an unrelated comment is never mistaken for one.
The source file is only ever read; output goes to a temporary file renamed into place.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from PIL import ExifTags, Image, PngImagePlugin

from .av import first_stream, probe
from .encoding import (
    FASTSTART,
    Deadline,
    even,
    ffmpeg_head,
    input_args,
    measure_output,
    output_path_arg,
    read_video,
    require_playable,
    run_ffmpeg,
)
from .errors import MediaError
from .imaging import apply_exif_orientation, decode, flatten_to_rgb, has_transparency, open_image
from .marks import POSITIONS, build_mark, check_fraction, check_position, find_font, load_logo, mark_layer, placements
from .tools import ensure_not_empty
from .writes import atomic_path

__all__ = ["POSITIONS", "read_forensic_id", "watermark_image", "watermark_video"]

FORENSIC_PREFIX = "YesGoddess-Forensic-ID:"
PNG_FORENSIC_KEY = "YesGoddess-Forensic-ID"
_FORENSIC_ID_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# EXIF UserComment starts with an 8-byte character-code field.
_USER_COMMENT_ASCII = b"ASCII\0\0\0"
_IMAGE_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
# Re-encoding a delivered copy: keep it close to the original (one generation of loss).
WATERMARK_JPEG_QUALITY = 92
WATERMARK_WEBP_QUALITY = 90
VIDEO_CRF = "20"
VIDEO_PRESET = "veryfast"
# Audio that MP4 carries as is; anything else (PCM, Vorbis...) is re-encoded to AAC.
_MP4_COPYABLE_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac"}
WATERMARK_AUDIO_BITRATE = "192k"


def _visible_text(text: str | None, forensic_id: str | None) -> str | None:
    text = text.strip() if text else None
    if forensic_id:
        return f"{text} · {forensic_id}" if text else forensic_id
    return text


def _check_options(
    text: str | None, logo_path: object, position: str, opacity: object, scale: object, forensic_id: str | None
) -> tuple[float, float]:
    check_position(position)
    opacity = check_fraction("opacity", opacity, "1 is fully opaque")
    scale = check_fraction("scale", scale, "the mark's width as a fraction of the picture's width")
    if not (text and text.strip()) and logo_path is None and not forensic_id:
        raise MediaError("Nothing to watermark with: give text, logo_path or forensic_id")
    if forensic_id is not None and not _FORENSIC_ID_FORMAT.match(forensic_id):
        raise MediaError("The forensic id must be 1 to 64 letters, digits, '-' or '_'")
    return opacity, scale


def _refuse_overwriting_source(src: Path, out_path: Path) -> None:
    ensure_not_empty(src)
    if out_path.resolve() == src.resolve() or (out_path.exists() and out_path.samefile(src)):
        raise MediaError("The watermarked copy must not overwrite the original file")


def _forensic_exif(forensic_id: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = (
        _USER_COMMENT_ASCII + f"{FORENSIC_PREFIX}{forensic_id}".encode("ascii")
    )
    return exif.tobytes()


def _load_source_picture(src: Path) -> tuple[Image.Image, str, bytes | None, bool]:
    """(upright RGBA picture, Pillow format, ICC profile to keep, had transparency)."""
    with open_image(src) as image:
        image_format = image.format or ""
        if image_format not in _IMAGE_FORMATS:
            raise MediaError(f"Watermarking supports JPEG, PNG and WebP images, not {image_format or 'this format'}")
        decode(image)
        # The ICC profile only still describes the pixels if they stay in the same colour model.
        icc = image.info.get("icc_profile") if image.mode in {"RGB", "RGBA", "P", "PA"} else None
        upright = apply_exif_orientation(image)
        transparent = has_transparency(upright)
        # Grey, 16-bit and CMYK pictures go through the package's RGB conversion first.
        base = upright.convert("RGBA") if transparent else flatten_to_rgb(upright).convert("RGBA")
    return base, image_format, icc or None, transparent


def _save_watermarked(
    picture: Image.Image, path: Path, image_format: str, icc: bytes | None, transparent: bool, forensic_id: str | None
) -> None:
    """Save in the source's format with only the ICC profile and the forensic id as metadata.

    The original's EXIF (GPS position, camera serial) is not copied into a copy made for
    distribution; the orientation tag is not needed since the pixels are already upright.
    """
    options: dict = {"icc_profile": icc} if icc else {}
    if image_format == "JPEG":
        if forensic_id:
            options["exif"] = _forensic_exif(forensic_id)
        picture.convert("RGB").save(path, "JPEG", quality=WATERMARK_JPEG_QUALITY, **options)
    elif image_format == "WEBP":
        if forensic_id:
            options["exif"] = _forensic_exif(forensic_id)
        picture = picture if transparent else picture.convert("RGB")
        picture.save(path, "WEBP", quality=WATERMARK_WEBP_QUALITY, method=4, **options)
    else:
        text_chunks = PngImagePlugin.PngInfo()
        if forensic_id:
            text_chunks.add_text(PNG_FORENSIC_KEY, forensic_id)
        picture = picture if transparent else picture.convert("RGB")
        picture.save(path, "PNG", pnginfo=text_chunks, **options)


def watermark_image(
    src: str | Path,
    out_path: str | Path,
    *,
    text: str | None = None,
    logo_path: str | Path | None = None,
    position: str = "bottom-right",
    opacity: float = 0.5,
    scale: float = 0.2,
    forensic_id: str | None = None,
    font_path: str | Path | None = None,
    timeout: float = 120,
) -> dict:
    """Write a watermarked copy of a JPEG, PNG or WebP image to out_path, in the same format.

    The mark is the logo above the text (the forensic id appended to the text), `scale` x the
    image width wide, at `opacity`, at `position` (one of POSITIONS). EXIF orientation is
    applied first so the mark lands upright. With `forensic_id`, the id is also stored in the
    image metadata (see the module docstring).
    Returns {"path": str, "width": int, "height": int, "position": str, "forensic_id": str | None}.
    Raises MediaError (nothing written to out_path) for bad options, an unreadable image or logo.
    """
    src, out_path = Path(src), Path(out_path)
    opacity, scale = _check_options(text, logo_path, position, opacity, scale, forensic_id)
    deadline = Deadline(timeout)
    _refuse_overwriting_source(src, out_path)
    picture, image_format, icc, transparent = _load_source_picture(src)
    logo = load_logo(logo_path) if logo_path is not None else None
    visible = _visible_text(text, forensic_id)
    font = find_font(font_path) if visible else None
    mark = build_mark(picture.size, text=visible, logo=logo, scale=scale, opacity=opacity, font=font)
    marked = Image.alpha_composite(picture, mark_layer(picture.size, mark, position))
    deadline.remaining()
    with atomic_path(out_path) as temp:
        try:
            _save_watermarked(marked, temp, image_format, icc, transparent, forensic_id)
        except (OSError, ValueError) as exc:
            raise MediaError(f"Could not write the watermarked image ({exc})") from exc
        deadline.remaining()
    return {
        "path": str(out_path),
        "width": marked.width,
        "height": marked.height,
        "position": position,
        "forensic_id": forensic_id,
    }


def _overlay_graph(video_index: int, size: tuple[int, int], spot: tuple[int, int]) -> str:
    width, height = size
    # Scale to the display size with square pixels first, so the mark (drawn for that size)
    # is not stretched on anamorphic video; for ordinary video this is a no-op.
    return (
        f"[0:{video_index}]scale={width}:{height},setsar=1[base];"
        f"[base][1:v]overlay=x={spot[0]}:y={spot[1]}:format=auto,format=yuv420p[marked]"
    )


def _audio_args(audio_streams: tuple[dict, ...]) -> list[str]:
    if not audio_streams:
        return []
    args = [arg for stream in audio_streams for arg in ("-map", f"0:{stream['index']}")]
    # Copy when MP4 can hold the audio as is: no second generation of loss, and much faster.
    if all(stream.get("codec_name") in _MP4_COPYABLE_AUDIO for stream in audio_streams):
        return [*args, "-c:a", "copy"]
    return [*args, "-c:a", "aac", "-b:a", WATERMARK_AUDIO_BITRATE]


def watermark_video(
    src: str | Path,
    out_path: str | Path,
    *,
    text: str | None = None,
    logo_path: str | Path | None = None,
    position: str = "bottom-right",
    opacity: float = 0.5,
    scale: float = 0.2,
    forensic_id: str | None = None,
    font_path: str | Path | None = None,
    timeout: float = 1800,
) -> dict:
    """Write a watermarked H.264 MP4 copy of a video to out_path (MP4 whatever the input container).

    The mark is the same as watermark_image's, drawn once with Pillow and overlaid by ffmpeg on
    every frame. Audio is kept (copied when MP4 allows it, else AAC 192k). With `forensic_id`,
    the container's "comment" tag holds it. Source tags are not copied.
    Returns {"path": str, "width": int, "height": int, "position": str, "forensic_id": str | None,
             "duration": float, "size_bytes": int}, measured on the output.
    Raises MediaError (nothing written to out_path) for bad options, an unreadable video or logo.
    """
    src, out_path = Path(src), Path(out_path)
    opacity, scale = _check_options(text, logo_path, position, opacity, scale, forensic_id)
    deadline = Deadline(timeout)
    _refuse_overwriting_source(src, out_path)
    source = read_video(src, deadline)
    size = (even(source.width), even(source.height))
    logo = load_logo(logo_path) if logo_path is not None else None
    visible = _visible_text(text, forensic_id)
    font = find_font(font_path) if visible else None
    mark = build_mark(size, text=visible, logo=logo, scale=scale, opacity=opacity, font=font)
    with tempfile.TemporaryDirectory(prefix="yg-watermark-") as workdir:
        # Tiled: one full-frame layer. Otherwise only the mark, overlaid at its spot (cheaper per frame).
        overlay, spot = (mark_layer(size, mark, position), (0, 0)) if position == "tiled" else (mark, None)
        spot = spot or placements(size, mark.size, position)[0]
        overlay_png = Path(workdir) / "mark.png"
        overlay.save(overlay_png, "PNG")
        with atomic_path(out_path) as temp:
            args = [*ffmpeg_head(), *input_args(src), *input_args(overlay_png)]
            args += ["-filter_complex", _overlay_graph(source.video_index, size, spot), "-map", "[marked]"]
            args += _audio_args(source.audio_streams)
            args += ["-c:v", "libx264", "-preset", VIDEO_PRESET, "-crf", VIDEO_CRF]
            args += ["-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
            if forensic_id:
                args += ["-metadata", f"comment={FORENSIC_PREFIX}{forensic_id}"]
            args += [*FASTSTART, "-f", "mp4", output_path_arg(temp)]
            run_ffmpeg(args, deadline, "ffmpeg could not watermark the video")
            measured = measure_output(temp, deadline)
            require_playable(measured, video=True)
    return {
        "path": str(out_path),
        "width": measured["width"],
        "height": measured["height"],
        "position": position,
        "forensic_id": forensic_id,
        "duration": measured["duration"],
        "size_bytes": measured["size_bytes"],
    }


def _id_from_text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.removeprefix(_USER_COMMENT_ASCII).decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.strip("\0 ")
        if value.startswith(FORENSIC_PREFIX):
            return value.removeprefix(FORENSIC_PREFIX) or None
    return None


def _image_forensic_id(image: Image.Image) -> str | None:
    png_text = getattr(image, "text", None) or {}
    if png_text.get(PNG_FORENSIC_KEY):
        return png_text[PNG_FORENSIC_KEY]
    try:
        exif_ifd = image.getexif().get_ifd(ExifTags.IFD.Exif)
    except (OSError, SyntaxError, ValueError, KeyError):
        return None
    return _id_from_text(exif_ifd.get(ExifTags.Base.UserComment))


def read_forensic_id(path: str | Path, *, timeout: float = 60) -> str | None:
    """The forensic id embedded by watermark_image / watermark_video, or None when there is none.

    Images are read with Pillow (headers only); anything Pillow does not recognise is asked
    of ffprobe (container tags). Raises MediaError when neither can read the file.
    """
    path = Path(path)
    ensure_not_empty(path)
    try:
        with open_image(path) as image:
            return _image_forensic_id(image)
    except MediaError:
        pass  # not an image Pillow knows: try it as a video
    info = probe(path, timeout=timeout)
    tags = info.get("format", {}).get("tags", {}) or {}
    stream = first_stream(info, "video") or {}
    for value in [*tags.values(), *(stream.get("tags", {}) or {}).values()]:
        found = _id_from_text(value)
        if found:
            return found
    return None
