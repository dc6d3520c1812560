"""Payout onboarding reminders (spec B §3 as settled by DECISIONS.md), run weekly by
creator-onboarding-reminder (`jobs/handlers/creators.py`, Mondays 10:00).

Approved creators whose payout onboarding is still pending/in progress 7 days after they
joined get a reminder, at most one per 7 days and at most 4 in all
(`onboarding_reminders_sent`, `onboarding_reminder_sent_at`).

Sent through `yesgoddess.notifications.fanout`: the markers are committed before a batch is
sent, so a retry after a crash sends nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from yesgoddess.core.dates import start_of_day
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.services import build_email

from .contact import can_email, stage_name
from .models import Creator, CreatorVerificationStatus, OnboardingStatus

ONBOARDING_AFTER = timedelta(days=7)
REMINDER_EVERY_DAYS = 7
MAX_REMINDERS = 4


def onboarding_due(now: datetime):
    # "One per 7 days" by UTC date: a weekly run a few seconds earlier than the last one
    # is still a week later.
    remind_before = start_of_day(now) - timedelta(days=REMINDER_EVERY_DAYS - 1)
    return Creator.objects.filter(
        deleted_at__isnull=True,
        verification_status=CreatorVerificationStatus.APPROVED,
        onboarding_status__in=(OnboardingStatus.PENDING, OnboardingStatus.IN_PROGRESS),
        created_at__lt=now - ONBOARDING_AFTER,
        onboarding_reminders_sent__lt=MAX_REMINDERS,
        user__is_active=True,
        user__deleted_at__isnull=True,
    ).filter(Q(onboarding_reminder_sent_at__isnull=True) | Q(onboarding_reminder_sent_at__lt=remind_before))


def onboarding_context(creator: Creator) -> dict[str, Any]:
    return {
        "stage_name": stage_name(creator),
        "onboarding_url": f"{settings.APP_URL}/dashboard/settings/payouts",
        "earnings_url": f"{settings.APP_URL}/dashboard/earnings",
        "in_progress": creator.onboarding_status == OnboardingStatus.IN_PROGRESS,
        "reminder_number": creator.onboarding_reminders_sent,
        "final": creator.onboarding_reminders_sent >= MAX_REMINDERS,
    }


def send_onboarding_reminders(now: datetime | None = None) -> dict[str, int]:
    """Nudge approved creators to finish payout onboarding (weekly, at most 4 in all)."""
    now = now or timezone.now()
    counts = {"sent": 0, "refused": 0, "unsent": 0, "in_doubt": 0, "no_address": 0}
    previous: dict[int, tuple[int, datetime | None]] = {}

    def claim(rows: list[Creator]) -> list[Creator]:
        with_address = [c for c in rows if can_email(c)]
        counts["no_address"] += len(rows) - len(with_address)
        for creator in with_address:
            previous[creator.pk] = (creator.onboarding_reminders_sent, creator.onboarding_reminder_sent_at)
            creator.onboarding_reminders_sent += 1
            creator.onboarding_reminder_sent_at = now
        Creator.objects.filter(pk__in=[c.pk for c in with_address]).update(
            onboarding_reminders_sent=F("onboarding_reminders_sent") + 1, onboarding_reminder_sent_at=now
        )
        return with_address

    for batch in claimed_batches(onboarding_due(now).select_related("user"), claim):
        result = deliver(
            [build_email("creator_onboarding_reminder", c.user.email, onboarding_context(c)) for c in batch]
        )
        released = [batch[i] for i in result.unsent]
        for creator in released:  # never attempted: back to what it was, for the retry
            creator.onboarding_reminders_sent, creator.onboarding_reminder_sent_at = previous[creator.pk]
        Creator.objects.bulk_update(released, ["onboarding_reminders_sent", "onboarding_reminder_sent_at"])
        result.tally(counts)
        result.raise_error()
    return counts
