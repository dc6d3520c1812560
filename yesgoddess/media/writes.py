"""Atomic output: files appear under their final name complete, or not at all.

Each output is first written to a hidden temporary file in the same directory (so the final
os.replace() is a rename on one filesystem, which is atomic) and temporaries are removed on
any failure, so a crashed or failed job never leaves a half-written thumbnail behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from PIL import Image

JPEG_QUALITY = 85
T = TypeVar("T")
R = TypeVar("R")


def new_temp_path(final: Path) -> Path:
    """An empty, uniquely named hidden file next to `final`, with the same suffix."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}")
    os.close(fd)
    # mkstemp makes the file 0600; derived files are published like any other file.
    os.chmod(name, 0o644)
    return Path(name)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes `final` only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = new_temp_path(final)
    try:
        yield temp
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Thumbnail encoding: quality 85, baseline, optimised Huffman tables, no metadata.

    Not progressive: at 800 px and below progressive loading shows little, and encoding it
    cost a tenth of the whole thumbnail job (bench/thumbnails.py)."""
    image.save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)


def parallel_map(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """function over items in threads; Pillow releases the GIL while resizing and encoding."""
    items = list(items)
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(function, items))


def publish_jpegs(images: dict[str, Image.Image], out_dir: Path) -> dict[str, Path]:
    """Write each image as out_dir/<name>.jpg; all are encoded before any is renamed into place.

    Encoding everything first means a failure while encoding leaves the previous set (or
    nothing) in place rather than a mix of new and missing files.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name in images:
            staged[name] = new_temp_path(out_dir / f"{name}.jpg")
        parallel_map(lambda name: save_jpeg(images[name], staged[name]), list(images))
        published = {}
        for name, temp in staged.items():
            published[name] = out_dir / f"{name}.jpg"
            os.replace(temp, published[name])
        return published
    finally:
        for temp in staged.values():
            temp.unlink(missing_ok=True)
