"""Shared pieces of the ffmpeg encodes (previews, renditions, video watermarking).

What the source looks like (display size, frame rate, duration, audio), sizes that never
enlarge and stay even (H.264 in 4:2:0 needs even dimensions), one time budget across the
several tool calls of a job, and a description of an output measured with ffprobe.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .av import FFMPEG, INPUT_SAFETY_ARGS, duration_seconds, evaluate_fraction, ffmpeg_input, first_stream, probe
from .av import to_int as _to_int
from .errors import MachineFault, MediaError
from .tools import run_tool, tool_path_arg

# Previews and renditions never go above 30 frames per second: at these bit rates, 60 fps
# would halve the bits per frame for motion few viewers of a preview would notice.
MAX_FPS = 30.0
FASTSTART = ["-movflags", "+faststart"]
# LAME's MPEG-2/2.5 modes (below 32 kHz) cap the bit rate at 160/64 kbps; at 44.1 kHz every
# bit rate up to 320 kbps is available, so low-rate sources are resampled for MP3.
MP3_MIN_SAMPLE_RATE = 32000
MP3_FALLBACK_SAMPLE_RATE = "44100"


class Deadline:
    """One time budget for all the tool calls of a job, so `timeout` bounds the whole call."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise MediaError("The timeout must be a positive number of seconds")
        self.seconds = seconds
        self._ends_at = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self._ends_at - time.monotonic()
        if left <= 0:
            # Out of time is the machine's fault (a busy machine), never the file's.
            raise MachineFault(f"Processing timed out after {self.seconds:g} s")
        return left


@dataclass(frozen=True)
class VideoSource:
    video_index: int
    width: int  # as displayed: after rotation metadata and with square pixels
    height: int
    fps: float | None
    duration: float | None
    audio_streams: tuple[dict, ...]

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_streams)


def _sample_aspect_ratio(stream: dict) -> Fraction:
    text = str(stream.get("sample_aspect_ratio") or "1:1").replace(":", "/")
    try:
        ratio = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return Fraction(1)
    return ratio if ratio > 0 else Fraction(1)  # "0:1" means unknown


def _rotation_degrees(stream: dict) -> int:
    """Rotation from the display matrix (newer ffprobe) or the legacy "rotate" tag."""
    for side_data in stream.get("side_data_list", []) or []:
        rotation = _to_int(side_data.get("rotation"))
        if rotation is not None:
            return rotation % 360
    return (_to_int(stream.get("tags", {}).get("rotate")) or 0) % 360


def display_size(stream: dict) -> tuple[int, int]:
    """The picture size a player shows: non-square pixels stretched, 90/270 rotations swapped.

    ffmpeg applies the rotation itself while decoding (autorotate), so filters see this size
    once the sample aspect ratio is squared.
    """
    width, height = _to_int(stream.get("width")) or 0, _to_int(stream.get("height")) or 0
    if width <= 0 or height <= 0:
        raise MediaError("The video stream has no picture size")
    width = max(1, round(width * _sample_aspect_ratio(stream)))
    if _rotation_degrees(stream) in (90, 270):
        width, height = height, width
    return width, height


def even(number: float) -> int:
    """Round down to an even number, at least 2."""
    return max(2, int(number) - int(number) % 2)


