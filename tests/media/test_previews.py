"""Video and audio previews, checked with ffprobe and decoded frames rather than the returned dict."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from yesgoddess.media.errors import MachineFault, MediaError
from yesgoddess.media.previews import clip_window, make_audio_preview, make_video_preview

from . import samples
from .helpers import files_in, mean_rgb


def top_level_boxes(path: Path) -> list[str]:
    """The MP4 top-level box types in file order (to see where "moov" is)."""
    boxes, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


def whole_frame_colour(image: Image.Image) -> tuple[float, float, float]:
    return mean_rgb(image, (0, 0, image.width, image.height))


def mean_volume_db(path: Path, seconds: float) -> float:
    """ffmpeg's volumedetect mean level of the first `seconds` of a file."""
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-t", str(seconds), "-i", str(path), "-af", "volumedetect", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    line = next(line for line in result.stderr.splitlines() if "mean_volume" in line)
    return float(line.split("mean_volume:")[1].split()[0])


# --- video ------------------------------------------------------------------------------------------


def test_video_preview_is_ten_seconds_from_ten_percent(tmp_path: Path) -> None:
    # 14 s: black until 1.2 s, white until 11.6 s, then red. A clip from 1.4 s lasting 10 s
    # (to 11.4 s) is white from its first frame to its last.
    src = samples.make_marker_video(tmp_path / "marker.mp4", seconds=14, segments=[(1.2, "white"), (11.6, "red")])
    result = make_video_preview(src, tmp_path / "preview.mp4")
    assert result["duration"] == pytest.approx(10.0, abs=0.1)
    for frame in (samples.frame_at(tmp_path / "preview.mp4", 0), samples.frame_at(result["path"], from_end=0.1)):
        assert all(channel > 200 for channel in whole_frame_colour(frame)), "expected only the white segment"


def test_video_preview_codecs_size_and_audio_measured_on_output(clip_with_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview.mp4"
    result = make_video_preview(clip_with_audio, out)
    (video,) = samples.streams_of(out, "video")
    (audio,) = samples.streams_of(out, "audio")
    assert (video["codec_name"], video["width"], video["height"], video["pix_fmt"]) == ("h264", 320, 240, "yuv420p")
    assert audio["codec_name"] == "aac"
    assert result == {
        "path": str(out),
        "duration": pytest.approx(1.8, abs=0.1),  # a 2 s source: from 0.2 s to the end
        "width": 320,
        "height": 240,
        "video_codec": "h264",
        "audio_codec": "aac",
        "bitrate": result["bitrate"],
        "size_bytes": out.stat().st_size,
    }
    assert int(audio["bit_rate"]) == pytest.approx(128_000, rel=0.2)
    assert top_level_boxes(out).index("moov") < top_level_boxes(out).index("mdat"), "faststart: moov first"


def test_video_without_audio_gives_preview_without_audio_track(clip_without_audio: Path, tmp_path: Path) -> None:
    result = make_video_preview(clip_without_audio, tmp_path / "preview.mp4")
    assert result["audio_codec"] is None
    assert samples.streams_of(tmp_path / "preview.mp4", "audio") == []


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1920x1080", (1280, 720)),  # scaled down to the box
        ("720x1280", (404, 720)),  # portrait: height-bound, width rounded down to even
        ("333x201", (332, 200)),  # smaller than the box: never enlarged, only made even
    ],
)
def test_video_preview_fits_1280x720_without_upscaling(tmp_path: Path, size: str, expected: tuple[int, int]) -> None:
    # FFV1 (lossless) because x264 in 4:2:0 cannot store the odd 333x201 source.
    src = tmp_path / "src.mkv"
    samples.run_ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=0.5", "-c:v", "ffv1", str(src))
    result = make_video_preview(src, tmp_path / "preview.mp4")
    assert (result["width"], result["height"]) == expected
    (video,) = samples.streams_of(tmp_path / "preview.mp4", "video")
    assert (video["width"], video["height"]) == expected


def test_video_preview_bitrate_is_about_1000k_on_hard_content(tmp_path: Path) -> None:
    # Grain everywhere: the encoder needs more than 1000 kbps, so the cap is what decides.
    src = samples.make_clip(tmp_path / "noisy.mp4", size="640x360", seconds=3, noisy=True)
    make_video_preview(src, tmp_path / "preview.mp4")
    (video,) = samples.streams_of(tmp_path / "preview.mp4", "video")
    assert int(video["bit_rate"]) == pytest.approx(1_000_000, rel=0.2)


