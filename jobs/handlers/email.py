"""Handlers of the email jobs: `email-digest` (bulk emails kept for a daily/weekly
digest), `message-digest` (unread messages) and `reputation-monitoring`.

The workflows live in `yesgoddess.emailing.digest`, `yesgoddess.messaging.digest` and
`yesgoddess.emailing.reputation_alerts`; these check the arguments and make one call.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from jobs.errors import JobInputError
from jobs.runtime import set_progress
from yesgoddess.campaigns.models import DigestFrequency as EmailDigestFrequency
from yesgoddess.emailing import digest as email_digest
from yesgoddess.emailing import reputation_alerts
from yesgoddess.messaging import digest as message_digest
from yesgoddess.messaging.models import DigestFrequency as MessageDigestFrequency


def send_email_digests(*, frequency: str = EmailDigestFrequency.DAILY, resume: bool = False) -> dict[str, Any]:
    """email-digest: send each user due a digest one email of their deferred bulk emails."""
    if frequency not in email_digest.FREQUENCIES:
        raise JobInputError(f"frequency must be one of {', '.join(email_digest.FREQUENCIES)}, not {frequency!r}.")
    return email_digest.send_due_digests(frequency, resume=resume, progress=set_progress)


def send_message_digests(*, frequency: str = "DAILY") -> dict[str, Any]:
    """message-digest: unread messages since the last digest, grouped by thread, to users
    who chose DAILY (or WEEKLY) message digests; once per user and period."""
    frequency = frequency.upper() if isinstance(frequency, str) else frequency
    if frequency not in MessageDigestFrequency.values:
        raise JobInputError(f"frequency must be one of {', '.join(MessageDigestFrequency.values)}, got {frequency!r}.")
    return message_digest.send_period_digests(frequency, timezone.now(), progress=set_progress)


def monitor_email_reputation(*, domain: str | None = None) -> dict[str, Any]:
    """reputation-monitoring: 30-day bounce/complaint/delivery rates and score per sender
    domain, stored daily; admins alerted once per condition a day; campaigns paused at
    the critical level. `domain` limits the check to one sender domain."""
    if domain is not None and (not isinstance(domain, str) or not domain.strip()):
        raise JobInputError(f"domain must be a domain name, got {domain!r}.")
    domain = domain.strip().lower() if domain else None
    return reputation_alerts.check_reputation(timezone.now(), domain, progress=set_progress)
