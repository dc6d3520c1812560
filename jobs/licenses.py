"""License lifecycle jobs (spec B §5.1, §5.2, §5.4; one owner per transition, DECISIONS.md).

The rules live in `yesgoddess.licensing.expiry` and `.renewals`; these functions are
the registry's entry points.
"""

from __future__ import annotations

from django.utils import timezone

from yesgoddess.licensing import expiry, renewals


def send_expiry_notices() -> dict[str, int]:
    """license-expiry-monitor: the 90/60/30-day notices once each; ACTIVE -> EXPIRING_SOON."""
    return expiry.send_expiry_notices()


def expire_licenses() -> dict[str, int]:
    """license-auto-expiry: grace periods, expiry, and their messages, once each."""
    return expiry.expire_due_licenses()


def manage_licenses() -> dict[str, int]:
    """license-management: cancel abandoned drafts; auto-renew what is due."""
    now = timezone.now()
    counts = {"drafts_canceled": expiry.cancel_stale_drafts(now)}
    counts.update({f"auto_renew_{k}": v for k, v in renewals.auto_renew_due_licenses(now=now).items()})
    return counts
