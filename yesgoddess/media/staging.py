"""Several output files that appear under their final names together, or not at all.

writes.atomic_path covers one file; a conversion writes a set (every image variant, or
every rendition of one ffmpeg run). All of them are written to hidden temporaries next to
their final names first and renamed only once every one of them is complete, so a failure
half-way leaves the previous set (or nothing), never a mix with half-written files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .writes import new_temp_path


@contextlib.contextmanager
def staged_outputs(finals: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield one temporary path per final path; rename them all into place if the block succeeds.

    Temporaries are removed on any failure (and after a successful rename there are none left).
    A process killed mid-way can leave a hidden ".<name>.*.tmp.<ext>" file, never a file
    under a final name.
    """
    if len(set(finals)) != len(finals):
        raise ValueError("Two outputs share a final path")
    staged: list[Path] = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            staged.append(new_temp_path(final))
        yield staged
        for temp, final in zip(staged, finals, strict=True):
            os.replace(temp, final)
    finally:
        for temp in staged:
            temp.unlink(missing_ok=True)
