"""Every kind of bad input ends in a MediaError with a readable reason and no partial output."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from yesgoddess.media import writes
from yesgoddess.media.errors import MachineFault, MediaError
from yesgoddess.media.metadata import extract_metadata
from yesgoddess.media.thumbnails import make_thumbnails, render_waveform
from yesgoddess.media.tools import STDERR_TAIL_CHARS, run_tool

from . import samples
from .helpers import files_in

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def thumbnail_error(src: Path, asset_type: str, mime: str, out: Path, **kwargs) -> str:
    """Run make_thumbnails expecting failure; returns the message after checking out_dir stayed empty."""
    with pytest.raises(MediaError) as caught:
        make_thumbnails(src, asset_type, mime, out, **kwargs)
    assert files_in(out) == [], "a failed run must leave nothing in out_dir"
    return str(caught.value)


@pytest.mark.parametrize(
    ("asset_type", "mime", "name"),
    [
        ("IMAGE", "image/jpeg", "empty.jpg"),
        ("VIDEO", "video/mp4", "empty.mp4"),
        ("AUDIO", "audio/mpeg", "empty.mp3"),
        ("DOCUMENT", "application/pdf", "empty.pdf"),
        ("DOCUMENT", DOCX, "empty.docx"),
        ("OTHER", "application/zip", "empty.zip"),
    ],
)
def test_zero_byte_file_is_refused_everywhere(tmp_path: Path, asset_type: str, mime: str, name: str) -> None:
    src = tmp_path / name
    src.write_bytes(b"")
    assert thumbnail_error(src, asset_type, mime, tmp_path / "out") == "The file is empty"
    with pytest.raises(MediaError, match=r"^The file is empty$"):
        extract_metadata(src, asset_type, mime)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    message = thumbnail_error(tmp_path / "nope.jpg", "IMAGE", "image/jpeg", tmp_path / "out")
    assert message.startswith("The file does not exist")


def test_truncated_jpeg_is_refused_not_half_rendered(tmp_path: Path) -> None:
    whole = samples.make_jpeg(tmp_path / "whole.jpg", (1200, 900))
    src = tmp_path / "cut.jpg"
    src.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    message = thumbnail_error(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert message.startswith("The image is truncated or corrupt")


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    samples.make_gradient_rgb((600, 600)).save(whole)
    src = tmp_path / "cut.png"
    src.write_bytes(whole.read_bytes()[:-4000])
    assert thumbnail_error(src, "IMAGE", "image/png", tmp_path / "out").startswith("The image is truncated or corrupt")


def test_random_bytes_named_png_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "picture.png"
    src.write_bytes(samples.junk_bytes(8192))
    message = thumbnail_error(src, "IMAGE", "image/png", tmp_path / "out")
    assert message == "The file is not an image format that can be read"
    with pytest.raises(MediaError, match="not an image format"):
        extract_metadata(src, "IMAGE", "image/png")


def test_png_declaring_huge_dimensions_hits_the_bomb_limit(tmp_path: Path) -> None:
    src = tmp_path / "bomb.png"
    src.write_bytes(samples.png_declaring_size(50_000, 50_000))
    limit = Image.MAX_IMAGE_PIXELS
    message = thumbnail_error(src, "IMAGE", "image/png", tmp_path / "out")
    assert message == f"The image is larger than the decompression-bomb limit ({limit} pixels)"
    with pytest.raises(MediaError, match="decompression-bomb"):
        extract_metadata(src, "IMAGE", "image/png")
    assert limit == Image.MAX_IMAGE_PIXELS  # the guard itself is never loosened


def test_image_just_over_the_limit_is_refused_not_only_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Between 1x and 2x the limit Pillow only warns; that must still be a refusal.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    src = tmp_path / "big.png"
    Image.new("RGB", (120, 100)).save(src)  # 12,000 pixels
    message = thumbnail_error(src, "IMAGE", "image/png", tmp_path / "out")
    assert message == "The image is larger than the decompression-bomb limit (10000 pixels)"


def test_corrupt_pdf_is_refused_with_poppler_reason(tmp_path: Path) -> None:
    src = tmp_path / "broken.pdf"
    src.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n%%EOF\n")
    message = thumbnail_error(src, "DOCUMENT", "application/pdf", tmp_path / "out")
    assert message.startswith("poppler could not open the PDF: ")
    assert "xref" in message or "trailer" in message  # poppler's own words are kept
    with pytest.raises(MediaError, match="poppler could not open the PDF"):
        extract_metadata(src, "DOCUMENT", "application/pdf")


def test_video_that_ffprobe_rejects_is_refused_with_its_stderr(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    src.write_bytes(samples.junk_bytes(20_000))
    message = thumbnail_error(src, "VIDEO", "video/mp4", tmp_path / "out")
    assert message.startswith("ffprobe could not read the file: ")
    assert "Invalid data found when processing input" in message
    with pytest.raises(MediaError, match="ffprobe could not read the file"):
        extract_metadata(src, "VIDEO", "video/mp4")


def test_video_cut_before_its_index_is_refused(mp4_file: Path, tmp_path: Path) -> None:
    src = tmp_path / "cut.mp4"
    src.write_bytes(mp4_file.read_bytes()[:2000])
    assert thumbnail_error(src, "VIDEO", "video/mp4", tmp_path / "out").startswith("ffprobe could not read the file")


def test_video_without_video_stream_is_refused(mp3_file: Path, tmp_path: Path) -> None:
    assert thumbnail_error(mp3_file, "VIDEO", "video/mp4", tmp_path / "out") == "No video stream found"


def test_video_with_zero_frames_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "noframes.mp4"
    samples.run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-frames:v", "0", "-c:v", "libx264", str(src),
    )  # fmt: skip
    with pytest.raises(MediaError):
        make_thumbnails(src, "VIDEO", "video/mp4", tmp_path / "out")
    assert files_in(tmp_path / "out") == []


def test_audio_that_ffmpeg_cannot_decode_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    src = work / "song.mp3"
    src.write_bytes(samples.junk_bytes(10_000))
    with pytest.raises(MediaError):
        render_waveform(src, work / "wave.png")
    assert files_in(work) == ["song.mp3"]
    thumbnail_error(src, "AUDIO", "audio/mpeg", tmp_path / "out")


def test_non_zip_declared_as_docx_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "fake.docx"
    src.write_text("not a zip")
    with pytest.raises(MediaError, match="not a readable ZIP package"):
        extract_metadata(src, "DOCUMENT", DOCX)


def test_tool_timeout_is_a_machine_fault_not_a_bad_file(mp4_file: Path, tmp_path: Path) -> None:
    # A busy machine must not reject a valid upload: a timeout is retried, never a MediaError.
    with pytest.raises(MachineFault, match=r"timed out after 0\.001 s") as caught:
        make_thumbnails(mp4_file, "VIDEO", "video/mp4", tmp_path / "out", timeout=0.001)
    assert not isinstance(caught.value, MediaError)
    assert files_in(tmp_path / "out") == []


def test_tool_killed_from_outside_is_a_machine_fault_but_a_crash_is_the_files() -> None:
    with pytest.raises(MachineFault, match="killed by SIGKILL"):
        run_tool(["python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout=30, failure="x")
    with pytest.raises(MediaError):  # a decoder dying on a hostile file: the file is refused
        run_tool(["python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], timeout=30, failure="x")


def test_tool_stderr_is_kept_as_a_short_tail() -> None:
    noisy = "import sys; sys.stderr.write('x' * 5000 + 'THE END'); sys.exit(3)"
    with pytest.raises(MediaError) as caught:
        run_tool(["python3", "-c", noisy], timeout=30, failure="the tool failed")
    message = str(caught.value)
    assert message.startswith("the tool failed: ") and message.endswith("THE END")
    assert len(message) == len("the tool failed: ") + STDERR_TAIL_CHARS


def test_missing_tool_is_reported_by_name_as_a_machine_fault_not_a_bad_file() -> None:
    with pytest.raises(MachineFault, match="no-such-media-tool is not installed") as caught:
        run_tool(["no-such-media-tool"], timeout=5, failure="x")
    assert not isinstance(caught.value, MediaError)  # the upload must not be rejected for it


def test_failure_while_writing_leaves_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = samples.make_jpeg(tmp_path / "a.jpg", (1200, 800))
    calls = []

    def failing_save(image: Image.Image, path: Path) -> None:
        calls.append(path)
        path.write_bytes(b"half a jpeg")
        raise OSError("disk full")

    monkeypatch.setattr(writes, "save_jpeg", failing_save)
    with pytest.raises(OSError, match="disk full"):
        make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert calls and files_in(tmp_path / "out") == []


def test_failed_rerun_keeps_previous_thumbnails_intact(tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = samples.make_jpeg(tmp_path / "good.jpg", (1000, 1000))
    make_thumbnails(good, "IMAGE", "image/jpeg", out)
    before = {name: (out / name).read_bytes() for name in files_in(out)}
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:500])
    with pytest.raises(MediaError):
        make_thumbnails(bad, "IMAGE", "image/jpeg", out)
    assert {name: (out / name).read_bytes() for name in files_in(out)} == before


def test_playlist_posing_as_video_cannot_reach_the_network(tmp_path: Path) -> None:
    # An HLS playlist renamed .mp4 would make an unrestricted ffmpeg fetch (or read) its segments.
    src = tmp_path / "clip.mp4"
    src.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/seg.ts\n#EXT-X-ENDLIST\n")
    message = thumbnail_error(src, "VIDEO", "video/mp4", tmp_path / "out")
    assert "not on whitelist" in message
