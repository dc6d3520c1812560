"""Printing integer cents for people."""

from __future__ import annotations


def dollars(cents: int) -> str:
    """ "$1,234.56" ("-$0.50" for a negative amount)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}${cents // 100:,}.{cents % 100:02d}"
