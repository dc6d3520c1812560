"""Image thumbnails: sizes, orientation, colour modes, transparency."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from yesgoddess.media.thumbnails import SIZES, make_thumbnails

from . import samples
from .helpers import BOXES, assert_thumbnails, mean_rgb, pillow_thumbnail_size

RED = (255, 0, 0)


def expected_sizes(width: int, height: int) -> dict[str, tuple[int, int]]:
    return {name: pillow_thumbnail_size(width, height, box) for name, box in BOXES.items()}


def test_sizes_are_the_bounding_boxes() -> None:
    assert SIZES == {"small": 200, "medium": 400, "large": 800}


def test_jpeg_thumbnails_fit_their_boxes(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (1600, 1200))
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert result["source"] == "image"
    assert_thumbnails(result, {"small": (200, 150), "medium": (400, 300), "large": (800, 600)})


@pytest.mark.parametrize("size", [(3001, 2001), (2001, 3001), (4000, 17), (17, 4000), (1700, 1700), (801, 799)])
def test_drafted_jpeg_sizes_equal_pillow_thumbnail_sizes(tmp_path: Path, size: tuple[int, int]) -> None:
    # draft() decodes at a reduced scale; sizes must still be those of a full decode + thumbnail().
    src = samples.make_jpeg(tmp_path / "photo.jpg", size)
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert_thumbnails(result, expected_sizes(*size))


def test_thumbnails_are_quality_85_jpeg(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "photo.jpg", (1000, 500))
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    with Image.open(result["sizes"]["large"]["path"]) as large:
        assert large.format == "JPEG" and large.mode == "RGB"
        # Quality 85 gives this luminance quantisation table entry (libjpeg's standard table scaled).
        assert large.quantization[0][0] == 5


def test_tiny_image_is_never_upscaled(tmp_path: Path) -> None:
    src = tmp_path / "tiny.png"
    Image.new("RGB", (150, 100), RED).save(src)
    result = make_thumbnails(src, "IMAGE", "image/png", tmp_path / "out")
    assert_thumbnails(result, {"small": (150, 100), "medium": (150, 100), "large": (150, 100)})


def test_image_between_boxes_is_only_reduced_where_needed(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "mid.jpg", (300, 600))
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert_thumbnails(result, {"small": (100, 200), "medium": (200, 400), "large": (300, 600)})


def test_png_transparency_becomes_white(tmp_path: Path) -> None:
    src = tmp_path / "logo.png"
    image = Image.new("RGBA", (1000, 1000), (0, 0, 0, 0))  # transparent *black*: must not show as black
    image.paste((255, 0, 0, 255), (250, 250, 750, 750))
    image.save(src)
    result = make_thumbnails(src, "IMAGE", "image/png", tmp_path / "out")
    with Image.open(result["sizes"]["large"]["path"]) as large:
        assert all(channel > 245 for channel in mean_rgb(large, (0, 0, 100, 100)))
        red, green, blue = mean_rgb(large, (350, 350, 450, 450))
        assert red > 240 and green < 15 and blue < 15


def test_palette_png_with_transparent_index_becomes_white(tmp_path: Path) -> None:
    src = tmp_path / "palette.png"
    image = Image.new("P", (300, 300), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    image.paste(1, (100, 100, 200, 200))
    image.save(src, transparency=0)
    result = make_thumbnails(src, "IMAGE", "image/png", tmp_path / "out")
    with Image.open(result["sizes"]["large"]["path"]) as large:
        assert all(channel > 245 for channel in mean_rgb(large, (0, 0, 50, 50)))
        assert mean_rgb(large, (130, 130, 170, 170))[0] > 240


def test_greyscale_with_alpha_becomes_white_background(tmp_path: Path) -> None:
    src = tmp_path / "la.png"
    image = Image.new("LA", (400, 400), (0, 0))
    image.paste((0, 255), (0, 0, 200, 400))
    image.save(src)
    result = make_thumbnails(src, "IMAGE", "image/png", tmp_path / "out")
    with Image.open(result["sizes"]["medium"]["path"]) as medium:
        assert mean_rgb(medium, (0, 0, 150, 400))[0] < 10  # opaque black half stays black
        assert mean_rgb(medium, (250, 0, 400, 400))[0] > 245  # transparent half is white


def test_cmyk_jpeg_gives_rgb_thumbnails(tmp_path: Path) -> None:
    src = tmp_path / "print.jpg"
    Image.new("CMYK", (1200, 900), (255, 0, 0, 0)).save(src, "JPEG", quality=95)  # pure cyan
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert_thumbnails(result, {"small": (200, 150), "medium": (400, 300), "large": (800, 600)})
    with Image.open(result["sizes"]["large"]["path"]) as large:
        red, green, blue = mean_rgb(large, (300, 200, 500, 400))
        assert red < 20 and green > 235 and blue > 235


def test_exif_orientation_6_turns_landscape_pixels_into_portrait(tmp_path: Path) -> None:
    src = tmp_path / "phone.jpg"
    stored = Image.new("RGB", (1600, 1200), (255, 255, 255))
    stored.paste(RED, (0, 0, 400, 300))  # a red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(src, "JPEG", quality=95, exif=exif.tobytes())
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert_thumbnails(result, {"small": (150, 200), "medium": (300, 400), "large": (600, 800)})
    with Image.open(result["sizes"]["large"]["path"]) as large:
        # After a clockwise turn the stored top-left corner is the displayed top-right corner.
        assert mean_rgb(large, (500, 0, 600, 100))[1] < 30
        assert mean_rgb(large, (0, 0, 100, 100))[1] > 225


def test_exif_rotated_jpeg_sizes_match_pillow_on_the_upright_picture(tmp_path: Path) -> None:
    src = samples.make_jpeg(tmp_path / "odd.jpg", (3001, 1999), orientation=8)
    result = make_thumbnails(src, "IMAGE", "image/jpeg", tmp_path / "out")
    assert_thumbnails(result, expected_sizes(1999, 3001))


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    src = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (300, 200), colour) for colour in (RED, (0, 0, 255))]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = make_thumbnails(src, "IMAGE", "image/gif", tmp_path / "out")
    assert_thumbnails(result, {"small": (200, 133), "medium": (300, 200), "large": (300, 200)})
    with Image.open(result["sizes"]["small"]["path"]) as small:
        red, _green, blue = mean_rgb(small, (50, 30, 150, 100))
        assert red > 240 and blue < 15


def test_16_bit_png_is_scaled_to_8_bit_not_clipped_to_white(tmp_path: Path) -> None:
    src = tmp_path / "scan16.png"
    ramp = Image.linear_gradient("L").resize((256, 1024))  # black at the top, white at the bottom
    ramp.convert("I").point(lambda v: v * 257).convert("I;16").save(src)  # 0..65535
    with Image.open(src) as check:
        assert check.mode == "I;16"
    result = make_thumbnails(src, "IMAGE", "image/png", tmp_path / "out")
    assert_thumbnails(result, expected_sizes(256, 1024))
    with Image.open(result["sizes"]["large"]["path"]) as large:
        top = mean_rgb(large, (0, 0, large.width, 20))[0]
        middle = mean_rgb(large, (0, large.height // 2 - 10, large.width, large.height // 2 + 10))[0]
        bottom = mean_rgb(large, (0, large.height - 20, large.width, large.height))[0]
        assert top < 20 and 100 < middle < 156 and bottom > 235


def test_one_bit_image_is_handled(tmp_path: Path) -> None:
    src = tmp_path / "fax.tiff"
    image = Image.new("1", (1000, 500), 1)
    image.paste(0, (0, 0, 500, 500))
    image.save(src)
    result = make_thumbnails(src, "IMAGE", "image/tiff", tmp_path / "out")
    assert_thumbnails(result, {"small": (200, 100), "medium": (400, 200), "large": (800, 400)})
    with Image.open(result["sizes"]["large"]["path"]) as large:
        assert mean_rgb(large, (0, 0, 300, 400))[0] < 10
        assert mean_rgb(large, (500, 0, 800, 400))[0] > 245


def test_webp_with_alpha_is_flattened(tmp_path: Path) -> None:
    src = tmp_path / "sticker.webp"
    Image.new("RGBA", (500, 500), (0, 0, 255, 0)).save(src, "WEBP", lossless=True)
    result = make_thumbnails(src, "IMAGE", "image/webp", tmp_path / "out")
    with Image.open(result["sizes"]["small"]["path"]) as small:
        assert all(channel > 245 for channel in mean_rgb(small, (0, 0, 200, 200)))


def test_rerun_replaces_previous_thumbnails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = samples.make_jpeg(tmp_path / "a.jpg", (1600, 800))
    second = samples.make_jpeg(tmp_path / "b.jpg", (800, 1600))
    make_thumbnails(first, "IMAGE", "image/jpeg", out)
    result = make_thumbnails(second, "IMAGE", "image/jpeg", out)
    assert_thumbnails(result, {"small": (100, 200), "medium": (200, 400), "large": (400, 800)})
    assert sorted(p.name for p in out.iterdir()) == ["large.jpg", "medium.jpg", "small.jpg"]
