"""Email events from the provider's webhooks (django-anymail's `tracking` signal).

The provider is Mailgun: anymail's Mailgun view checks each webhook's HMAC signature
(MAILGUN_WEBHOOK_SIGNING_KEY) before the signal fires, and answers 400 to a bad one.
Only that view is routed (yesgoddess/emailing/webhook_urls.py), and events claiming to
come from another ESP are ignored: anymail's other views accept unauthenticated posts
when no basic-auth secret is set, and a forged complaint must not suppress an address.

Each event is recorded once (the provider's event id is unique; Mailgun's is the
signature token, so a redelivered or replayed webhook is a no-op). In the same
transaction, what the event says about the address is applied:

- a complaint suppresses it (COMPLAINT);
- a bounce whose reason is about the address (bounced, invalid mailbox) suppresses it
  (BOUNCE): a hard bounce. A temporary failure arrives as DEFERRED and a bounce for
  another reason (timed out, blocked, content, "other") is recorded but suppresses
  nothing: a soft bounce says nothing lasting about the address;
- a rejection (the provider refused to send) suppresses only for the same address
  reasons; a rejection for an account or configuration reason is recorded only;
- an unsubscribe through the provider opts the address out of all bulk email.
"""

from __future__ import annotations

import logging
from email.utils import getaddresses
from typing import Any

from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import EmailCategory, EmailEvent, EmailEventType, SuppressionReason
from .services import normalise, opt_out, suppress

log = logging.getLogger(__name__)

ESP_NAME = "Mailgun"

EVENT_TYPES = {
    EventType.DELIVERED: EmailEventType.DELIVERED,
    EventType.DEFERRED: EmailEventType.DEFERRED,
    EventType.BOUNCED: EmailEventType.BOUNCED,
    EventType.REJECTED: EmailEventType.REJECTED,
    EventType.FAILED: EmailEventType.FAILED,
    EventType.COMPLAINED: EmailEventType.COMPLAINED,
    EventType.OPENED: EmailEventType.OPENED,
    EventType.CLICKED: EmailEventType.CLICKED,
    EventType.UNSUBSCRIBED: EmailEventType.UNSUBSCRIBED,
}
# Not recorded: QUEUED and SENT (our backend records its own SENT events), SUBSCRIBED,
# AUTORESPONDED, INBOUND and UNKNOWN.

# Reasons that say the address itself cannot receive mail.
HARD_REASONS = {RejectReason.BOUNCED, RejectReason.INVALID}


def is_hard_bounce(event: AnymailTrackingEvent) -> bool:
    return event.event_type in (EventType.BOUNCED, EventType.REJECTED) and event.reject_reason in HARD_REASONS


def _esp_sender(esp_event: Any) -> str:
    """The envelope sender of a Mailgun event, if the payload names one."""
    try:
        data = esp_event.get("event-data") or {}
        sender = data.get("envelope", {}).get("sender") or data.get("message", {}).get("headers", {}).get("from")
    except AttributeError:  # a legacy (form-encoded) payload
        return ""
    addresses = getaddresses([sender]) if isinstance(sender, str) else []
    return addresses[0][1] if addresses else ""


def _text(value: Any, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    return text[:limit] if limit else text


def build_event(event: AnymailTrackingEvent, esp_name: str, email: str) -> EmailEvent:
    """The row for one tracking event; user and sender domain from our SENT event of the
    same message when there is one, else from the address and the payload."""
    message_id = _text(event.message_id, 255)
    sent = None
    if message_id:
        sent = (
            EmailEvent.objects.filter(message_id=message_id, event_type=EmailEventType.SENT, email=email)
            .only("user_id", "sender_domain")
            .first()
        )
    user_id = sent.user_id if sent else None
    if user_id is None:
        user_id = (
            get_user_model().objects.filter(email__iexact=email).order_by("pk").values_list("pk", flat=True).first()
        )
    domain = (sent.sender_domain if sent else "") or _esp_sender(event.esp_event).rpartition("@")[2].lower()
    now = timezone.now()
    return EmailEvent(
        event_type=EVENT_TYPES[event.event_type],
        provider=esp_name,
        event_id=_text(event.event_id, 255) or None,
        message_id=message_id,
        email=email[:254],
        user_id=user_id,
        sender_domain=domain or settings.EMAIL_SENDER_DOMAIN,
        occurred_at=event.timestamp or now,
        recorded_at=now,
        reject_reason=_text(event.reject_reason, 32),
        description=_text(event.description, 2000),
        mta_response=_text(event.mta_response, 2000),
        click_url=_text(event.click_url, 2000),
        user_agent=_text(event.user_agent, 1000),
        tags=list(event.tags or []),
        metadata=dict(event.metadata or {}),
    )


def apply_to_address(row: EmailEvent, event: AnymailTrackingEvent) -> str | None:
    """Suppress or opt out the address when the event says so; return what was done."""
    detail = f"{row.provider} {row.event_type}: {row.reject_reason or '-'} {row.description or row.mta_response}"
    if event.event_type == EventType.COMPLAINED:
        suppress(row.email, SuppressionReason.COMPLAINT, detail.strip())
        return "suppressed"
    if is_hard_bounce(event):
        suppress(row.email, SuppressionReason.BOUNCE, detail.strip())
        return "suppressed"
    if event.event_type == EventType.UNSUBSCRIBED:
        opt_out(row.email, EmailCategory.ALL)
        return "opted_out"
    return None


def record_tracking_event(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> bool:
    """Receiver of anymail's `tracking` signal; True when the event was new and recorded."""
    if esp_name != ESP_NAME:
        log.warning("ignored a tracking event from %s: only %s webhooks are trusted", esp_name, ESP_NAME)
        return False
    if event.event_type not in EVENT_TYPES:
        log.info("ignored a %s tracking event of type %s", esp_name, event.event_type)
        return False
    email = normalise(event.recipient or "")
    if not email:
        log.warning("ignored a %s %s event without a recipient", esp_name, event.event_type)
        return False
    row = build_event(event, esp_name, email)
    with transaction.atomic():
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError:
            log.info("duplicate %s event %s ignored", esp_name, row.event_id)
            return False
        action = apply_to_address(row, event)
    log.info("email event id=%s type=%s provider=%s action=%s", row.pk, row.event_type, esp_name, action or "-")
    return True
