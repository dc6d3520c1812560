"""license-management (spec B §5.4; DECISIONS "Licenses": one owner per transition), daily.

Two steps, in this order: cancel the drafts abandoned for more than 90 days
(`expiry.cancel_stale_drafts`), then auto-renew the licenses that are due
(`renewals.auto_renew_due_licenses`: DECISIONS puts auto-renewal here, not in the renewal
workflow). The expiry notices and end of term have their own jobs (`expiry`).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from . import expiry, renewals


def manage_licenses(now: datetime | None = None) -> dict[str, int]:
    """Cancel stale drafts, then auto-renew what is due; the counts of both steps."""
    now = now or timezone.now()
    counts = {"drafts_canceled": expiry.cancel_stale_drafts(now)}
    counts.update({f"auto_renew_{key}": value for key, value in renewals.auto_renew_due_licenses(now=now).items()})
    return counts
