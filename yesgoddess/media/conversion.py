"""Format conversion: image variants, 720p/480p H.264 renditions, MP3 and AAC audio.

Video and audio each take one ffmpeg run: the source is decoded once and every output is
encoded from that one decode (split filter for video, several outputs for audio), instead
of decoding the source again per rendition. All outputs of a run are published together
(staging.staged_outputs), with fixed names, so a re-run overwrites rather than adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .encoding import (
    FASTSTART,
    Deadline,
    VideoSource,
    even,
    ffmpeg_head,
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
from .image_variants import convert_image
from .staging import staged_outputs

__all__ = ["AUDIO_VARIANTS", "VIDEO_RENDITIONS", "convert_audio", "convert_image", "convert_video"]


@dataclass(frozen=True)
class Rendition:
    name: str
    short_side: int
    maxrate_kbps: int


# Sized by the short side, so a portrait 1080x1920 phone video gets a 720x1280 "720p" (as
# YouTube and players label it), not a 406x720 sliver; for landscape video it is the height.
VIDEO_RENDITIONS = (Rendition("720p", 720, 3000), Rendition("480p", 480, 1500))
# Constant quality with a bit-rate ceiling: easy footage stays small, hard footage is capped
# so the file still streams at a predictable rate.
VIDEO_CRF = "21"
VIDEO_PRESET = "veryfast"
RENDITION_AUDIO_BITRATE = "128k"


@dataclass(frozen=True)
class AudioVariant:
    name: str
    filename: str
    content_type: str
    codec_args: tuple[str, ...]
    muxer: str


AUDIO_VARIANTS = (
    # -b:a without -q:a is constant bit rate in libmp3lame.
    AudioVariant("mp3_320", "mp3_320.mp3", "audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "320k"), "mp3"),
    AudioVariant("mp3_192", "mp3_192.mp3", "audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "192k"), "mp3"),
    AudioVariant("mp3_128", "mp3_128.mp3", "audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "128k"), "mp3"),
    # AAC in an MP4 (.m4a) container: raw ADTS .aac has no duration index and poor seeking.
    AudioVariant("aac", "aac.m4a", "audio/mp4", ("-c:a", "aac", "-b:a", "192k"), "mp4"),
)


def rendition_size(width: int, height: int, short_side: int) -> tuple[int, int] | None:
    """The rendition's size with the short side = short_side and even sides; None if that would enlarge."""
    if min(width, height) < short_side:
        return None
    factor = short_side / min(width, height)
    return even(round(width * factor)), even(round(height * factor))


def _video_command(src: Path, source: VideoSource, jobs: list[tuple[Rendition, tuple[int, int], Path]]) -> list[str]:
    labels = [f"v{number}" for number in range(len(jobs))]
    split = ",".join([*fps_cap_filter(source.fps), f"split={len(jobs)}"])
    graph = [f"[0:{source.video_index}]{split}" + "".join(f"[s{label}]" for label in labels)]
    for label, (_rendition, (width, height), _temp) in zip(labels, jobs, strict=True):
        graph.append(f"[s{label}]scale={width}:{height},setsar=1,format=yuv420p[{label}]")
    args = [*ffmpeg_head(), *input_args(src), "-filter_complex", ";".join(graph)]
    for label, (rendition, _size, temp) in zip(labels, jobs, strict=True):
        args += ["-map", f"[{label}]", "-c:v", "libx264", "-preset", VIDEO_PRESET, "-crf", VIDEO_CRF]
        args += ["-maxrate", f"{rendition.maxrate_kbps}k", "-bufsize", f"{2 * rendition.maxrate_kbps}k"]
        if source.has_audio:
            audio = source.audio_streams[0]
            args += ["-map", f"0:{audio['index']}", "-c:a", "aac", "-b:a", RENDITION_AUDIO_BITRATE]
            args += stereo_at_most(audio)
        # No tags: a video's global metadata can hold the GPS position it was filmed at.
        args += ["-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1", *FASTSTART, "-f", "mp4"]
        args.append(output_path_arg(temp))
    return args


