"""Short preview clips: 10 s of H.264 video, 30 s of MP3 audio.

Both start a little into the asset (10 % of the duration), where there is usually more to
see or hear than in the first second. Every number in the returned dicts is measured on the
output with ffprobe, not copied from the settings, so the metadata says what was produced.
"""

from __future__ import annotations

from pathlib import Path

from .encoding import (
    FASTSTART,
    Deadline,
    VideoSource,
    ffmpeg_head,
    fit_even,
    fps_cap_filter,
    input_args,
    measure_output,
    mp3_sample_rate_args,
    output_path_arg,
    read_audio_stream,
    read_video,
    require_playable,
    run_ffmpeg,
    stereo_at_most,
)
from .writes import atomic_path

VIDEO_PREVIEW_SECONDS = 10.0
AUDIO_PREVIEW_SECONDS = 30.0
START_FRACTION = 0.10
# Audio shorter than this starts at 0: 10 % of a one-minute jingle is a needless cut.
AUDIO_OFFSET_MIN_DURATION = 60.0
MAX_PREVIEW_SIZE = (1280, 720)
VIDEO_BITRATE = "1000k"
# maxrate = target with a one-second buffer makes 1000 kbps a real ceiling: on grainy 640x360
# footage a 2 s buffer let a 10 s clip average 1080 kbps (1300 over 3 s); 1 s gives 1030 (1100).
VIDEO_MAXRATE = "1000k"
VIDEO_BUFSIZE = "1000k"
# veryfast: the preview is a throwaway derivative. "fast" took 1.46x the time
# (bench/video_preview.py, 1080p source, 2 cores); at a fixed 1000 kbps it buys a little
# picture quality, not a smaller file.
VIDEO_PRESET = "veryfast"
AAC_BITRATE = "128k"
MP3_BITRATE = "128k"


def clip_window(duration: float | None, clip_seconds: float, start_fraction: float) -> tuple[float, float]:
    """(start, length): from start_fraction of the duration, at most clip_seconds, never past the end.

    An unknown duration starts at 0 and lets ffmpeg stop at the end of the stream.
    """
    if not duration:
        return 0.0, clip_seconds
    start = duration * start_fraction
    return start, min(clip_seconds, duration - start)


def video_preview_command(src: Path, out: Path, source: VideoSource, start: float, length: float) -> list[str]:
    width, height = fit_even(source.width, source.height, *MAX_PREVIEW_SIZE)
    # setsar=1: the size above is already the display size, so pixels are square from here on.
    video_filter = ",".join([*fps_cap_filter(source.fps), f"scale={width}:{height}", "setsar=1", "format=yuv420p"])
    args = [*ffmpeg_head(), *input_args(src, seek=start, duration=length), "-map", f"0:{source.video_index}"]
    if source.has_audio:
        audio = source.audio_streams[0]
        args += ["-map", f"0:{audio['index']}", "-c:a", "aac", "-b:a", AAC_BITRATE, *stereo_at_most(audio)]
    args += ["-vf", video_filter, "-c:v", "libx264", "-preset", VIDEO_PRESET]
    args += ["-b:v", VIDEO_BITRATE, "-maxrate", VIDEO_MAXRATE, "-bufsize", VIDEO_BUFSIZE]
    # No tags, chapters or subtitles: a preview must not carry the original's GPS or camera tags.
    args += ["-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1", *FASTSTART, "-f", "mp4"]
    return [*args, output_path_arg(out)]


def make_video_preview(src: str | Path, out_path: str | Path, *, timeout: float = 600) -> dict:
    """A 10 s H.264/AAC MP4 from 10 % of the duration, fitted within 1280x720, never enlarged.

    Returns {"path": str, "duration": float, "width": int, "height": int, "video_codec": "h264",
             "audio_codec": "aac" | None, "bitrate": int (whole file, bits/s), "size_bytes": int},
    all measured on the output. A source without audio gives a preview without an audio track.
    Raises MediaError (no partial file under out_path) for anything that is not a playable video.
    """
    src, out_path = Path(src), Path(out_path)
    deadline = Deadline(timeout)
    source = read_video(src, deadline)
    start, length = clip_window(source.duration, VIDEO_PREVIEW_SECONDS, START_FRACTION)
    with atomic_path(out_path) as temp:
        run_ffmpeg(
            video_preview_command(src, temp, source, start, length), deadline, "ffmpeg could not make the preview"
        )
        measured = measure_output(temp, deadline)
        require_playable(measured, video=True)
    return {
        "path": str(out_path),
        "duration": measured["duration"],
        "width": measured["width"],
        "height": measured["height"],
        "video_codec": measured["video_codec"],
        "audio_codec": measured["audio_codec"],
        "bitrate": measured["bitrate"],
        "size_bytes": measured["size_bytes"],
    }


def audio_preview_start(duration: float | None) -> float:
    """0 for tracks up to a minute (or of unknown length), else 10 % in (past most intros)."""
    if not duration or duration <= AUDIO_OFFSET_MIN_DURATION:
        return 0.0
    return duration * START_FRACTION


def make_audio_preview(src: str | Path, out_path: str | Path, *, timeout: float = 300) -> dict:
    """30 s of constant-bit-rate 128 kbps MP3 (LAME), from 0 s, or from 10 % for tracks over 60 s.

    Returns {"path": str, "duration": float, "bitrate": int (bits/s), "codec": "mp3",
             "sample_rate": int, "size_bytes": int}, measured on the output. Cover art and
    tags are not copied. Raises MediaError (no partial file under out_path) when the file
    has no decodable audio.
    """
    src, out_path = Path(src), Path(out_path)
    deadline = Deadline(timeout)
    stream, duration = read_audio_stream(src, deadline)
    start = audio_preview_start(duration)
    length = AUDIO_PREVIEW_SECONDS if not duration else min(AUDIO_PREVIEW_SECONDS, duration - start)
    with atomic_path(out_path) as temp:
        args = [*ffmpeg_head(), *input_args(src, seek=start, duration=length), "-map", f"0:{stream['index']}"]
        # -b:a without -q:a is CBR in libmp3lame: every frame is 128 kbps, so sizes are predictable.
        args += ["-c:a", "libmp3lame", "-b:a", MP3_BITRATE, *mp3_sample_rate_args(stream), *stereo_at_most(stream)]
        args += ["-vn", "-sn", "-dn", "-map_metadata", "-1", "-f", "mp3", output_path_arg(temp)]
        run_ffmpeg(args, deadline, "ffmpeg could not make the audio preview")
        measured = measure_output(temp, deadline)
        require_playable(measured, video=False)
    return {
        "path": str(out_path),
        "duration": measured["duration"],
        "bitrate": measured["audio_bitrate"] or measured["bitrate"],
        "codec": measured["audio_codec"],
        "sample_rate": measured["sample_rate"],
        "size_bytes": measured["size_bytes"],
    }
