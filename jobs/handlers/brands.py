"""Brand job handlers: each turns its queue message into one call to
`yesgoddess.brands.lifecycle`, where the rules (spec B §2) live."""

from __future__ import annotations

from typing import Any

from yesgoddess.brands.lifecycle import purge_deleted_brands, send_re_engagement, send_verification_digest


def remind_brand_verifications() -> dict[str, Any]:
    """brand-verification-reminder: the admins' daily summary of brands awaiting verification."""
    return send_verification_digest()


def check_brand_inactivity() -> dict[str, int]:
    """brand-inactivity-check: re-engage verified brands inactive for 90 days (once per 90 days)."""
    return send_re_engagement()


def cleanup_brand_data() -> dict[str, int]:
    """brand-data-cleanup: delete brands soft-deleted over 90 days ago, or anonymise them
    when other records still reference them."""
    return purge_deleted_brands()
