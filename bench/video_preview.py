"""Benchmark: make_video_preview against the same encode as one plain ffmpeg command line.

Run with `.venv/bin/python bench/video_preview.py`. Needs no Django settings.

The source is 60 s of 1080p30 testsrc2 with a sine track (H.264/AAC). Both sides encode the
same 10 s from 6 s (10 %), scaled to 1280x720, x264 veryfast at 1000 kbps, AAC 128k,
faststart; runs alternate so machine load hits both alike. The ratio (goal <= 1.1x) is the
wrapper's overhead: two ffprobe calls and Python. For reference it also times x264 preset
"fast", which previews.py does not use.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yesgoddess.media import previews  # noqa: E402
from yesgoddess.media.previews import make_video_preview  # noqa: E402

RUNS = 3
GOAL = 1.1


def make_source(path: Path) -> None:
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=60",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip


def plain_command(src: Path, out: Path, preset: str = previews.VIDEO_PRESET) -> list[str]:
    """What an operator would type for the same preview."""
    return [
        "ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", "6", "-t", "10", "-i", str(src),
        "-map", "0:v:0", "-map", "0:a:0", "-vf", "scale=1280:720,setsar=1,format=yuv420p",
        "-c:v", "libx264", "-preset", preset,
        "-b:v", previews.VIDEO_BITRATE, "-maxrate", previews.VIDEO_MAXRATE, "-bufsize", previews.VIDEO_BUFSIZE,
        "-c:a", "aac", "-b:a", previews.AAC_BITRATE, "-movflags", "+faststart", str(out),
    ]  # fmt: skip


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="yg-bench-") as workdir:
        work = Path(workdir)
        src = work / "source.mp4"
        print("generating 60 s of 1080p30 testsrc2 + sine ...", flush=True)
        make_source(src)
        ours, plain, fast = [], [], []
        for _ in range(RUNS):
            ours.append(timed(lambda: make_video_preview(src, work / "ours.mp4")))
            plain.append(timed(lambda: subprocess.run(plain_command(src, work / "plain.mp4"), check=True)))
            fast.append(timed(lambda: subprocess.run(plain_command(src, work / "fast.mp4", "fast"), check=True)))
        result = make_video_preview(src, work / "ours.mp4")
        plain_size = (work / "plain.mp4").stat().st_size
        fast_size = (work / "fast.mp4").stat().st_size
    ours_s, plain_s, fast_s = statistics.median(ours), statistics.median(plain), statistics.median(fast)
    ratio = ours_s / plain_s
    print(f"preview: {result['width']}x{result['height']} {result['duration']:.2f} s, {result['video_codec']}/"
          f"{result['audio_codec']}, {result['bitrate'] / 1000:.0f} kbps, {result['size_bytes']} B")  # fmt: skip
    print(f"median of {RUNS}: make_video_preview {ours_s:.2f} s  plain ffmpeg {plain_s:.2f} s  (plain {plain_size} B)")
    print(f"ratio {ratio:.3f}x (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})")
    print(f"for reference, preset fast: {fast_s:.2f} s ({fast_s / plain_s:.2f}x veryfast), {fast_size} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
