"""Drawing a visible watermark (text and/or logo) and placing it on a picture of a given size.

The same mark is used for images (composited by Pillow) and videos (a PNG that ffmpeg
overlays), so both look alike and user text never goes through ffmpeg's drawtext, whose
text expansion ("%{...}") and escaping rules would make user input part of a filter graph.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

from .errors import MediaError
from .imaging import apply_exif_orientation, decode, open_image

POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center", "tiled")
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Debian/Ubuntu fonts-dejavu-core
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",  # Fedora
    "/usr/share/fonts/TTF/DejaVuSans.ttf",  # Arch
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",  # Alpine
)
_MEASURE_SIZE = 100
_MIN_FONT_SIZE = 8
_WHITE = (255, 255, 255, 255)
# A dark outline keeps white text readable on white areas of the picture.
_OUTLINE = (0, 0, 0, 255)

FontSource = Path | None  # a TrueType file, or None for Pillow's built-in scalable font


def check_position(position: str) -> str:
    if position not in POSITIONS:
        raise MediaError(f"Unknown watermark position {position!r}; valid positions: {', '.join(POSITIONS)}")
    return position


def check_fraction(name: str, value: object, meaning: str) -> float:
    """A number in (0, 1]; MediaError otherwise (bool and NaN included)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MediaError(f"The watermark {name} must be a number greater than 0 and at most 1 ({meaning})")
    if not 0 < value <= 1:
        raise MediaError(f"The watermark {name} must be greater than 0 and at most 1 ({meaning}), got {value}")
    return float(value)


def find_font(font_path: str | Path | None = None) -> FontSource:
    """The font for the text: the given file, else DejaVu Sans, else Pillow's built-in font.

    Pillow's built-in font scales only when Pillow has FreeType; without it and without a
    TrueType file there is no way to draw readable text at any size, hence the error.
    """
    if font_path is not None:
        if not Path(font_path).is_file():
            raise MediaError(f"The watermark font file does not exist: {font_path}")
        return Path(font_path)
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    if features.check("freetype2"):
        return None
    raise MediaError("No font for the watermark text: install fonts-dejavu-core (DejaVuSans.ttf) or pass font_path")


def _font(source: FontSource, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(str(source), size) if source else ImageFont.load_default(size)
    except OSError as exc:
        raise MediaError(f"The watermark font cannot be loaded ({exc})") from exc


def _outline_width(size: int) -> int:
    return max(1, round(size / 18))


def render_text(text: str, target_width: int, font: FontSource) -> Image.Image:
    """White outlined text, sized so that its width is about target_width (at least 8 px high)."""
    probe_font = _font(font, _MEASURE_SIZE)
    scratch = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, _top, right, _bottom = scratch.textbbox((0, 0), text, font=probe_font, stroke_width=_outline_width(100))
    size = max(_MIN_FONT_SIZE, int(_MEASURE_SIZE * target_width / max(1, right - left)))
    sized_font, outline = _font(font, size), _outline_width(size)
    left, top, right, bottom = scratch.textbbox((0, 0), text, font=sized_font, stroke_width=outline)
    canvas = Image.new("RGBA", (max(1, right - left), max(1, bottom - top)), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text(
        (-left, -top), text, font=sized_font, fill=_WHITE, stroke_width=outline, stroke_fill=_OUTLINE, align="center"
    )
    return canvas


def load_logo(logo_path: str | Path) -> Image.Image:
    """The logo upright as RGBA; MediaError naming the logo when it is not a readable image."""
    try:
        with open_image(logo_path) as logo:
            decode(logo)
            return apply_exif_orientation(logo).convert("RGBA")
    except MediaError as exc:
        raise MediaError(f"The watermark logo is not a usable image: {exc}") from exc
    except ValueError as exc:
        raise MediaError(f"The watermark logo is not a usable image: colour mode cannot be converted ({exc})") from exc


def _resized_to_width(image: Image.Image, width: int) -> Image.Image:
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _with_opacity(mark: Image.Image, opacity: float) -> Image.Image:
    alpha = mark.getchannel("A").point([round(value * opacity) for value in range(256)])
    mark.putalpha(alpha)
    return mark


def padding(canvas: tuple[int, int]) -> int:
    """The distance from the edges: 2 % of the shorter side, at least 2 px."""
    return max(2, round(0.02 * min(canvas)))


def build_mark(
    canvas: tuple[int, int],
    *,
    text: str | None,
    logo: Image.Image | None,
    scale: float,
    opacity: float,
    font: FontSource,
) -> Image.Image:
    """Logo above text, each `scale` x the canvas width wide, at `opacity`, fitted inside the canvas."""
    target_width = max(1, round(scale * canvas[0]))
    parts = []
    if logo is not None:
        parts.append(_resized_to_width(logo, target_width))
    if text:
        parts.append(render_text(text, target_width, font))
    if not parts:
        raise MediaError("Nothing to draw: give watermark text, a logo or a forensic id")
    gap = round(0.15 * parts[-1].height) if len(parts) > 1 else 0
    mark = Image.new("RGBA", (max(p.width for p in parts), sum(p.height for p in parts) + gap), (0, 0, 0, 0))
    top = 0
    for part in parts:
        mark.paste(part, ((mark.width - part.width) // 2, top))
        top += part.height + gap
    inner = padding(canvas)
    # A long text or tall logo must still fit: shrink (never enlarge) to the canvas minus padding.
    mark.thumbnail((max(1, canvas[0] - 2 * inner), max(1, canvas[1] - 2 * inner)), Image.Resampling.LANCZOS)
    return _with_opacity(mark, opacity)


def placements(canvas: tuple[int, int], mark_size: tuple[int, int], position: str) -> list[tuple[int, int]]:
    """Top-left corners where the mark goes; "tiled" covers the canvas in a brick pattern."""
    width, height = canvas
    mark_w, mark_h = mark_size
    inner = padding(canvas)
    right, bottom = width - mark_w - inner, height - mark_h - inner
    corners = {
        "top-left": (inner, inner),
        "top-right": (right, inner),
        "bottom-left": (inner, bottom),
        "bottom-right": (right, bottom),
        "center": ((width - mark_w) // 2, (height - mark_h) // 2),
    }
    if position != "tiled":
        return [corners[check_position(position)]]
    step_x, step_y = mark_w + max(inner, mark_w // 2), mark_h + max(inner, mark_h)
    spots = []
    for row, y in enumerate(range(inner // 2, height, step_y)):
        # Every other row shifted by half a step, so no straight gap runs down the picture.
        shift = step_x // 2 if row % 2 else 0
        spots += [(x, y) for x in range(inner // 2 - shift, width, step_x)]
    return spots


def mark_layer(canvas: tuple[int, int], mark: Image.Image, position: str) -> Image.Image:
    """A transparent canvas-sized RGBA layer with the mark placed (tiles never overlap)."""
    layer = Image.new("RGBA", canvas, (0, 0, 0, 0))
    for spot in placements(canvas, mark.size, position):
        # Plain paste copies the mark's alpha as is; pasting with a mask would square it.
        layer.paste(mark, spot)
    return layer
