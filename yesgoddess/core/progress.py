"""How a long domain workflow reports how far it got, without knowing who listens.

A job handler passes `jobs.runtime.set_progress` (shown on the admin job page); a view,
a command or a test passes nothing and the reports go nowhere."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int | None = None, note: str = "") -> None: ...


def no_progress(done: int, total: int | None = None, note: str = "") -> None:
    """The default listener: progress reported outside a job is dropped."""
