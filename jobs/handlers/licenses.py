"""License lifecycle jobs (spec B §5.1-§5.4, §5.6): expiry monitor, auto-expiry,
management, the renewal workflow and its confirmation, performance metrics.

The rules live in `yesgoddess.licensing` (`expiry`, `management`, `renewal_workflow`,
`performance`); each job is one call there.
"""

from __future__ import annotations

from jobs.runtime import set_progress
from yesgoddess.licensing import expiry, management, performance, renewal_workflow


def send_expiry_notices() -> dict[str, int]:
    """license-expiry-monitor: the 90/60/30-day notices once each; ACTIVE -> EXPIRING_SOON."""
    return expiry.send_expiry_notices()


def expire_licenses() -> dict[str, int]:
    """license-auto-expiry: grace periods, expiry, and their messages, once each."""
    return expiry.expire_due_licenses()


def manage_licenses() -> dict[str, int]:
    """license-management: cancel abandoned drafts; auto-renew what is due."""
    return management.manage_licenses()


def run_renewal_workflow() -> dict[str, int]:
    """license-renewal-workflow: every phase, in order; fails (and is retried) if one failed."""
    return renewal_workflow.run_workflow()


def send_renewal_confirmation(*, renewal_id: int) -> dict[str, int]:
    """license-renewal-workflow.confirmation: one accepted renewal's confirmation, once."""
    sent = renewal_workflow.send_renewal_confirmation(renewal_id)
    return {"renewal_id": renewal_id, "sent": sent}


def calculate_performance_metrics(*, date: str | None = None) -> dict[str, int]:
    """license-performance-metrics: metrics of every license in force and the snapshots
    ending on `date` (default yesterday, UTC). Idempotent for a given date."""
    return performance.calculate(performance.target_date(date), progress=set_progress)
