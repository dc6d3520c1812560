"""Visible watermarks, forensic ids in metadata, and the forensic id itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from yesgoddess.media.errors import MachineFault, MediaError
from yesgoddess.media.forensic import FORENSIC_ID_PATTERN, forensic_id, verify_forensic_id
from yesgoddess.media.watermark import POSITIONS, read_forensic_id, watermark_image, watermark_video

from . import samples
from .helpers import files_in

KEY = b"test-forensic-key"
ISSUED = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
QUADRANTS = {
    "top-left": (0, 0, 200, 150),
    "top-right": (200, 0, 400, 150),
    "bottom-left": (0, 150, 200, 300),
    "bottom-right": (200, 150, 400, 300),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_box(original: Path, marked: Path) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels the watermark changed."""
    with Image.open(original) as before, Image.open(marked) as after:
        return ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox()


def inside(box: tuple[int, int, int, int], area: tuple[int, int, int, int]) -> bool:
    return area[0] <= box[0] and area[1] <= box[1] and box[2] <= area[2] and box[3] <= area[3]


# --- forensic ids -----------------------------------------------------------------------------------


def test_forensic_id_is_short_deterministic_and_keyed() -> None:
    fid = forensic_id(7, 42, ISSUED, KEY)
    assert FORENSIC_ID_PATTERN.match(fid)
    assert fid == forensic_id(7, 42, ISSUED, KEY)
    others = {
        forensic_id(8, 42, ISSUED, KEY),
        forensic_id(7, 43, ISSUED, KEY),
        forensic_id(7, 42, ISSUED + timedelta(milliseconds=1), KEY),
        forensic_id(7, 42, ISSUED, b"another key"),
        forensic_id(74, 2, ISSUED, KEY),  # "7"+"42" must not equal "74"+"2"
    }
    assert fid not in others and len(others) == 5


def test_forensic_id_verifies_only_its_own_inputs() -> None:
    fid = forensic_id("user-7", "asset-42", ISSUED, KEY)
    assert verify_forensic_id(fid, "user-7", "asset-42", ISSUED, KEY)
    assert verify_forensic_id(fid.upper(), "user-7", "asset-42", ISSUED, KEY)
    # The same instant in another zone, and sub-millisecond differences, are the same issue time.
    same_instant = ISSUED.astimezone(timezone(timedelta(hours=2))).replace(microsecond=123999)
    assert verify_forensic_id(fid, "user-7", "asset-42", same_instant, KEY)
    assert not verify_forensic_id(fid, "user-8", "asset-42", ISSUED, KEY)
    assert not verify_forensic_id(fid, "user-7", "asset-42", ISSUED, b"wrong")
    assert not verify_forensic_id("", "user-7", "asset-42", ISSUED, KEY)


def test_forensic_id_refuses_naive_times_and_empty_keys() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        forensic_id(1, 2, datetime(2025, 1, 1), KEY)
    with pytest.raises(ValueError, match="key"):
        forensic_id(1, 2, ISSUED, b"")


# --- images -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [p for p in POSITIONS if p in QUADRANTS])
def test_text_mark_lands_in_its_corner(tmp_path: Path, position: str) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    result = watermark_image(src, tmp_path / "out.png", text="© YesGoddess", position=position, opacity=1.0)
    box = changed_box(src, tmp_path / "out.png")
    assert box is not None and inside(box, QUADRANTS[position]), box
    assert result == {"path": str(tmp_path / "out.png"), "width": 400, "height": 300, "position": position,
                      "forensic_id": None}  # fmt: skip


