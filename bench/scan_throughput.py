"""Virus scan throughput: MB/s streaming a 50 MB file through clamd with the project's
scanner (yesgoddess.assets.scanner, pyclamd INSTREAM), against ClamAV's own `clamdscan
--stream` on the same file and the same clamd, in the same run.
Usage: python bench/scan_throughput.py [--mb 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _common import median, setup_django

setup_django()

from django.conf import settings  # noqa: E402

from yesgoddess.assets.scanner import scan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    conf = Path(settings.CLAMD_SOCKET).parent / "clamd.conf"
    with tempfile.NamedTemporaryFile(suffix=".bin") as sample:
        # Compressible-but-not-trivial content, like real media containers' mixed sections.
        block = os.urandom(1024 * 1024 // 2) + bytes(range(256)) * 2048
        for _ in range(options.mb):
            sample.write(block)
        sample.flush()
        size_mb = os.path.getsize(sample.name) / 1e6
        ours, theirs = [], []
        for _ in range(options.rounds):
            began = time.perf_counter()
            with open(sample.name, "rb") as fh:
                verdict = scan(fh, settings.CLAMD_SOCKET)
            ours.append(time.perf_counter() - began)
            assert verdict.clean
            began = time.perf_counter()
            done = subprocess.run(
                ["clamdscan", "-c", str(conf), "--stream", "--no-summary", sample.name], capture_output=True, text=True
            )
            theirs.append(time.perf_counter() - began)
            assert done.returncode == 0, done.stdout + done.stderr
    ours_rate, their_rate = size_mb / median(ours), size_mb / median(theirs)
    print(
        f"scan throughput ({size_mb:.0f} MB, median of {options.rounds}): project scanner {ours_rate:.0f} MB/s, "
        f"clamdscan --stream {their_rate:.0f} MB/s, ratio {ours_rate / their_rate:.2f}x (goal >= 0.8x)"
    )


if __name__ == "__main__":
    main()
