"""Format conversion: image variants, video renditions, audio variants."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat

from yesgoddess.media import image_variants
from yesgoddess.media.conversion import convert_audio, convert_image, convert_video, rendition_size
from yesgoddess.media.errors import MachineFault, MediaError

from . import samples
from .helpers import files_in

IMAGE_TYPES = {"WEBP": "image/webp", "AVIF": "image/avif", "JPEG": "image/jpeg"}


def by_variant(entries: list[dict]) -> dict[str, dict]:
    return {entry["variant"]: entry for entry in entries}


def assert_entries_match_files(entries: list[dict]) -> None:
    """Every reported size, type and byte count is what Pillow finds in the file."""
    for entry in entries:
        path = Path(entry["path"])
        with Image.open(path) as image:
            assert IMAGE_TYPES[image.format] == entry["content_type"], entry["variant"]
            assert image.size == (entry["width"], entry["height"]), entry["variant"]
        assert entry["size_bytes"] == path.stat().st_size


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(first.convert("RGB"), second.convert("RGB"))).mean) / 3


# --- images -----------------------------------------------------------------------------------------


def test_image_variants_for_a_1000px_jpeg(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (1000, 750))
    entries = convert_image(src, tmp_path / "out")
    expected = ["webp", "avif", "w400_webp", "w400_jpeg", "w800_webp", "w800_jpeg"]
    assert [entry["variant"] for entry in entries] == expected
    assert files_in(tmp_path / "out") == ["full.avif", "full.webp", "w400.jpg", "w400.webp", "w800.jpg", "w800.webp"]
    assert_entries_match_files(entries)
    variants = by_variant(entries)
    assert (variants["webp"]["width"], variants["webp"]["height"]) == (1000, 750)
    assert (variants["avif"]["width"], variants["avif"]["height"]) == (1000, 750)
    assert (variants["w800_jpeg"]["width"], variants["w800_jpeg"]["height"]) == (800, 600)
    assert (variants["w400_webp"]["width"], variants["w400_webp"]["height"]) == (400, 300)
    with Image.open(src) as original:
        for entry in entries:
            with Image.open(entry["path"]) as variant:
                reference = original.resize(variant.size, Image.Resampling.LANCZOS)
                assert mean_difference(variant, reference) < 4, entry["variant"]


@pytest.mark.parametrize(("width", "expected_widths"), [(400, []), (401, [400]), (1920, [400, 800, 1200])])
def test_responsive_widths_never_enlarge(tmp_path: Path, width: int, expected_widths: list[int]) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (width, 100))
    variants = by_variant(convert_image(src, tmp_path / "out"))
    widths = sorted(variants[name]["width"] for name in variants if name.endswith("_webp"))
    assert widths == expected_widths
    assert (variants["webp"]["width"], variants["avif"]["width"]) == (width, width)


def test_exif_rotated_photo_gives_upright_variants(tmp_path: Path) -> None:
    # Stored 1000x500 with orientation 6 (rotate 90 degrees clockwise to display): shown 500x1000.
    src = samples.make_jpeg(tmp_path / "rotated.jpg", (1000, 500), orientation=6)
    entries = convert_image(src, tmp_path / "out")
    with Image.open(src) as original:
        upright = ImageOps.exif_transpose(original)
    assert upright.size == (500, 1000)
    for entry in entries:
        with Image.open(entry["path"]) as variant:
            assert variant.height > variant.width, entry["variant"]
            assert variant.getexif().get(0x0112) in (None, 1), "no orientation tag left to rotate it again"
            reference = upright.resize(variant.size, Image.Resampling.LANCZOS)
            assert mean_difference(variant, reference) < 4, entry["variant"]


def test_transparency_is_kept_in_webp_and_avif_and_flattened_in_jpeg(tmp_path: Path) -> None:
    src = samples.make_rgba_png(tmp_path / "logo.png", (900, 300))
    variants = by_variant(convert_image(src, tmp_path / "out"))
    for name in ("webp", "avif", "w400_webp", "w800_webp"):
        with Image.open(variants[name]["path"]) as image:
            assert image.mode == "RGBA", name
            alpha = image.getchannel("A")
            assert alpha.getpixel((5, 5)) == 255, name  # left half opaque
            assert alpha.getpixel((image.width - 5, 5)) == 0, name  # right half transparent
    with Image.open(variants["w400_jpeg"]["path"]) as jpeg:
        assert jpeg.mode == "RGB"
        assert all(channel > 245 for channel in jpeg.getpixel((395, 5))), "transparent areas become white"


def test_opaque_alpha_channel_is_dropped(tmp_path: Path) -> None:
    src = tmp_path / "opaque.png"
    samples.make_gradient_rgb((500, 200)).convert("RGBA").save(src)
    variants = by_variant(convert_image(src, tmp_path / "out"))
    with Image.open(variants["webp"]["path"]) as image:
        assert image.mode == "RGB"


def test_metadata_is_stripped_but_colour_profile_kept(tmp_path: Path) -> None:
    src = tmp_path / "tagged.jpg"
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "Editor 1.0"  # Software
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    samples.make_gradient_rgb((500, 300)).save(src, "JPEG", exif=exif.tobytes(), icc_profile=srgb)
    for entry in convert_image(src, tmp_path / "out"):
        with Image.open(entry["path"]) as image:
            assert not image.getexif(), entry["variant"]
            assert image.info.get("icc_profile") == srgb, entry["variant"]


def test_second_run_overwrites_the_same_names(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (900, 600))
    first = convert_image(src, tmp_path / "out")
    names = files_in(tmp_path / "out")
    second = convert_image(src, tmp_path / "out")
    assert files_in(tmp_path / "out") == names
    assert [entry["path"] for entry in first] == [entry["path"] for entry in second]
    assert len({entry["path"] for entry in first}) == len(first), "no two variants share a file"


def test_avif_speed_is_used_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original = Image.Image.save

    def spy(image: Image.Image, fp, format=None, **params):
        if format == "AVIF":
            seen.append(params["speed"])
        return original(image, fp, format, **params)

    monkeypatch.setattr(Image.Image, "save", spy)
    convert_image(samples.make_jpeg(tmp_path / "p.jpg", (300, 200)), tmp_path / "out", avif_speed=9)
    assert seen == [9]
    with pytest.raises(MediaError, match="avif_speed"):
        convert_image(tmp_path / "p.jpg", tmp_path / "out", avif_speed=11)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "The file is empty"), (samples.junk_bytes(2048), "not an image format")],
)
def test_unreadable_image_fails_and_writes_nothing(tmp_path: Path, content: bytes, message: str) -> None:
    src = tmp_path / "bad.jpg"
    src.write_bytes(content)
    with pytest.raises(MediaError, match=message):
        convert_image(src, tmp_path / "out")
    assert files_in(tmp_path / "out") == []


def test_failed_encode_leaves_no_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The AVIF encoder fails after the other variants are (or are being) written: none may appear.
    def broken_avif(*_args, **_kwargs):
        def encode(image: Image.Image, path: Path) -> None:
            path.write_bytes(b"half")
            raise OSError("encoder crashed")

        return encode

    monkeypatch.setattr(image_variants, "_avif_encoder", broken_avif)
    with pytest.raises(MediaError, match="avif variant"):
        convert_image(samples.make_jpeg(tmp_path / "p.jpg", (900, 600)), tmp_path / "out")
    assert files_in(tmp_path / "out") == []


def test_cmyk_jpeg_is_converted_to_rgb_without_its_profile(tmp_path: Path) -> None:
    src = tmp_path / "cmyk.jpg"
    samples.make_gradient_rgb((500, 300)).convert("CMYK").save(src, "JPEG")
    for entry in convert_image(src, tmp_path / "out"):
        with Image.open(entry["path"]) as image:
            assert image.mode == "RGB"
            assert "icc_profile" not in image.info or not image.info["icc_profile"]


# --- video ------------------------------------------------------------------------------------------


def test_720p_source_gives_720p_and_480p(mp4_file: Path, tmp_path: Path) -> None:
    entries = convert_video(mp4_file, tmp_path / "out")
    assert files_in(tmp_path / "out") == ["480p.mp4", "720p.mp4"]
    expected = {"720p": (1280, 720, 3_000_000), "480p": (852, 480, 1_500_000)}
    assert [entry["variant"] for entry in entries] == ["720p", "480p"]
    for entry in entries:
        width, height, cap = expected[entry["variant"]]
        path = Path(entry["path"])
        (video,) = samples.streams_of(path, "video")
        (audio,) = samples.streams_of(path, "audio")
        assert (video["codec_name"], video["width"], video["height"]) == ("h264", width, height)
        assert audio["codec_name"] == "aac"
        assert (entry["width"], entry["height"], entry["content_type"]) == (width, height, "video/mp4")
        assert entry["duration"] == pytest.approx(4.0, abs=0.1)
        assert int(video["bit_rate"]) <= cap * 1.1
        assert entry["bitrate"] == int(samples.ffprobe_json(path)["format"]["bit_rate"])
        assert entry["size_bytes"] == path.stat().st_size


def test_small_video_is_never_upscaled(tmp_path: Path) -> None:
    src = samples.make_clip(tmp_path / "vga.mp4", size="640x480", seconds=0.5)
    entries = convert_video(src, tmp_path / "out")
    assert [(e["variant"], e["width"], e["height"]) for e in entries] == [("480p", 640, 480)]
    assert convert_video(samples.make_clip(tmp_path / "tiny.mp4", seconds=0.5), tmp_path / "tiny-out") == []
    assert files_in(tmp_path / "tiny-out") == []


def test_rendition_size_uses_the_short_side() -> None:
    assert rendition_size(1920, 1080, 720) == (1280, 720)
    assert rendition_size(1080, 1920, 720) == (720, 1280)  # portrait
    assert rendition_size(1280, 720, 720) == (1280, 720)  # same size is not an enlargement
    assert rendition_size(1280, 719, 720) is None


def test_video_without_audio_and_high_frame_rate(tmp_path: Path) -> None:
    src = samples.make_clip(tmp_path / "60fps.mp4", size="854x480", seconds=0.5, rate=60)
    (entry,) = convert_video(src, tmp_path / "out")
    assert samples.streams_of(Path(entry["path"]), "audio") == []
    (video,) = samples.streams_of(Path(entry["path"]), "video")
    assert video["avg_frame_rate"] == "30/1"


def test_video_conversion_failure_leaves_nothing(mp4_file: Path, tmp_path: Path) -> None:
    with pytest.raises(MachineFault, match="timed out"):
        convert_video(mp4_file, tmp_path / "out", timeout=0.3)
    assert files_in(tmp_path / "out") == []
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(samples.junk_bytes(4096))
    with pytest.raises(MediaError, match="ffprobe could not read the file"):
        convert_video(junk, tmp_path / "out")
    assert files_in(tmp_path / "out") == []


def test_video_conversion_twice_gives_the_same_files(clip_with_audio: Path, tmp_path: Path) -> None:
    src = samples.make_clip(tmp_path / "480.mp4", size="854x480", seconds=0.5, with_audio=True)
    first = convert_video(src, tmp_path / "out")
    second = convert_video(src, tmp_path / "out")
    assert [e["path"] for e in first] == [e["path"] for e in second]
    assert files_in(tmp_path / "out") == ["480p.mp4"]


# --- audio ------------------------------------------------------------------------------------------


def test_audio_variants_bitrates_and_codecs(tmp_path: Path) -> None:
    src = samples.make_noise_audio(tmp_path / "noise.wav", seconds=2)
    entries = convert_audio(src, tmp_path / "out")
    assert files_in(tmp_path / "out") == ["aac.m4a", "mp3_128.mp3", "mp3_192.mp3", "mp3_320.mp3"]
    expected = {
        "mp3_320": ("mp3", 320_000, "audio/mpeg"),
        "mp3_192": ("mp3", 192_000, "audio/mpeg"),
        "mp3_128": ("mp3", 128_000, "audio/mpeg"),
        "aac": ("aac", 192_000, "audio/mp4"),
    }
    assert [entry["variant"] for entry in entries] == list(expected)
    for entry in entries:
        codec, bitrate, content_type = expected[entry["variant"]]
        (audio,) = samples.streams_of(Path(entry["path"]), "audio")
        assert audio["codec_name"] == codec
        assert int(audio["bit_rate"]) == pytest.approx(bitrate, rel=0.15)
        assert entry["bitrate"] == pytest.approx(bitrate, rel=0.15)
        assert entry["content_type"] == content_type
        assert entry["duration"] == pytest.approx(2.0, abs=0.1)
        assert entry["size_bytes"] == Path(entry["path"]).stat().st_size
    assert by_variant(entries)["mp3_320"]["bitrate"] == 320_000, "CBR: exactly the nominal rate"


def test_audio_tags_are_kept_and_untagged_audio_works(mp3_file: Path, wav_file: Path, tmp_path: Path) -> None:
    for entry in convert_audio(mp3_file, tmp_path / "tagged"):
        assert samples.ffprobe_json(Path(entry["path"]))["format"]["tags"]["title"] == "Test Tone"
    assert len(convert_audio(wav_file, tmp_path / "plain")) == 4


def test_low_sample_rate_still_gets_320k_mp3(tmp_path: Path) -> None:
    src = samples.make_noise_audio(tmp_path / "low.wav", seconds=1, sample_rate=16000, channels=1)
    variants = by_variant(convert_audio(src, tmp_path / "out"))
    (audio,) = samples.streams_of(Path(variants["mp3_320"]["path"]), "audio")
    assert (int(audio["sample_rate"]), int(audio["bit_rate"])) == (44100, 320_000)


def test_audio_conversion_of_a_silent_video_or_junk_fails_cleanly(clip_without_audio: Path, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="No audio stream found"):
        convert_audio(clip_without_audio, tmp_path / "out")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(samples.junk_bytes(4096))
    with pytest.raises(MediaError):
        convert_audio(junk, tmp_path / "out")
    assert files_in(tmp_path / "out") == []