def test_centre_and_tiled_positions(tmp_path: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    watermark_image(src, tmp_path / "center.png", text="© YesGoddess", position="center", opacity=1.0)
    left, top, right, bottom = changed_box(src, tmp_path / "center.png")
    assert abs((left + right) / 2 - 200) <= 3 and abs((top + bottom) / 2 - 150) <= 3
    watermark_image(src, tmp_path / "tiled.png", text="© YesGoddess", position="tiled", scale=0.15)
    with Image.open(src) as before, Image.open(tmp_path / "tiled.png") as after:
        difference = ImageChops.difference(before.convert("RGB"), after.convert("RGB"))
        for area in QUADRANTS.values():
            assert difference.crop(area).getbbox() is not None, f"tiles should reach {area}"


def test_scale_sets_the_mark_width_and_opacity_its_strength(tmp_path: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png", size=(1000, 500))
    watermark_image(src, tmp_path / "wide.png", text="YesGoddess", position="center", scale=0.5, opacity=1.0)
    left, _top, right, _bottom = changed_box(src, tmp_path / "wide.png")
    assert right - left == pytest.approx(500, rel=0.1)
    watermark_image(src, tmp_path / "faint.png", text="YesGoddess", position="center", scale=0.5, opacity=0.2)
    with Image.open(tmp_path / "wide.png") as strong, Image.open(tmp_path / "faint.png") as faint:
        assert strong.convert("L").getextrema()[1] > 240
        assert faint.convert("L").getextrema()[1] < 70  # 20 % of white over black


def test_logo_is_placed_and_scaled(tmp_path: Path, logo_png: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png", size=(400, 300), colour=(0, 0, 255))
    watermark_image(src, tmp_path / "out.png", logo_path=logo_png, position="center", scale=0.5, opacity=1.0)
    with Image.open(tmp_path / "out.png") as marked:
        assert marked.getpixel((200, 150))[:3] == (255, 0, 0)
    left, top, right, bottom = changed_box(src, tmp_path / "out.png")
    assert (right - left, bottom - top) == (200, 100)  # 50 % of 400 wide, the logo's 2:1 aspect


def test_jpeg_forensic_id_round_trips_and_original_is_untouched(tmp_path: Path, logo_png: Path) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (640, 480))
    before = sha256(src)
    fid = forensic_id(7, 42, ISSUED, KEY)
    result = watermark_image(src, tmp_path / "out.jpg", text="© YesGoddess", logo_path=logo_png, forensic_id=fid)
    assert sha256(src) == before
    assert result["forensic_id"] == fid
    assert read_forensic_id(tmp_path / "out.jpg") == fid
    assert read_forensic_id(src) is None
    with Image.open(tmp_path / "out.jpg") as marked:
        assert marked.format == "JPEG"
        user_comment = marked.getexif().get_ifd(0x8769)[0x9286]
        assert fid.encode() in user_comment


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_png_and_webp_keep_format_alpha_and_forensic_id(tmp_path: Path, suffix: str) -> None:
    src = samples.make_rgba_png(tmp_path / "alpha.png", (300, 200))
    if suffix == ".webp":
        with Image.open(src) as image:
            image.save(tmp_path / "alpha.webp", lossless=True)
        src = tmp_path / "alpha.webp"
    out = tmp_path / f"out{suffix}"
    watermark_image(src, out, forensic_id="abc123", position="top-left")
    assert read_forensic_id(out) == "abc123"
    with Image.open(out) as marked:
        assert marked.format == {".png": "PNG", ".webp": "WEBP"}[suffix]
        assert marked.mode == "RGBA"
        assert marked.getchannel("A").getpixel((295, 195)) == 0, "the transparent half stays transparent"


def test_exif_rotated_photo_is_marked_upright(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "rotated.jpg", (400, 200), orientation=6)
    result = watermark_image(src, tmp_path / "out.jpg", text="mark")
    assert (result["width"], result["height"]) == (200, 400)
    with Image.open(tmp_path / "out.jpg") as marked:
        assert marked.size == (200, 400)
        assert marked.getexif().get(0x0112) is None


def test_unknown_position_lists_the_valid_ones(tmp_path: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    with pytest.raises(MediaError) as caught:
        watermark_image(src, tmp_path / "out.png", text="x", position="middle")
    for position in POSITIONS:
        assert position in str(caught.value)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text": "x", "opacity": 0}, "opacity"),
        ({"text": "x", "opacity": 1.5}, "opacity"),
        ({"text": "x", "scale": 0}, "scale"),
        ({}, "Nothing to watermark"),
        ({"text": "   "}, "Nothing to watermark"),
        ({"forensic_id": "has space"}, "forensic id"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    with pytest.raises(MediaError, match=message):
        watermark_image(src, tmp_path / "out" / "marked.png", **options)
    assert files_in(tmp_path / "out") == []


def test_logo_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    fake_logo = tmp_path / "logo.png"
    fake_logo.write_bytes(b"%PDF-1.4 this is not a picture")
    with pytest.raises(MediaError, match="logo is not a usable image"):
        watermark_image(src, tmp_path / "out" / "marked.png", logo_path=fake_logo)
    assert files_in(tmp_path / "out") == []


def test_watermark_never_overwrites_the_source(tmp_path: Path) -> None:
    src = samples.make_flat_image(tmp_path / "flat.png")
    before = sha256(src)
    with pytest.raises(MediaError, match="must not overwrite the original"):
        watermark_image(src, src, text="x")
    assert sha256(src) == before


def test_unsupported_or_corrupt_images_are_refused(tmp_path: Path) -> None:
    gif = tmp_path / "anim.gif"
    Image.new("P", (50, 50)).save(gif)
    with pytest.raises(MediaError, match="JPEG, PNG and WebP"):
        watermark_image(gif, tmp_path / "out.gif", text="x")
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(samples.junk_bytes(1000))
    with pytest.raises(MediaError):
        watermark_image(junk, tmp_path / "out.jpg", text="x")
    junk.write_bytes(b"")
    with pytest.raises(MediaError, match="The file is empty"):
        read_forensic_id(junk)


# --- video ------------------------------------------------------------------------------------------


def test_video_mark_audio_and_forensic_id(tmp_path: Path) -> None:
    black = tmp_path / "black.mp4"
    samples.run_ffmpeg(
        "-f", "lavfi", "-i", "color=c=black:s=320x240:r=25:d=1", "-f", "lavfi", "-i", "sine=duration=1",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(black),
    )  # fmt: skip
    before = sha256(black)
    out = tmp_path / "marked.mp4"
    result = watermark_video(black, out, text="© YesGoddess", forensic_id="abc123", opacity=1.0)
    assert sha256(black) == before
    assert (result["width"], result["height"], result["forensic_id"]) == (320, 240, "abc123")
    assert result["duration"] == pytest.approx(1.0, abs=0.1)
    assert read_forensic_id(out) == "abc123"
    assert read_forensic_id(black) is None
    (audio,) = samples.streams_of(out, "audio")
    assert audio["codec_name"] == "aac"
    frame = samples.frame_at(out, 0.5)
    assert frame.crop((160, 120, 320, 240)).convert("L").getextrema()[1] > 200, "white text bottom-right"
    assert frame.crop((0, 0, 160, 120)).convert("L").getextrema()[1] < 40, "nothing top-left"


def test_video_logo_tiled_without_audio(clip_without_audio: Path, tmp_path: Path, logo_png: Path) -> None:
    result = watermark_video(clip_without_audio, tmp_path / "out.mp4", logo_path=logo_png, position="tiled")
    assert samples.streams_of(tmp_path / "out.mp4", "audio") == []
    assert result["forensic_id"] is None and read_forensic_id(tmp_path / "out.mp4") is None


def test_pcm_audio_in_mov_is_reencoded_for_mp4(tmp_path: Path) -> None:
    src = samples.make_clip(tmp_path / "pcm.mov", seconds=0.5, with_audio=True, audio_codec="pcm_s16le")
    watermark_video(src, tmp_path / "out.mp4", text="x")
    (audio,) = samples.streams_of(tmp_path / "out.mp4", "audio")
    assert audio["codec_name"] == "aac"


def test_video_watermark_refusals(clip_without_audio: Path, tmp_path: Path) -> None:
    fake_logo = tmp_path / "logo.png"
    fake_logo.write_text("not an image")
    out = tmp_path / "out" / "marked.mp4"
    with pytest.raises(MediaError, match="logo is not a usable image"):
        watermark_video(clip_without_audio, out, logo_path=fake_logo)
    with pytest.raises(MediaError, match="valid positions"):
        watermark_video(clip_without_audio, out, text="x", position="diagonal")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="The file is empty"):
        watermark_video(empty, out, text="x")
    with pytest.raises(MachineFault, match="timed out"):
        watermark_video(clip_without_audio, out, text="x", timeout=0.05)
    assert files_in(out.parent) == []