def convert_video(src: str | Path, out_dir: str | Path, *, timeout: float = 1800) -> list[dict]:
    """Write 720p.mp4 and 480p.mp4 (H.264, AAC 128k when the source has audio) into out_dir.

    A rendition whose short side would exceed the source's is skipped (never enlarged), so a
    source smaller than 480p gives an empty list. Frame rate is capped at 30 fps.
    Each entry: {"path": str, "variant": "720p" | "480p", "content_type": "video/mp4",
                 "width": int, "height": int, "bitrate": int (whole file, bits/s),
                 "duration": float, "size_bytes": int}, measured on the output.
    Raises MediaError (and leaves no new file in out_dir) for anything that is not a playable video.
    """
    src, out_dir = Path(src), Path(out_dir)
    deadline = Deadline(timeout)
    source = read_video(src, deadline)
    planned = [(r, rendition_size(source.width, source.height, r.short_side)) for r in VIDEO_RENDITIONS]
    planned = [(rendition, size) for rendition, size in planned if size is not None]
    if not planned:
        return []
    finals = [out_dir / f"{rendition.name}.mp4" for rendition, _size in planned]
    with staged_outputs(finals) as temps:
        jobs = [(rendition, size, temp) for (rendition, size), temp in zip(planned, temps, strict=True)]
        run_ffmpeg(_video_command(src, source, jobs), deadline, "ffmpeg could not convert the video")
        measured = [measure_output(temp, deadline) for temp in temps]
        for entry in measured:
            require_playable(entry, video=True)
    return [
        {
            "path": str(final),
            "variant": rendition.name,
            "content_type": "video/mp4",
            "width": entry["width"],
            "height": entry["height"],
            "bitrate": entry["bitrate"],
            "duration": entry["duration"],
            "size_bytes": entry["size_bytes"],
        }
        for (rendition, _size), final, entry in zip(planned, finals, measured, strict=True)
    ]


def convert_audio(src: str | Path, out_dir: str | Path, *, timeout: float = 900) -> list[dict]:
    """Write mp3_320.mp3, mp3_192.mp3, mp3_128.mp3 (CBR LAME) and aac.m4a (AAC ~192k) into out_dir.

    Tags (title, artist...) are kept; cover art is not. More than two channels are downmixed to
    stereo; sources below 32 kHz are resampled to 44.1 kHz for MP3 so 320 kbps is reachable.
    Each entry: {"path": str, "variant": "mp3_320" | "mp3_192" | "mp3_128" | "aac",
                 "content_type": "audio/mpeg" | "audio/mp4", "bitrate": int (audio stream, bits/s),
                 "duration": float, "size_bytes": int}, measured on the output.
    Raises MediaError (and leaves no new file in out_dir) when the file has no decodable audio.
    """
    src, out_dir = Path(src), Path(out_dir)
    deadline = Deadline(timeout)
    stream, _duration = read_audio_stream(src, deadline)
    finals = [out_dir / variant.filename for variant in AUDIO_VARIANTS]
    with staged_outputs(finals) as temps:
        args = [*ffmpeg_head(), *input_args(src)]
        for variant, temp in zip(AUDIO_VARIANTS, temps, strict=True):
            args += ["-map", f"0:{stream['index']}", *variant.codec_args, *stereo_at_most(stream)]
            if variant.muxer == "mp3":
                args += mp3_sample_rate_args(stream)
            else:
                args += FASTSTART
            args += ["-vn", "-sn", "-dn", "-f", variant.muxer, output_path_arg(temp)]
        run_ffmpeg(args, deadline, "ffmpeg could not convert the audio")
        measured = [measure_output(temp, deadline) for temp in temps]
        for entry in measured:
            require_playable(entry, video=False)
    return [
        {
            "path": str(final),
            "variant": variant.name,
            "content_type": variant.content_type,
            "bitrate": entry["audio_bitrate"] or entry["bitrate"],
            "duration": entry["duration"],
            "size_bytes": entry["size_bytes"],
        }
        for variant, final, entry in zip(AUDIO_VARIANTS, finals, measured, strict=True)
    ]
