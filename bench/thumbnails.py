"""Benchmark: make_thumbnails against the naive Pillow path on a 12-megapixel JPEG.

Run with `.venv/bin/python bench/thumbnails.py`. Needs no Django settings. Exits non-zero
when the two paths give different thumbnail dimensions.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from yesgoddess.media.thumbnails import SIZES, make_thumbnails  # noqa: E402

RUNS = 7
GOAL = 3.0
SOURCE_SIZE = (4000, 3000)


def make_photo_like_jpeg(path: Path) -> None:
    """Gradient plus noise: incompressible enough that decoding costs what a real photo costs."""
    gradient = Image.linear_gradient("L").resize(SOURCE_SIZE)
    red = gradient
    green = gradient.rotate(90).resize(SOURCE_SIZE)
    blue = Image.radial_gradient("L").resize(SOURCE_SIZE)
    base = Image.merge("RGB", (red, green, blue))
    noise = Image.merge("RGB", [Image.effect_noise(SOURCE_SIZE, 40) for _ in range(3)])
    Image.blend(base, noise, 0.35).save(path, "JPEG", quality=90)


def naive_thumbnails(src: Path, out_dir: Path) -> dict[str, tuple[int, int]]:
    """The obvious way: full decode, then thumbnail() from the original for every size."""
    sizes = {}
    with Image.open(src) as image:
        rgb = image.convert("RGB")
    for name, box in SIZES.items():
        thumb = rgb.copy()
        thumb.thumbnail((box, box))
        thumb.save(out_dir / f"naive-{name}.jpg", "JPEG", quality=85, progressive=True, optimize=True)
        sizes[name] = thumb.size
    return sizes


def our_thumbnails(src: Path, out_dir: Path) -> dict[str, tuple[int, int]]:
    result = make_thumbnails(src, "IMAGE", "image/jpeg", out_dir)
    return {name: (entry["width"], entry["height"]) for name, entry in result["sizes"].items()}


def median_seconds(run: Callable[[], object], runs: int = RUNS) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="yg-bench-") as workdir:
        work = Path(workdir)
        src = work / "photo.jpg"
        make_photo_like_jpeg(src)
        naive_sizes = naive_thumbnails(src, work)
        our_sizes = our_thumbnails(src, work / "ours")
        if naive_sizes != our_sizes:
            print(f"DIMENSIONS DIFFER: naive {naive_sizes} ours {our_sizes}")
            return 1
        megabytes = src.stat().st_size / 1e6
        naive = median_seconds(lambda: naive_thumbnails(src, work))
        ours = median_seconds(lambda: our_thumbnails(src, work / "ours"))
    print(f"source {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} JPEG q90 ({megabytes:.1f} MB), median of {RUNS} runs")
    print(f"identical sizes: {our_sizes}")
    verdict = "met" if naive / ours >= GOAL else "NOT met"
    print(f"naive {naive:.3f} s  ours {ours:.3f} s  speed-up {naive / ours:.2f}x (goal >= {GOAL:g}x: {verdict})")
    # Timing depends on the machine and its load, so only a size mismatch fails the run.
    return 0


if __name__ == "__main__":
    sys.exit(main())
