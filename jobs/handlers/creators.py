"""Creator job handlers: each turns its queue message into one call to
`yesgoddess.creators.onboarding` or `yesgoddess.creators.reports`, where the rules
(spec B §3) live."""

from __future__ import annotations

from typing import Any

from jobs.runtime import set_progress
from yesgoddess.creators.onboarding import send_onboarding_reminders
from yesgoddess.creators.reports import monthly_reports


def remind_creator_onboarding() -> dict[str, int]:
    """creator-onboarding-reminder: nudge approved creators to finish payout onboarding."""
    return send_onboarding_reminders()


def send_monthly_reports(*, month: str | None = None) -> dict[str, Any]:
    """creator-monthly-report: last month's figures to every approved creator, once each.
    `month` ("YYYY-MM") re-runs a past month: only creators without its report get one."""
    return monthly_reports(month, progress=set_progress)
