"""Fixtures for the media tests: every input file is generated here, nothing is checked in.

These tests touch neither the database nor Redis, so the project-wide autouse Redis flush is
replaced by a no-op: the media tests then run without a Redis server and never empty the
Redis database another test run may be using.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import samples


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    yield


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-samples")


@pytest.fixture(scope="session")
def mp4_file(media_dir: Path) -> Path:
    """4 s of 1280x720 test pattern at 25 fps with a 440 Hz AAC track."""
    return samples.make_video(media_dir / "clip.mp4", size="1280x720", seconds=4, with_audio=True)


@pytest.fixture(scope="session")
def mp3_file(media_dir: Path) -> Path:
    return samples.make_audio(
        media_dir / "song.mp3",
        seconds=3,
        tags={"title": "Test Tone", "artist": "YesGoddess", "album": "Fixtures", "date": "2024", "track": "3/12"},
    )


@pytest.fixture(scope="session")
def wav_file(media_dir: Path) -> Path:
    return samples.make_audio(media_dir / "tone.wav", seconds=2)


# --- Previews, conversion and watermarking ------------------------------------------------------


@pytest.fixture(scope="session")
def clip_with_audio(media_dir: Path) -> Path:
    """2 s of 320x240 test pattern with an AAC tone."""
    return samples.make_clip(media_dir / "small-with-audio.mp4", seconds=2, with_audio=True)


@pytest.fixture(scope="session")
def clip_without_audio(media_dir: Path) -> Path:
    return samples.make_clip(media_dir / "small-silent.mp4", seconds=2)


@pytest.fixture(scope="session")
def logo_png(media_dir: Path) -> Path:
    return samples.make_logo_png(media_dir / "logo.png")
