"""Opening images safely and turning any Pillow image into an upright RGB picture.

Pillow's decompression-bomb guard stays on (Image.MAX_IMAGE_PIXELS is never changed) and
truncated files stay errors (ImageFile.LOAD_TRUNCATED_IMAGES is never set): a thumbnail job
must refuse such files with a reason, not render half a picture or exhaust memory.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import MediaError
from .tools import ensure_not_empty

WHITE = (255, 255, 255)
EXIF_ORIENTATION = 0x0112
# Orientations 5-8 are rotations by 90 or 270 degrees: displayed width and height are swapped.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# What Pillow raises for bad image data besides OSError: broken PNG chunks (SyntaxError),
# bad headers (ValueError, struct.error), short GIF frames (EOFError), bad zlib streams.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def bomb_message() -> str:
    return f"The image is larger than the decompression-bomb limit ({Image.MAX_IMAGE_PIXELS} pixels)"


def fit_within(width: int, height: int, box: int) -> tuple[int, int]:
    """The size of a width x height picture fitted in a box x box square, never enlarged.

    This is Image.thumbnail()'s own rounding, copied so that thumbnails made from a reduced
    (drafted) decode have exactly the size a full decode + thumbnail() would give.
    """
    if width <= box and height <= box:
        return width, height
    aspect = width / height

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if aspect <= 1:
        return round_aspect(box * aspect, key=lambda n: abs(aspect - n / box)), box
    return box, round_aspect(box / aspect, key=lambda n: 0 if n == 0 else abs(aspect - box / n))


def open_image(path: str | Path) -> Image.Image:
    """Image.open with every failure turned into a MediaError (header only; pixels not decoded yet)."""
    ensure_not_empty(path)
    try:
        # Pillow only warns between 1x and 2x the limit; a warning would let a bomb through.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(bomb_message()) from exc
    except UnidentifiedImageError as exc:
        raise MediaError("The file is not an image format that can be read") from exc
    except _DECODE_ERRORS as exc:
        raise MediaError(f"The image is truncated or corrupt ({exc})") from exc
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        image.close()
        raise MediaError(bomb_message())
    return image


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def is_rotated_sideways(image: Image.Image) -> bool:
    """True when the EXIF orientation turns the picture by 90 or 270 degrees."""
    return exif_orientation(image) in _SWAPPING_ORIENTATIONS


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as a viewer shows the picture, after EXIF rotation."""
    width, height = image.size
    return (height, width) if is_rotated_sideways(image) else (width, height)


def decode(image: Image.Image) -> None:
    """Decode the pixels; a truncated or corrupt file becomes a MediaError here."""
    try:
        image.load()
    except _DECODE_ERRORS as exc:
        raise MediaError(f"The image is truncated or corrupt ({exc})") from exc


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip the pixels as the EXIF orientation says; a broken EXIF block is ignored."""
    if exif_orientation(image) == 1:
        return image  # exif_transpose would still copy the pixels
    try:
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, TypeError, KeyError):
        return image


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float greyscale into "L", scaled rather than clipped.

    convert("L") clips every value above 255 to white, which turns a 16-bit photo white.
    """
    if image.mode.startswith("I;16"):
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    _low, high = image.getextrema()
    if image.mode == "F" and high <= 1.0:
        return image.point(lambda v: v * 255).convert("L")
    if high <= 255:
        return image.convert("L")
    return image.point(lambda v: v * (255 / high)).convert("L")


def has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparent areas become white (JPEG has no alpha and would show black)."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit_grey(image)
    try:
        if has_transparency(image):
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, WHITE)
            background.paste(rgba, mask=rgba.getchannel("A"))
            return background
        return image.convert("RGB")
    except ValueError as exc:
        raise MediaError(f"The image colour mode {image.mode} cannot be converted to RGB") from exc


def load_upright_rgb(path: str | Path, box: int) -> tuple[Image.Image, tuple[int, int]]:
    """The picture decoded just large enough for a box x box thumbnail, upright, as RGB.

    Returns the image and the full displayed size of the original, from which the exact
    thumbnail sizes are computed. For JPEG, libjpeg decodes at 1/2, 1/4 or 1/8 scale
    (draft), which is where most of the time goes on a large photo; draft only picks a scale
    whose result is at least the requested size, so quality is never reduced below the box.
    Animated images give their first frame.
    """
    with open_image(path) as image:  # closes the file; the decoded pixels stay usable
        original_size: tuple[int, int] | None = None
        if image.format == "JPEG":
            # JPEG keeps EXIF before the pixels, so the orientation is known before decoding.
            sideways = is_rotated_sideways(image)
            original_size = displayed_size(image)
            target_w, target_h = fit_within(*original_size, box)
            # draft works on the stored (unrotated) pixels, so ask in stored orientation.
            image.draft("RGB", (target_h, target_w) if sideways else (target_w, target_h))
        decode(image)
        upright = flatten_to_rgb(apply_exif_orientation(image))
    # Other formats were decoded at full size (PNG may even keep EXIF after the pixels).
    return upright, original_size or upright.size
