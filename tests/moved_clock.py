"""`--clock=WHEN`: run the suite with the clock moved to WHEN (ISO 8601, UTC when no
offset is given), to catch tests that pass only on some dates (issue 17).

Each test starts at WHEN and the clock ticks from there. Worker and `manage.py` subprocesses started by the tests
get the same moved clock through `tests/clock_site/sitecustomize.py` (see `subprocess_env`).
A test that freezes time itself (`time_machine` fixture) still does so on top of this.
PostgreSQL's `now()` is not moved: product code takes "now" from Python
(`timezone.now()`), so database time and Python time agree under a moved clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

SITE_DIR = Path(__file__).resolve().parent / "clock_site"
ENV_VAR = "YG_TEST_CLOCK"
_traveller: time_machine.travel | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--clock", default=None, help="start every test at this ISO 8601 moment (UTC by default)")


def parse_clock(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.fixture(autouse=True)
def moved_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under `--clock`, every test starts at the moved moment (so a test run at 23:59 is
    not a test run at 00:03 because the tests before it took four minutes)."""
    global _traveller
    text = request.config.getoption("--clock")
    if not text:
        yield
        return
    _traveller = time_machine.travel(parse_clock(text), tick=True)
    _traveller.start()
    try:
        yield
    finally:
        _traveller.stop()
        _traveller = None


def pytest_report_header(config: pytest.Config) -> str | None:
    text = config.getoption("--clock")
    return f"clock moved to {parse_clock(text).isoformat()}" if text else None


def subprocess_env() -> dict[str, str]:
    """Environment that gives a child Python process the moved clock, as of now."""
    if _traveller is None:
        return {}
    path = os.pathsep.join(p for p in (str(SITE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {ENV_VAR: repr(time.time()), "PYTHONPATH": path}
