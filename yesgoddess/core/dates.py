"""Date helpers shared by the domain apps. Every stored time is UTC."""

from __future__ import annotations

from datetime import UTC, datetime, time


def start_of_day(moment: datetime) -> datetime:
    """Midnight UTC of the UTC day `moment` falls on."""
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)
