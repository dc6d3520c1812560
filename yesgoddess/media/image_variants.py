"""Image variants: full-size WebP and AVIF, and responsive widths as WebP plus a JPEG fallback.

File names are fixed per variant ("full.webp", "full.avif", "w800.webp", "w800.jpg"), so a
second run overwrites the first instead of adding a second set, and no two variants can
ever share a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .encoding import Deadline
from .errors import MediaError
from .imaging import apply_exif_orientation, decode, flatten_to_rgb, has_transparency, open_image
from .staging import staged_outputs
from .writes import JPEG_QUALITY, parallel_map

RESPONSIVE_WIDTHS = (400, 800, 1200, 1920)
WEBP_QUALITY = 85
WEBP_METHOD = 4
# AVIF's quality scale is not JPEG's: 65 lands near WebP q85 in PSNR on photos at a smaller
# size (q85 would be larger than the WebP, defeating the point of a second format).
AVIF_QUALITY = 65
# libaom speed (0 slowest .. 10 fastest); Pillow's default is 6. On a 12-megapixel photo
# (bench/image_variants.py, 2 cores) speed 8 encodes in 0.4-0.7 s instead of 1.3-6 s: the
# same size and PSNR on smooth content; on grainy content 12 % smaller at 3 dB lower PSNR.
# Speed 6 would make the AVIF most of the whole conversion's time on grainy pictures.
AVIF_SPEED = 8
# Lanczos after a cheap integer box reduction: close to a full Lanczos for large reductions
# at a fraction of the cost.
_RESAMPLE = Image.Resampling.LANCZOS
_REDUCING_GAP = 3.0
# An ICC profile only describes the pixels if the colour model did not change on the way.
_ICC_KEEPING_MODES = {"RGB", "RGBA", "RGBX", "P", "PA"}

CONTENT_TYPES = {"webp": "image/webp", "avif": "image/avif", "jpg": "image/jpeg"}


@dataclass(frozen=True)
class Variant:
    name: str  # "webp", "avif", "w400_webp", "w400_jpeg"
    filename: str  # "full.webp", "full.avif", "w400.webp", "w400.jpg"
    image: Image.Image
    encode: Callable[[Image.Image, Path], None]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.filename.rsplit(".", 1)[1]]


def _keeps_alpha(image: Image.Image) -> bool:
    """True when the picture has transparency that is actually used (not an all-opaque alpha)."""
    if not has_transparency(image):
        return False
    try:
        low, _high = image.convert("RGBA").getchannel("A").getextrema()
    except ValueError:
        return False
    return low < 255


def load_upright_picture(src: Path) -> tuple[Image.Image, bytes | None]:
    """The decoded picture, EXIF rotation applied, as RGBA when it has real transparency else RGB.

    Returns it with the ICC profile to carry over (None when there is none or the colour model
    changed, e.g. CMYK). Animated images give their first frame. No other metadata survives.
    """
    with open_image(src) as image:
        decode(image)
        icc = image.info.get("icc_profile") if image.mode in _ICC_KEEPING_MODES else None
        upright = apply_exif_orientation(image)
        picture = upright.convert("RGBA") if _keeps_alpha(upright) else flatten_to_rgb(upright)
    # EXIF, XMP and comments ride along in .info and some encoders copy them by default:
    # a public derivative must not carry the original's GPS position or camera serial.
    picture.info = {}
    return picture, icc or None


def _webp_encoder(icc: bytes | None) -> Callable[[Image.Image, Path], None]:
    def encode(image: Image.Image, path: Path) -> None:
        image.save(path, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, icc_profile=icc or b"")

    return encode


def _avif_encoder(icc: bytes | None, quality: int, speed: int) -> Callable[[Image.Image, Path], None]:
    def encode(image: Image.Image, path: Path) -> None:
        image.save(path, "AVIF", quality=quality, speed=speed, icc_profile=icc or b"")

    return encode


def _jpeg_encoder(icc: bytes | None) -> Callable[[Image.Image, Path], None]:
    def encode(image: Image.Image, path: Path) -> None:
        # JPEG has no alpha: flatten onto white, as the thumbnails do.
        flatten_to_rgb(image).save(path, "JPEG", quality=JPEG_QUALITY, optimize=True, icc_profile=icc)

    return encode


def responsive_sizes(width: int, height: int) -> dict[int, tuple[int, int]]:
    """Target size per responsive width strictly below the source width (never enlarged)."""
    return {w: (w, max(1, round(height * w / width))) for w in RESPONSIVE_WIDTHS if w < width}


def resize_cascade(picture: Image.Image, sizes: dict[int, tuple[int, int]]) -> dict[int, Image.Image]:
    """Each width resized from the next larger one: only the largest step reads the full picture."""
    resized: dict[int, Image.Image] = {}
    current = picture
    for width in sorted(sizes, reverse=True):
        current = current.resize(sizes[width], _RESAMPLE, reducing_gap=_REDUCING_GAP)
        resized[width] = current
    return resized


def plan_variants(picture: Image.Image, icc: bytes | None, *, avif_quality: int, avif_speed: int) -> list[Variant]:
    webp, jpeg = _webp_encoder(icc), _jpeg_encoder(icc)
    variants = [
        Variant("webp", "full.webp", picture, webp),
        Variant("avif", "full.avif", picture, _avif_encoder(icc, avif_quality, avif_speed)),
    ]
    resized = resize_cascade(picture, responsive_sizes(*picture.size))
    for width in sorted(resized):
        variants.append(Variant(f"w{width}_webp", f"w{width}.webp", resized[width], webp))
        variants.append(Variant(f"w{width}_jpeg", f"w{width}.jpg", resized[width], jpeg))
    return variants


def convert_image(
    src: str | Path,
    out_dir: str | Path,
    *,
    timeout: float = 300,
    avif_speed: int = AVIF_SPEED,
    avif_quality: int = AVIF_QUALITY,
) -> list[dict]:
    """Write the WebP/AVIF/responsive variants of an image into out_dir and describe them.

    Always: "webp" (full.webp) and "avif" (full.avif) at full size. Then for each of
    400/800/1200/1920 px narrower than the source: "w<W>_webp" (w<W>.webp) and "w<W>_jpeg"
    (w<W>.jpg, the fallback for clients without WebP). EXIF orientation is applied;
    transparency is kept in WebP/AVIF and flattened onto white in JPEG.
    Each entry: {"path": str, "variant": str, "content_type": str, "width": int, "height": int,
                 "size_bytes": int}, full-size variants first, then by width.
    `timeout` is checked between decoding, encoding and publishing (Pillow encodes in-process
    and cannot be interrupted mid-encode): over budget, nothing is published.
    Raises MediaError (and leaves no new file in out_dir) for anything that is not a readable image.
    """
    deadline = Deadline(timeout)
    if not 0 <= avif_speed <= 10:
        raise MediaError("avif_speed must be between 0 (slowest) and 10 (fastest)")
    if not 0 <= avif_quality <= 100:
        raise MediaError("avif_quality must be between 0 and 100")
    src, out_dir = Path(src), Path(out_dir)
    picture, icc = load_upright_picture(src)
    variants = plan_variants(picture, icc, avif_quality=avif_quality, avif_speed=avif_speed)
    finals = [out_dir / variant.filename for variant in variants]
    deadline.remaining()
    with staged_outputs(finals) as temps:
        # Pillow releases the GIL while encoding, so the WebP/JPEG encodes run beside the
        # (itself multi-threaded) AVIF encode.
        parallel_map(lambda pair: _encode(*pair), list(zip(variants, temps, strict=True)))
        deadline.remaining()
    return [
        {
            "path": str(final),
            "variant": variant.name,
            "content_type": variant.content_type,
            "width": variant.image.width,
            "height": variant.image.height,
            "size_bytes": final.stat().st_size,
        }
        for variant, final in zip(variants, finals, strict=True)
    ]


def _encode(variant: Variant, path: Path) -> None:
    # Each encode gets its own Image object: Image.save() stores its options on the object
    # (im.encoderinfo), so two threads saving one object (full.webp and full.avif share the
    # picture) swap each other's quality settings. Measured: AVIF came out at WebP's q85.
    try:
        variant.encode(variant.image.copy(), path)
    except (OSError, ValueError) as exc:
        raise MediaError(f"Could not encode the {variant.name} variant ({exc})") from exc
