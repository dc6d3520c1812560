"""Benchmark: convert_image on a 12-megapixel JPEG, and the AVIF encoder speed setting.

Run with `.venv/bin/python bench/image_variants.py`. Needs no Django settings.

Prints the wall time of the whole variant set (full WebP + AVIF, responsive WebP + JPEG),
then the full-size AVIF encode alone at the chosen libaom speed and at Pillow's default
(speed 6), with size and PSNR against the source, on two pictures: a grainy one (the
thumbnail benchmark's worst case) and a smooth one (closer to a typical photo).
"""

from __future__ import annotations

import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# _avif: the only place libavif reports which AV1 encoder it was built with.
from PIL import Image, ImageChops, ImageFilter, ImageStat, _avif, features  # noqa: E402

from yesgoddess.media.conversion import convert_image  # noqa: E402
from yesgoddess.media.image_variants import AVIF_QUALITY, AVIF_SPEED  # noqa: E402

RUNS = 3
SOURCE_SIZE = (4000, 3000)
PILLOW_DEFAULT_AVIF_SPEED = 6


def photo_like(grain: float) -> Image.Image:
    """Gradients with `grain` (0..1) of noise blended in."""
    red = Image.linear_gradient("L").resize(SOURCE_SIZE)
    green = Image.linear_gradient("L").rotate(90).resize(SOURCE_SIZE)
    blue = Image.radial_gradient("L").resize(SOURCE_SIZE)
    base = Image.merge("RGB", (red, green, blue))
    noise = Image.merge("RGB", [Image.effect_noise(SOURCE_SIZE, 40) for _ in range(3)])
    return Image.blend(base, noise, grain)


def psnr(reference: Image.Image, encoded: bytes) -> float:
    with Image.open(io.BytesIO(encoded)) as decoded:
        difference = ImageChops.difference(reference, decoded.convert("RGB"))
    mse = sum(ImageStat.Stat(difference).sum2) / (3 * reference.width * reference.height)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def median_seconds(run, runs: int = RUNS) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def avif_line(label: str, picture: Image.Image, speed: int) -> None:
    encoded = io.BytesIO()
    started = time.perf_counter()
    picture.save(encoded, "AVIF", quality=AVIF_QUALITY, speed=speed)
    seconds = time.perf_counter() - started
    data = encoded.getvalue()
    print(f"  {label:<28} {seconds:6.2f} s  {len(data) / 1e6:6.2f} MB  PSNR {psnr(picture, data):5.2f} dB")


def main() -> int:
    if not features.check("avif"):
        print("Pillow was built without AVIF support")
        return 1
    print(f"Pillow AVIF: libavif {features.version('avif')}, codecs {_avif.codec_versions()}")
    with tempfile.TemporaryDirectory(prefix="yg-bench-") as workdir:
        work = Path(workdir)
        pictures = {"grainy": photo_like(0.35), "smooth": photo_like(0.35).filter(ImageFilter.GaussianBlur(2))}
        for name, picture in pictures.items():
            src = work / f"{name}.jpg"
            picture.save(src, "JPEG", quality=90)
            # Compare against what the converter actually reads: the decoded JPEG.
            with Image.open(src) as decoded:
                pictures[name] = decoded.convert("RGB")
            entries = convert_image(src, work / f"out-{name}")
            total = median_seconds(lambda src=src, name=name: convert_image(src, work / f"out-{name}"))
            megabytes = src.stat().st_size / 1e6
            print(f"\n{name} {SOURCE_SIZE[0]}x{SOURCE_SIZE[1]} JPEG q90 ({megabytes:.1f} MB)")
            print(f"  convert_image, {len(entries)} outputs, median of {RUNS}: {total:.2f} s")
            for entry in entries:
                print(f"    {entry['variant']:<11} {entry['width']:>5}x{entry['height']:<5} {entry['size_bytes']:>9} B")
            print(f"  full-size AVIF encode alone (quality {AVIF_QUALITY}):")
            avif_line(f"chosen speed {AVIF_SPEED}", pictures[name], AVIF_SPEED)
            avif_line(f"Pillow default speed {PILLOW_DEFAULT_AVIF_SPEED}", pictures[name], PILLOW_DEFAULT_AVIF_SPEED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
