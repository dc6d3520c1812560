"""Creating in-app notifications and sending templated email.

Every email is a Django template pair, `email/<name>.txt` and `email/<name>.html`, with
the subject on the first line of `email/<name>.subject.txt`. `send_templated_email`
reports what really happened: it returns how many messages the backend accepted and
lets a delivery error propagate, so a job retries instead of counting a failure as sent.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string

from .models import EmailFrequency, Notification, NotificationPreference

log = logging.getLogger(__name__)


def notify(
    user_ids: Iterable[int],
    *,
    type: str,
    title: str,
    message: str,
    priority: str = Notification.Priority.MEDIUM,
    action_url: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Create one in-app notification per user; return how many were created."""
    rows = [
        Notification(
            user_id=user_id,
            type=type,
            title=title,
            message=message,
            priority=priority,
            action_url=action_url,
            metadata=metadata,
        )
        for user_id in dict.fromkeys(user_ids)
    ]
    Notification.objects.bulk_create(rows)
    return len(rows)


def email_frequencies(user_ids: Iterable[int], type: str) -> dict[int, str]:
    """Each user's email frequency for notification `type` (one query; default IMMEDIATE)."""
    ids = list(dict.fromkeys(user_ids))
    chosen = dict(
        NotificationPreference.objects.filter(user_id__in=ids, type=type).values_list("user_id", "email_frequency")
    )
    return {user_id: chosen.get(user_id, EmailFrequency.IMMEDIATE) for user_id in ids}


def admin_user_ids() -> list[int]:
    return list(get_user_model().objects.filter(is_staff=True, is_active=True).values_list("pk", flat=True))


def admin_emails() -> list[str]:
    """ADMIN_EMAILS when set, else the addresses of active staff users."""
    if settings.ADMIN_EMAILS:
        return list(settings.ADMIN_EMAILS)
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(users.values_list("email", flat=True))


def render_email(name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text body, html body) of template `name` rendered with `context`."""
    subject = render_to_string(f"email/{name}.subject.txt", context).strip().splitlines()[0]
    return subject, render_to_string(f"email/{name}.txt", context), render_to_string(f"email/{name}.html", context)


def build_email(name: str, to: str, context: dict[str, Any]) -> EmailMultiAlternatives:
    """One message of template `name` to one address (text with an HTML alternative)."""
    subject, text, html = render_email(name, context)
    message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [to])
    message.attach_alternative(html, "text/html")
    return message


def send_each(messages: Sequence[EmailMessage]) -> list[bool]:
    """Send messages over one connection per EMAIL_BATCH_SIZE; say which were accepted.

    A message the server refuses (a bad recipient, a rejected message) is False and the
    rest still go; failing to reach the server at all raises, so the job retries. Callers
    mark a recipient as sent only where the answer is True.
    """
    results: list[bool] = []
    size = settings.EMAIL_BATCH_SIZE
    for start in range(0, len(messages), size):
        with get_connection() as connection:
            for message in messages[start : start + size]:
                try:
                    results.append(bool(connection.send_messages([message])))
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                    log.warning("email refused by the server: %s", type(exc).__name__)
                    results.append(False)
    return results


def send_templated_email(name: str, recipients: Iterable[str], context: dict[str, Any]) -> int:
    """Send template `name` to each recipient (one message each, one connection)."""
    to = [address for address in dict.fromkeys(recipients) if address]
    if not to:
        return 0
    subject, text, html = render_email(name, context)
    messages = []
    for address in to:
        message = EmailMultiAlternatives(subject, text, settings.DEFAULT_FROM_EMAIL, [address])
        message.attach_alternative(html, "text/html")
        messages.append(message)
    with get_connection() as connection:
        sent = connection.send_messages(messages) or 0
    return sent


def alert_admins(
    *,
    title: str,
    message: str,
    email_template: str,
    context: dict[str, Any],
    type: str = Notification.Type.SYSTEM,
    priority: str = Notification.Priority.URGENT,
    metadata: dict[str, Any] | None = None,
) -> dict[str, int]:
    """In-app notification to every admin and an email to the admin addresses."""
    notified = notify(admin_user_ids(), type=type, title=title, message=message, priority=priority, metadata=metadata)
    emailed = send_templated_email(email_template, admin_emails(), context)
    return {"admins_notified": notified, "admin_emails_sent": emailed}
