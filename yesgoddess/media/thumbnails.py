"""Thumbnails: small/medium/large JPEGs fitted in 200/400/800 px boxes, never enlarged.

Every asset type ends up as one upright RGB picture (the image itself, a video frame, the
first PDF page, the audio waveform or a type icon), which is then resized: the large
thumbnail from that picture, medium and small from the large one (cheaper, and the large
one is already a good-quality reduction).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from .av import grab_video_frame
from .errors import MediaError
from .icons import draw_type_icon, icon_label
from .imaging import fit_within, load_upright_rgb
from .pdf import render_first_page
from .tools import ensure_not_empty
from .waveform import render_waveform
from .writes import parallel_map, publish_jpegs

__all__ = ["SIZES", "make_thumbnails", "render_waveform"]

SIZES = {"small": 200, "medium": 400, "large": 800}
LARGEST_BOX = max(SIZES.values())
# Bicubic is Image.thumbnail()'s own filter; Pillow's resize is area-aware (its kernel widens with
# the reduction), so it does not alias at 4:1, and it costs about two thirds of Lanczos.
_RESAMPLE = Image.Resampling.BICUBIC


def resize_to_sizes(picture: Image.Image, full_size: tuple[int, int]) -> dict[str, Image.Image]:
    """One image per SIZES entry, each smaller one resized from the largest, in parallel.

    Target sizes come from the original's full size (not the possibly reduced decode) so they
    are exactly what Image.thumbnail() on the full picture would give. Pillow releases the GIL
    while resizing, so the smaller sizes really do run side by side.
    """
    targets = {name: fit_within(*full_size, box) for name, box in SIZES.items()}
    largest = max(SIZES, key=SIZES.__getitem__)
    large = _resized(picture, targets[largest])
    smaller = [name for name in SIZES if name != largest]
    resized = parallel_map(lambda name: _resized(large, targets[name]), smaller)
    return {largest: large, **dict(zip(smaller, resized, strict=True))}


def _resized(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    return picture if picture.size == size else picture.resize(size, _RESAMPLE)


def _picture_for(src: Path, asset_type: str, mime: str, workdir: Path, timeout: float) -> tuple[str, Path | None]:
    """Which kind of picture stands for the asset, and the file it is in (None: draw an icon)."""
    if asset_type == "IMAGE":
        return "image", src
    if asset_type == "VIDEO":
        return "video-frame", grab_video_frame(src, workdir, timeout=timeout)
    if asset_type == "AUDIO":
        return "waveform", render_waveform(src, workdir / "waveform.png", timeout=timeout)
    if asset_type == "DOCUMENT" and mime.split(";", 1)[0].strip().lower() == "application/pdf":
        return "pdf-page", render_first_page(src, workdir, longest_side=LARGEST_BOX, timeout=timeout)
    if asset_type in {"DOCUMENT", "THREE_D", "OTHER"}:
        return "type-icon", None
    raise MediaError(f"Unknown asset type {asset_type!r}")


def make_thumbnails(src: Path, asset_type: str, mime: str, out_dir: Path, *, timeout: float = 120) -> dict:
    """Write small.jpg, medium.jpg and large.jpg into out_dir and describe them.

    Returns {"source": "image" | "video-frame" | "pdf-page" | "waveform" | "type-icon",
             "sizes": {name: {"path": str, "width": int, "height": int}}}.
    Raises MediaError with a readable reason for any file that cannot be turned into a picture;
    out_dir then holds no new or partial files.
    """
    src, out_dir = Path(src), Path(out_dir)
    ensure_not_empty(src)
    with tempfile.TemporaryDirectory(prefix="yg-thumb-") as workdir:
        source, picture_path = _picture_for(src, asset_type, mime, Path(workdir), timeout)
        if picture_path is None:
            picture = draw_type_icon(icon_label(mime, src), asset_type)
            full_size = picture.size
        else:
            picture, full_size = load_upright_rgb(picture_path, LARGEST_BOX)
    images = resize_to_sizes(picture, full_size)
    written = publish_jpegs(images, out_dir)
    sizes = {
        name: {"path": str(written[name]), "width": images[name].width, "height": images[name].height} for name in SIZES
    }
    return {"source": source, "sizes": sizes}