def fit_even(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """Fit within max_width x max_height keeping the aspect ratio, never enlarged, even sides."""
    factor = min(1.0, max_width / width, max_height / height)
    return even(round(width * factor)), even(round(height * factor))


def read_video(src: Path, deadline: Deadline) -> VideoSource:
    """Probe a video; MediaError when there is no (non-cover-art) video stream."""
    info = probe(src, timeout=deadline.remaining())
    stream = first_stream(info, "video")
    if stream is None:
        raise MediaError("No video stream found")
    width, height = display_size(stream)
    return VideoSource(
        video_index=int(stream["index"]),
        width=width,
        height=height,
        fps=evaluate_fraction(stream.get("avg_frame_rate")) or evaluate_fraction(stream.get("r_frame_rate")),
        duration=duration_seconds(info, stream),
        audio_streams=tuple(s for s in info.get("streams", []) if s.get("codec_type") == "audio"),
    )


def read_audio_stream(src: Path, deadline: Deadline) -> tuple[dict, float | None]:
    """The first audio stream and the duration; MediaError when the file has no audio."""
    info = probe(src, timeout=deadline.remaining())
    stream = first_stream(info, "audio")
    if stream is None:
        raise MediaError("No audio stream found")
    return stream, duration_seconds(info, stream)


def fps_cap_filter(fps: float | None) -> list[str]:
    """["fps=30"] for sources above 30 fps, [] otherwise (never invent frames)."""
    return [f"fps={MAX_FPS:g}"] if fps is not None and fps > MAX_FPS + 0.5 else []


def stereo_at_most(stream: dict) -> list[str]:
    """Downmix more than two channels to stereo; mono stays mono."""
    channels = _to_int(stream.get("channels")) or 0
    return ["-ac", "2"] if channels > 2 else []


def mp3_sample_rate_args(stream: dict) -> list[str]:
    rate = _to_int(stream.get("sample_rate")) or 0
    return ["-ar", MP3_FALLBACK_SAMPLE_RATE] if 0 < rate < MP3_MIN_SAMPLE_RATE else []


def ffmpeg_head() -> list[str]:
    return [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y"]


def input_args(path: Path, *, seek: float | None = None, duration: float | None = None) -> list[str]:
    """One input, file protocol only; -ss/-t before -i seek in the demuxer (fast, and exact when re-encoding)."""
    args = list(INPUT_SAFETY_ARGS)
    if seek:
        args += ["-ss", f"{seek:.3f}"]
    if duration is not None:
        args += ["-t", f"{duration:.3f}"]
    return [*args, "-i", ffmpeg_input(path)]


def output_path_arg(path: Path) -> str:
    # Absolute: a name starting with "-" can never be read as an option.
    return tool_path_arg(path)


def run_ffmpeg(args: list[str], deadline: Deadline, failure: str) -> None:
    run_tool(args, timeout=deadline.remaining(), failure=failure)


def measure_output(path: Path, deadline: Deadline) -> dict:
    """What an encoded file really contains, from ffprobe (not what was asked for).

    Keys: duration, bitrate (whole file, bits/s), video_codec, width, height, audio_codec,
    audio_bitrate, sample_rate, size_bytes. Absent streams give None.
    """
    info = probe(path, timeout=deadline.remaining())
    video = first_stream(info, "video")
    audio = first_stream(info, "audio")
    duration = duration_seconds(info, video or audio)
    size = path.stat().st_size
    bitrate = _to_int(info.get("format", {}).get("bit_rate"))
    if bitrate is None and duration:
        bitrate = round(size * 8 / duration)
    return {
        "duration": round(duration, 3) if duration is not None else None,
        "bitrate": bitrate,
        "video_codec": video.get("codec_name") if video else None,
        "width": _to_int(video.get("width")) if video else None,
        "height": _to_int(video.get("height")) if video else None,
        "audio_codec": audio.get("codec_name") if audio else None,
        "audio_bitrate": _to_int(audio.get("bit_rate")) if audio else None,
        "sample_rate": _to_int(audio.get("sample_rate")) if audio else None,
        "size_bytes": size,
    }


def require_playable(measured: dict, *, video: bool) -> None:
    """An encode that "succeeded" but holds no picture or no time is a failure, not an output."""
    if video and measured["video_codec"] is None:
        raise MediaError("ffmpeg produced no video: the source has no decodable frames")
    if not video and measured["audio_codec"] is None:
        raise MediaError("ffmpeg produced no audio: the source has no decodable samples")
    if not measured["duration"] or not math.isfinite(measured["duration"]):
        raise MediaError("ffmpeg produced an empty file: the source has no decodable content")
