"""Creating in-app notifications and sending templated email.

Every email is a Django template pair, `email/<name>.txt` and `email/<name>.html`, with
the subject on the first line of `email/<name>.subject.txt`. `send_templated_email`
reports what really happened: it returns how many messages the backend accepted and
lets a delivery error propagate, so a job retries instead of counting a failure as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.template.loader import render_to_string

from yesgoddess.emailing.message import TemplateEmail

from .models import EmailFrequency, EmailStatus, Notification, NotificationPreference

log = logging.getLogger(__name__)


FLUSH_JOB = "notification-delivery"
FLUSH_DEDUP_KEY = "flush"


# Message notifications are never emailed by the notification flows: the message-digest
# job emails the messages themselves (spec C §2.3: "MESSAGE: no email").
NOT_EMAILED_TYPES = frozenset({Notification.Type.MESSAGE})


def email_route(frequency: str, type: str | None = None) -> str:
    """The email status a new notification gets from its recipient's preference for its type."""
    if type in NOT_EMAILED_TYPES:
        return EmailStatus.NONE
    if frequency == EmailFrequency.IMMEDIATE:
        return EmailStatus.PENDING
    if frequency in (EmailFrequency.DAILY, EmailFrequency.WEEKLY):
        return EmailStatus.DIGEST
    return EmailStatus.NONE


def schedule_flush() -> str:
    """Make sure one notification-delivery flush is queued (deduplicated): many pending
    emails, one job. Call it after the rows are committed (notify does)."""
    from jobs.api import enqueue

    return enqueue(FLUSH_JOB, dedup_key=FLUSH_DEDUP_KEY)


def notify(
    user_ids: Iterable[int],
    *,
    type: str,
    title: str,
    message: str,
    priority: str = Notification.Priority.MEDIUM,
    action_url: str | None = None,
    metadata: dict[str, Any] | None = None,
    email: bool = True,
) -> int:
    """Create one in-app notification per user (one insert); return how many were created.

    In-app is always on. By email, each recipient's preference for `type` decides:
    IMMEDIATE -> sent by the notification-delivery flush (one deduplicated job for all
    pending rows, enqueued after commit), DAILY/WEEKLY -> left to the digest, OFF ->
    none. `email=False`: the caller sends its own email for this event, so none here.
    MESSAGE notifications are never emailed here (message-digest emails the messages).
    """
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
    return notify_each(rows, email=email)


def notify_each(rows: Iterable[Notification], *, email: bool = True) -> int:
    """`notify` for notifications that differ per recipient (unsaved rows, each with its
    user, type, text and metadata): one insert, and by email each recipient's preference
    for the row's type decides, as in `notify` (one preference query per type)."""
    rows = list(rows)
    if not rows:
        return 0
    for type in {row.type for row in rows}:
        of_type = [row for row in rows if row.type == type]
        wanted = email and type not in NOT_EMAILED_TYPES
        frequencies = email_frequencies((row.user_id for row in of_type), type) if wanted else {}
        for row in of_type:
            row.email_status = email_route(frequencies[row.user_id], type) if wanted else EmailStatus.NONE
    Notification.objects.bulk_create(rows)
    if any(row.email_status == EmailStatus.PENDING for row in rows):
        # robust: the rows are committed whatever Redis says; the sweep cron picks up a
        # flush that could not be enqueued.
        transaction.on_commit(schedule_flush, robust=True)
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


def build_email(
    name: str, to: str, context: dict[str, Any], headers: dict[str, str] | None = None
) -> EmailMultiAlternatives:
    """One message of template `name` to one address (text with an HTML alternative).
    `headers`: extra headers, e.g. `emailing.services.list_unsubscribe_headers(...)`."""
    subject, text, html = render_email(name, context)
    message = TemplateEmail(subject, text, settings.DEFAULT_FROM_EMAIL, [to], headers=headers)
    message.attach_alternative(html, "text/html")
    return message


def send_templated_email(name: str, recipients: Iterable[str], context: dict[str, Any]) -> int:
    """Send template `name` to each recipient (one message each, one connection)."""
    to = [address for address in dict.fromkeys(recipients) if address]
    if not to:
        return 0
    subject, text, html = render_email(name, context)
    messages = []
    for address in to:
        message = TemplateEmail(subject, text, settings.DEFAULT_FROM_EMAIL, [address])
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
    """In-app notification to every admin and an email to the admin addresses (the
    dedicated email, so the notification itself is not emailed again)."""
    notified = notify(
        admin_user_ids(), type=type, title=title, message=message, priority=priority, metadata=metadata, email=False
    )
    emailed = send_templated_email(email_template, admin_emails(), context)
    return {"admins_notified": notified, "admin_emails_sent": emailed}
