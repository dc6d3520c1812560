"""ffprobe and ffmpeg: probing streams and grabbing a video frame.

Inputs are passed as "file:/absolute/path" with only the file protocol allowed, so a crafted
file (an HLS playlist posing as a video, say) cannot make ffmpeg open network URLs.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

from .errors import MediaError
from .tools import ensure_not_empty, run_tool, tool_path_arg

FFPROBE = "ffprobe"
FFMPEG = "ffmpeg"
INPUT_SAFETY_ARGS = ["-protocol_whitelist", "file"]


def ffmpeg_input(path: str | Path) -> str:
    return "file:" + tool_path_arg(path)


def probe(path: str | Path, *, timeout: float) -> dict:
    """ffprobe's JSON (format + streams); MediaError when ffprobe cannot read the file."""
    ensure_not_empty(path)
    output = run_tool(
        [
            FFPROBE,
            "-v",
            "error",
            *INPUT_SAFETY_ARGS,
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            ffmpeg_input(path),
        ],
        timeout=timeout,
        failure="ffprobe could not read the file",
    )
    try:
        info = json.loads(output.decode("utf-8", errors="replace") or "{}")
    except json.JSONDecodeError as exc:
        raise MediaError(f"ffprobe returned unreadable output: {exc}") from exc
    if not info.get("format") and not info.get("streams"):
        raise MediaError("ffprobe could not read the file: no container or streams recognised")
    return info


def first_stream(info: dict, codec_type: str) -> dict | None:
    """The first stream of a kind; embedded cover art (attached_pic) is not a video stream."""
    for stream in info.get("streams", []):
        if stream.get("codec_type") != codec_type:
            continue
        if codec_type == "video" and stream.get("disposition", {}).get("attached_pic"):
            continue
        return stream
    return None


def to_float(value: object) -> float | None:
    """ffprobe numbers come as strings and "N/A"; None when not a finite number."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def to_int(value: object) -> int | None:
    number = to_float(value)
    return int(number) if number is not None else None


def evaluate_fraction(value: object) -> float | None:
    """ "30000/1001" -> 29.97; "0/0" and garbage -> None."""
    try:
        fraction = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return round(float(fraction), 3) if fraction > 0 else None


def duration_seconds(info: dict, stream: dict | None = None) -> float | None:
    """The container duration, else the stream's (some WebM/MKV files only have one of them)."""
    for source in (info.get("format", {}), stream or {}):
        duration = to_float(source.get("duration"))
        if duration is not None and duration > 0:
            return duration
    return None


def extract_frame(src: Path, stream_index: int, at_seconds: float, out_png: Path, *, timeout: float) -> None:
    """Write one frame from `at_seconds` as PNG, with non-square pixels stretched to square.

    -ss before -i seeks in the demuxer (fast, from the nearest keyframe) and ffmpeg then
    decodes up to the exact time. PNG avoids compressing the frame twice.
    """
    run_tool(
        [
            FFMPEG,
            "-nostdin",
            "-hide_banner",
            "-v",
            "error",
            *INPUT_SAFETY_ARGS,
            "-ss",
            f"{at_seconds:.3f}",
            "-i",
            ffmpeg_input(src),
            "-map",
            f"0:{stream_index}",
            "-frames:v",
            "1",
            "-an",
            "-sn",
            "-dn",
            # Anamorphic video (sample aspect ratio != 1) would otherwise look squashed.
            "-vf",
            "scale=iw*sar:ih,setsar=1",
            "-f",
            "image2",
            "-c:v",
            "png",
            "-y",
            tool_path_arg(out_png),
        ],
        timeout=timeout,
        failure="ffmpeg could not extract a frame",
    )


def grab_video_frame(src: Path, workdir: Path, *, timeout: float, position: float = 0.10) -> Path:
    """A PNG of the frame at `position` (a fraction) of the duration; MediaError if there is none."""
    info = probe(src, timeout=timeout)
    stream = first_stream(info, "video")
    if stream is None:
        raise MediaError("No video stream found")
    duration = duration_seconds(info, stream) or 0.0
    out_png = workdir / "frame.png"
    # A seek can land past the last decodable frame (short or badly indexed files): retry at 0.
    for at_seconds in dict.fromkeys((duration * position, 0.0)):
        extract_frame(src, int(stream["index"]), at_seconds, out_png, timeout=timeout)
        if out_png.exists() and out_png.stat().st_size > 0:
            return out_png
    raise MediaError("ffmpeg produced no frame: the video stream has no decodable picture")
