"""Thumbnails of video, audio, PDF and icon-only types."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from yesgoddess.media.errors import MediaError
from yesgoddess.media.thumbnails import make_thumbnails, render_waveform

from . import samples
from .helpers import BOXES, assert_thumbnails, files_in, mean_rgb, pillow_thumbnail_size

WAVE = (0x63, 0x66, 0xF1)
BACKGROUND = (0xF3, 0xF4, 0xF6)


def close_to(colour: tuple[float, ...], expected: tuple[int, int, int], tolerance: float = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def test_video_thumbnails_are_a_frame_at_video_size(mp4_file: Path, tmp_path: Path) -> None:
    result = make_thumbnails(mp4_file, "VIDEO", "video/mp4", tmp_path / "out")
    assert result["source"] == "video-frame"
    assert_thumbnails(result, {name: pillow_thumbnail_size(1280, 720, box) for name, box in BOXES.items()})
    assert result["sizes"]["large"]["width"] == 800 and result["sizes"]["large"]["height"] == 450


def test_video_frame_is_taken_at_ten_percent_of_duration(tmp_path: Path) -> None:
    # 10 s of black with a red frame only between 0.5 s and 1.5 s: only a grab near 1.0 s is red.
    src = tmp_path / "marker.mp4"
    samples.run_ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=320x240:r=25:d=10",
        "-vf",
        "drawbox=x=0:y=0:w=iw:h=ih:color=red:t=fill:enable='between(t,0.5,1.5)'",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(src),
    )
    result = make_thumbnails(src, "VIDEO", "video/mp4", tmp_path / "out")
    with Image.open(result["sizes"]["large"]["path"]) as frame:
        red, green, blue = mean_rgb(frame, (0, 0, frame.width, frame.height))
        assert red > 200 and green < 40 and blue < 40


def test_anamorphic_video_frame_is_shown_at_display_aspect(tmp_path: Path) -> None:
    # 720x576 stored with a 16:15 sample aspect ratio displays as 768x576 (4:3).
    src = tmp_path / "pal.mp4"
    samples.run_ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=720x576:rate=25:duration=1", "-vf", "setsar=16/15",
        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src),
    )  # fmt: skip
    result = make_thumbnails(src, "VIDEO", "video/mp4", tmp_path / "out")
    assert_thumbnails(result, {name: pillow_thumbnail_size(768, 576, box) for name, box in BOXES.items()})


def test_audio_thumbnail_is_its_waveform(mp3_file: Path, tmp_path: Path) -> None:
    result = make_thumbnails(mp3_file, "AUDIO", "audio/mpeg", tmp_path / "out")
    assert result["source"] == "waveform"
    assert_thumbnails(result, {name: pillow_thumbnail_size(1800, 280, box) for name, box in BOXES.items()})
    with Image.open(result["sizes"]["large"]["path"]) as large:
        middle = large.height // 2
        assert close_to(mean_rgb(large, (100, middle - 5, 700, middle + 5)), WAVE)
        assert close_to(mean_rgb(large, (100, 0, 700, 4)), BACKGROUND)


def test_waveform_is_drawn_from_the_samples(tmp_path: Path) -> None:
    tone = samples.make_audio(tmp_path / "tone.wav", seconds=2)
    silence = tmp_path / "silence.wav"
    samples.run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "2", str(silence))
    quiet_then_loud = tmp_path / "ramp.wav"
    samples.run_ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-af", "volume='if(lt(t,2),0.05,1)':eval=frame",
        str(quiet_then_loud),
    )  # fmt: skip

    def wave_pixels(src: Path) -> tuple[int, int]:
        """Wave-coloured pixels in the left and right halves of the picture."""
        out = render_waveform(src, tmp_path / f"{src.stem}.png")
        with Image.open(out) as picture:
            assert picture.size == (1800, 280)
            rgb = picture.convert("RGB")
            halves = [rgb.crop((0, 0, 900, 280)), rgb.crop((900, 0, 1800, 280))]
            return tuple(sum(1 for pixel in half.get_flattened_data() if close_to(pixel, WAVE, 20)) for half in halves)

    tone_left, tone_right = wave_pixels(tone)
    silent_left, silent_right = wave_pixels(silence)
    ramp_left, ramp_right = wave_pixels(quiet_then_loud)
    assert silent_left + silent_right < 1800  # at most the zero line
    assert tone_left > 20_000 and abs(tone_left - tone_right) < tone_left * 0.1
    assert ramp_right > 3 * ramp_left  # the loud second half draws a taller wave


def test_render_waveform_honours_size(wav_file: Path, tmp_path: Path) -> None:
    out = render_waveform(wav_file, tmp_path / "waves" / "wave.png", width=600, height=100)
    assert out == tmp_path / "waves" / "wave.png"
    with Image.open(out) as picture:
        assert picture.size == (600, 100) and picture.format == "PNG"
    assert files_in(tmp_path / "waves") == ["wave.png"]  # no temporary file left beside it


def test_pdf_thumbnail_renders_the_first_page(tmp_path: Path) -> None:
    src = samples.make_pdf(tmp_path / "doc.pdf", text="First", pages=2)
    result = make_thumbnails(src, "DOCUMENT", "application/pdf", tmp_path / "out")
    assert result["source"] == "pdf-page"
    large = result["sizes"]["large"]
    # US letter is 612 x 792 pt; pdftoppm -scale-to 800 makes the long side 800 px.
    assert large["height"] == 800 and 616 <= large["width"] <= 620
    assert (result["sizes"]["small"]["width"], result["sizes"]["small"]["height"]) == pillow_thumbnail_size(
        large["width"], 800, 200
    )
    with Image.open(large["path"]) as page:
        assert min(mean_rgb(page, (0, 400, page.width, 800))) > 250  # blank lower half, white paper
        text_band = page.convert("L").crop((80, 70, 500, 110))
        assert text_band.getextrema()[0] < 100  # dark glyphs where the text is


def test_pdf_made_by_pillow_is_rendered(tmp_path: Path) -> None:
    src = tmp_path / "scan.pdf"
    Image.new("RGB", (1200, 600), (0, 128, 0)).save(src, "PDF", resolution=100)
    result = make_thumbnails(src, "DOCUMENT", "application/pdf", tmp_path / "out")
    large = result["sizes"]["large"]
    # pdftoppm rounds the short side of an exact 2:1 page to 400 or 401 px.
    assert large["width"] == 800 and large["height"] in (400, 401)
    assert_thumbnails(result, {name: pillow_thumbnail_size(800, large["height"], box) for name, box in BOXES.items()})
    with Image.open(result["sizes"]["medium"]["path"]) as page:
        red, green, blue = mean_rgb(page, (100, 50, 300, 150))
        assert red < 20 and 110 < green < 145 and blue < 20


@pytest.mark.parametrize(
    ("asset_type", "mime"),
    [
        ("DOCUMENT", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("DOCUMENT", "text/plain"),
        ("THREE_D", "model/gltf-binary"),
        ("OTHER", "application/zip"),
    ],
)
def test_files_without_a_picture_get_a_type_icon(tmp_path: Path, asset_type: str, mime: str) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(b"content")
    result = make_thumbnails(src, asset_type, mime, tmp_path / "out")
    assert result["source"] == "type-icon"
    assert_thumbnails(result, {"small": (200, 200), "medium": (400, 400), "large": (800, 800)})


def test_type_icons_differ_by_kind(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(b"content")
    docx = make_thumbnails(src, "DOCUMENT", "application/msword", tmp_path / "a")
    glb = make_thumbnails(src, "THREE_D", "model/gltf-binary", tmp_path / "b")
    assert Path(docx["sizes"]["large"]["path"]).read_bytes() != Path(glb["sizes"]["large"]["path"]).read_bytes()


def test_unknown_asset_type_is_refused(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "a.jpg", (100, 100))
    with pytest.raises(MediaError, match="Unknown asset type 'HOLOGRAM'"):
        make_thumbnails(src, "HOLOGRAM", "image/jpeg", tmp_path / "out")
    assert not (tmp_path / "out").exists()
