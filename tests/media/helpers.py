"""Assertions shared by the media tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

BOXES = {"small": 200, "medium": 400, "large": 800}


def pillow_thumbnail_size(width: int, height: int, box: int) -> tuple[int, int]:
    """The size Pillow's own Image.thumbnail() gives: the independent oracle for our sizes."""
    image = Image.new("1", (width, height))
    image.thumbnail((box, box))
    return image.size


def assert_thumbnails(result: dict, expected: dict[str, tuple[int, int]]) -> None:
    """Reported sizes, files on disk and their real pixel sizes all agree with `expected`."""
    assert set(result["sizes"]) == set(BOXES)
    for name, size in expected.items():
        entry = result["sizes"][name]
        assert (entry["width"], entry["height"]) == size, name
        with Image.open(entry["path"]) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert image.size == size, name
        assert Path(entry["path"]).name == f"{name}.jpg"


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def mean_rgb(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    region = image.convert("RGB").crop(box)
    pixels = region.width * region.height
    sums = [sum(channel.histogram()[value] * value for value in range(256)) for channel in region.split()]
    return tuple(total / pixels for total in sums)  # type: ignore[return-value]