def test_frame_rate_above_30_is_capped(tmp_path: Path) -> None:
    src = samples.make_clip(tmp_path / "60fps.mp4", size="160x120", seconds=1, rate=60)
    make_video_preview(src, tmp_path / "preview.mp4")
    (video,) = samples.streams_of(tmp_path / "preview.mp4", "video")
    assert video["avg_frame_rate"] == "30/1"


def test_clip_window() -> None:
    assert clip_window(100.0, 10, 0.1) == (10.0, 10)
    assert clip_window(5.0, 10, 0.1) == (0.5, 4.5)
    assert clip_window(None, 10, 0.1) == (0.0, 10)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mp4", b"", "The file is empty"),
        ("junk.mp4", samples.junk_bytes(4096), "ffprobe could not read the file"),
    ],
)
def test_bad_video_is_refused_without_leaving_files(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    src = tmp_path / "in" / name
    src.parent.mkdir()
    src.write_bytes(content)
    with pytest.raises(MediaError, match=message):
        make_video_preview(src, tmp_path / "out" / "preview.mp4")
    assert files_in(tmp_path / "out") == []


def test_video_with_no_frames_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "no-frames.mp4"
    samples.run_ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1", "-frames:v", "0", "-c:v", "libx264", str(src))
    with pytest.raises(MediaError, match="No video stream found"):
        make_video_preview(src, tmp_path / "out" / "preview.mp4")
    assert files_in(tmp_path / "out") == []


def test_audio_file_is_not_a_video(wav_file: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="No video stream found"):
        make_video_preview(wav_file, tmp_path / "preview.mp4")


def test_timeout_leaves_neither_final_nor_temporary_file(mp4_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "preview.mp4"
    out.parent.mkdir()
    with pytest.raises(MachineFault, match="timed out"):
        make_video_preview(mp4_file, out, timeout=0.3)
    assert files_in(out.parent) == []


def test_failed_rerun_keeps_the_previous_preview(clip_without_audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "preview.mp4"
    make_video_preview(clip_without_audio, out)
    before = out.read_bytes()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(samples.junk_bytes(2048))
    with pytest.raises(MediaError):
        make_video_preview(junk, out)
    assert out.read_bytes() == before
    assert files_in(out.parent) == ["preview.mp4"]


# --- audio ------------------------------------------------------------------------------------------


def test_audio_preview_of_short_untagged_file_is_whole_file_as_cbr_mp3(wav_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview.mp3"
    result = make_audio_preview(wav_file, out)
    (audio,) = samples.streams_of(out, "audio")
    assert (audio["codec_name"], int(audio["bit_rate"]), int(audio["sample_rate"])) == ("mp3", 128_000, 44100)
    assert result == {
        "path": str(out),
        "duration": pytest.approx(2.0, abs=0.1),
        "bitrate": 128_000,
        "codec": "mp3",
        "sample_rate": 44100,
        "size_bytes": out.stat().st_size,
    }
    # CBR: the size is the bit rate times the duration (plus a small Xing header).
    assert out.stat().st_size == pytest.approx(128_000 / 8 * result["duration"], rel=0.05)


def test_long_audio_preview_is_thirty_seconds_from_ten_percent(tmp_path: Path) -> None:
    # 70 s, silent until 6.5 s: a preview from 7 s (10 %) starts with the tone, one from 0 s would not.
    src = samples.make_delayed_tone(tmp_path / "long.wav", seconds=70, tone_from=6.5)
    out = tmp_path / "preview.mp3"
    result = make_audio_preview(src, out)
    assert result["duration"] == pytest.approx(30.0, abs=0.1)
    assert mean_volume_db(out, 0.5) > -20


def test_low_sample_rate_audio_is_resampled_for_128k(tmp_path: Path) -> None:
    src = samples.make_audio(tmp_path / "8k.wav", seconds=1)
    samples.run_ffmpeg("-i", str(src), "-ar", "8000", str(tmp_path / "8k-real.wav"))
    result = make_audio_preview(tmp_path / "8k-real.wav", tmp_path / "preview.mp3")
    assert (result["bitrate"], result["sample_rate"]) == (128_000, 44100)


def test_audio_preview_of_tagged_mp3_drops_tags(mp3_file: Path, tmp_path: Path) -> None:
    make_audio_preview(mp3_file, tmp_path / "preview.mp3")
    assert "title" not in samples.ffprobe_json(tmp_path / "preview.mp3")["format"].get("tags", {})


def test_video_without_audio_has_no_audio_preview(clip_without_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="No audio stream found"):
        make_audio_preview(clip_without_audio, tmp_path / "out" / "preview.mp3")
    assert files_in(tmp_path / "out") == []
