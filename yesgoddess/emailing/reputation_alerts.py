"""Reputation alerts (spec C §2.13 as settled by DECISIONS.md): what the daily
`reputation-monitoring` job (02:00) does with the figures of `reputation`.

`check_reputation`: over the email events of the last 30 days (SENT from our email
backend, the rest from the provider's webhooks), per sender domain: the counts, rates
and score of `yesgoddess.emailing.reputation`, stored as one EmailReputationMetric row
per day and domain (a rerun the same day replaces the figures). Then:

- each condition met (bounce, complaint, score, delivery; warning or critical) is
  reported to the admins once per day: an in-app notification to every active staff user,
  created in the transaction that records the condition on the row (`alerted`), and
  one email to the admin addresses, whose marker (`emailed`) is committed before it is
  sent and released if it never went out (so a retry emails, a rerun does not). A
  warning that turns critical the same day is a new condition and is reported;
- at a critical bounce rate, complaint rate or score, running campaigns are paused
  (`yesgoddess.campaigns.services.pause_running_campaigns`), on every run while it lasts,
  except a campaign an operator resumed over conditions at least as bad: their resume
  holds until reputation gets worse (`reputation.worse_than`).

The original's DNS blacklist and SPF/DKIM/DMARC checks were stubs and are out of scope.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction

from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.notifications.fanout import deliver
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import admin_emails, admin_user_ids, build_email, notify

from .models import EmailReputationMetric
from .reputation import CRITICAL, Condition, Figures, conditions, figures_by_domain

log = logging.getLogger(__name__)

WINDOW_DAYS = 30
ALERT_TITLE = "Email Reputation Alert"


def pause_campaigns(reason: str, domain: str, pausing: list[Condition]) -> int:
    """Pause every running campaign, except those an operator resumed over conditions of
    `domain` at least as bad as `pausing`; how many were paused (0 without the campaigns app)."""
    if not apps.is_installed("yesgoddess.campaigns"):
        return 0
    from yesgoddess.campaigns.services import pause_running_campaigns

    conditions = {c.metric: c.value for c in pausing}
    paused = pause_running_campaigns(reason, domain=domain, conditions=conditions)  # the ids it paused
    return len(paused) if isinstance(paused, (list, tuple, set)) else int(paused or 0)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def describe(condition: Condition) -> dict[str, Any]:
    shown = str(condition.value) if condition.metric == "reputation_score" else percent(condition.value)
    limit = str(condition.threshold) if condition.metric == "reputation_score" else percent(condition.threshold)
    return {**condition.as_dict(), "shown": shown, "limit": limit}


def alert_context(row: EmailReputationMetric, new: list[Condition]) -> dict[str, Any]:
    return {
        "domain": row.sender_domain,
        "date": row.date,
        "window_days": row.window_days,
        "sent": row.sent,
        "delivered": row.delivered,
        "bounced": row.bounced,
        "complained": row.complained,
        "opened": row.opened,
        "clicked": row.clicked,
        "bounce_rate": percent(row.bounce_rate),
        "complaint_rate": percent(row.complaint_rate),
        "delivery_rate": percent(row.delivery_rate),
        "open_rate": percent(row.open_rate),
        "click_rate": percent(row.click_rate),
        "score": row.reputation_score,
        "alerts": [describe(c) for c in new],
        "critical": any(c.severity == CRITICAL for c in new),
        "campaigns_paused": row.campaigns_paused,
        "admin_url": f"{settings.API_URL}/admin/emailing/emailreputationmetric/",
    }


def alert_text(new: list[Condition]) -> str:
    return "\n\n".join(f"{c.message}: {c.recommendation}" for c in new)


def record_day(
    day: Any, domain: str, figures: Figures, found: list[Condition], paused: int, now: datetime
) -> tuple[EmailReputationMetric, list[Condition], list[Condition]]:
    """Upsert the day's row and notify admins in-app of the conditions not yet reported
    today, in one transaction; return the row, the conditions notified now and those
    whose email is now claimed."""
    values = {**figures.row_values(), "window_days": WINDOW_DAYS, "warnings": [c.as_dict() for c in found]}
    with transaction.atomic():
        EmailReputationMetric.objects.bulk_create(
            [EmailReputationMetric(date=day, sender_domain=domain, computed_at=now, **values)],
            update_conflicts=True,
            unique_fields=["date", "sender_domain"],
            update_fields=[*values, "computed_at"],
        )
        row = EmailReputationMetric.objects.select_for_update().get(date=day, sender_domain=domain)
        notified = [c for c in found if c.key not in row.alerted]
        to_email = [c for c in found if c.key not in row.emailed]
        if paused:
            row.campaigns_paused += paused
        if notified:
            notify(
                admin_user_ids(),
                type=Notification.Type.SYSTEM,
                title=ALERT_TITLE,
                message=alert_text(notified),
                priority=(
                    Notification.Priority.URGENT
                    if any(c.severity == CRITICAL for c in notified)
                    else Notification.Priority.HIGH
                ),
                metadata={"domain": domain, "date": day.isoformat(), "alerts": [c.as_dict() for c in notified]},
                email=False,  # the alert email goes to the admin addresses, below
            )
        row.alerted = [*row.alerted, *(c.key for c in notified)]
        row.emailed = [*row.emailed, *(c.key for c in to_email)]
        row.save(update_fields=["alerted", "emailed", "campaigns_paused"])
    return row, notified, to_email


def email_admins(row: EmailReputationMetric, new: list[Condition]) -> dict[str, int]:
    """One alert email per admin address; if none could be attempted, release the claim
    (so the retry sends it) and raise."""
    addresses = admin_emails()
    result = deliver([build_email("reputation_alert", address, alert_context(row, new)) for address in addresses])
    if result.error is not None and not (result.sent or result.refused or result.in_doubt):
        keys = {c.key for c in new}
        with transaction.atomic():
            locked = EmailReputationMetric.objects.select_for_update().get(pk=row.pk)
            locked.emailed = [key for key in locked.emailed if key not in keys]
            locked.save(update_fields=["emailed"])
    result.raise_error()
    return {"sent": len(result.sent), "refused": len(result.refused)}


def check_reputation(now: datetime, domain: str | None = None, *, progress: Progress = no_progress) -> dict[str, Any]:
    """Figures, alerts and campaign pauses for every sender domain (or only `domain`)."""
    day = now.astimezone(UTC).date()
    figures = figures_by_domain(now - timedelta(days=WINDOW_DAYS), now, domain)
    domains = sorted(set(figures) | {domain or settings.EMAIL_SENDER_DOMAIN})
    counts: dict[str, Any] = {"domains": len(domains), "alerts": 0, "admin_emails": 0, "campaigns_paused": 0}
    scores: dict[str, int] = {}
    for index, name in enumerate(domains):
        these = figures.get(name, Figures())
        found = conditions(these)
        pausing = [c for c in found if c.pauses_campaigns]
        paused = 0
        if pausing:
            reason = f"Email reputation of {name} is critical: " + "; ".join(c.message for c in pausing)
            paused = pause_campaigns(reason, name, pausing)
            log.warning("reputation of domain %s critical: %d campaign(s) paused", name, paused)
        row, notified, to_email = record_day(day, name, these, found, paused, now)
        counts["alerts"] += len(notified)
        counts["campaigns_paused"] += paused
        scores[name] = row.reputation_score
        if to_email:
            counts["admin_emails"] += email_admins(row, to_email)["sent"]
        progress(index + 1, len(domains), "domains")
    counts["scores"] = scores
    return counts
