"""Email events: Mailgun webhooks (signed as Mailgun signs them) through the real
django-anymail view, recorded once each, hard bounces and complaints suppressing the
address; SENT events recorded by the email backend for every accepted message."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import smtplib
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.core.mail import EmailMessage, get_connection
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from yesgoddess.emailing.events import record_tracking_event
from yesgoddess.emailing.models import EmailEvent, EmailOptOut, EmailSuppression

from .license_factories import make_user

pytestmark = pytest.mark.django_db

URL = "/anymail/mailgun/tracking/"
KEY = "key-test-webhook-signing"
WHEN = datetime(2027, 3, 8, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def signing_key(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": KEY}


def mailgun_event(event: str, recipient: str = "Alice@Example.com", **data) -> dict:
    """A Mailgun webhook body as Mailgun posts it (its documented JSON shape)."""
    body = {
        "id": secrets.token_hex(8),
        "event": event,
        "timestamp": WHEN.timestamp(),
        "log-level": "info",
        "recipient": recipient,
        "envelope": {"sender": "no-reply@mail.yesgoddess.test", "transport": "smtp", "targets": recipient},
        "message": {
            "headers": {
                "to": f"Alice <{recipient}>",
                "message-id": "20270308100000.1.abc@mail.yesgoddess.test",
                "from": "YesGoddess <no-reply@mail.yesgoddess.test>",
                "subject": "Hello",
            },
            "attachments": [],
            "size": 1234,
        },
        "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
        "tags": ["digest"],
        "user-variables": {},
    }
    body.update(data)
    return body


def signed(event_data: dict, key: str = KEY, token: str | None = None) -> dict:
    token = token or secrets.token_hex(25)
    timestamp = str(int(WHEN.timestamp()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def post(client: Client, payload: dict, **extra):
    return client.post(URL, json.dumps(payload), content_type="application/json", **extra)


def hard_bounce(recipient: str = "alice@example.com") -> dict:
    return mailgun_event(
        "failed",
        recipient,
        severity="permanent",
        reason="bounce",
        **{
            "log-level": "error",
            "delivery-status": {
                "attempt-no": 1,
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "session-seconds": 0.4,
            },
        },
    )


def soft_bounce(recipient: str = "alice@example.com") -> dict:
    return mailgun_event(
        "failed",
        recipient,
        severity="temporary",
        reason="generic",
        **{
            "log-level": "warn",
            "delivery-status": {"attempt-no": 1, "code": 452, "message": "4.2.2 Mailbox full", "description": ""},
        },
    )


# --- the webhook ------------------------------------------------------------------------------


def test_delivered_event_is_recorded_with_the_user_and_the_provider_time(client):
    alice = make_user(email="alice@example.com")
    payload = signed(mailgun_event("delivered", "Alice@Example.com"))
    assert post(client, payload).status_code == 200
    event = EmailEvent.objects.get()
    assert (event.event_type, event.provider, event.email, event.user_id) == (
        "DELIVERED",
        "Mailgun",
        "alice@example.com",
        alice.pk,
    )
    assert event.message_id == "<20270308100000.1.abc@mail.yesgoddess.test>"
    assert event.event_id == payload["signature"]["token"]
    assert event.occurred_at == WHEN and event.sender_domain == "mail.yesgoddess.test"
    assert event.tags == ["digest"]
    assert not EmailSuppression.objects.exists()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p["signature"].update(signature="0" * 64),  # forged signature
        lambda p: p["signature"].update(token=p["signature"]["token"] + "x"),  # replayed with another token
        lambda p: p.update(signature=signed({}, key="someone-elses-key")["signature"]),  # another account's key
        lambda p: p.pop("signature"),  # unsigned
    ],
)
def test_a_badly_signed_webhook_is_refused_and_records_nothing(client, tamper):
    payload = signed(mailgun_event("complained"))
    tamper(payload)
    response = post(client, payload)
    assert response.status_code == 400
    assert not EmailEvent.objects.exists() and not EmailSuppression.objects.exists()


def test_without_a_signing_key_the_endpoint_refuses_everything(settings):
    settings.ANYMAIL = {}
    payload = signed(mailgun_event("complained"))
    response = post(Client(raise_request_exception=False), payload)
    assert response.status_code >= 400
    assert not EmailEvent.objects.exists() and not EmailSuppression.objects.exists()


def test_basic_auth_when_a_webhook_secret_is_set(client, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": KEY, "WEBHOOK_SECRET": "mailgun:s3cret"}
    payload = signed(mailgun_event("delivered"))
    wrong = "Basic " + base64.b64encode(b"mailgun:guess").decode()
    assert post(client, payload).status_code == 400
    assert post(client, payload, HTTP_AUTHORIZATION=wrong).status_code == 400
    assert not EmailEvent.objects.exists()
    right = "Basic " + base64.b64encode(b"mailgun:s3cret").decode()
    assert post(client, payload, HTTP_AUTHORIZATION=right).status_code == 200
    assert EmailEvent.objects.count() == 1


def test_only_the_mailgun_endpoint_is_routed(client):
    # anymail's other views accept unsigned posts when no basic-auth secret is set.
    response = client.post("/anymail/postmark/tracking/", "{}", content_type="application/json")
    assert response.status_code == 404


def test_hard_bounce_suppresses_the_address(client):
    assert post(client, signed(hard_bounce("Alice@Example.com"))).status_code == 200
    event = EmailEvent.objects.get()
    assert (event.event_type, event.reject_reason) == ("BOUNCED", "bounced")
    assert "does not exist" in event.mta_response
    suppression = EmailSuppression.objects.get()
    assert (suppression.email, suppression.reason) == ("alice@example.com", "BOUNCE")
    assert "Mailgun BOUNCED: bounced" in suppression.detail


def test_soft_bounce_is_recorded_but_suppresses_nothing(client):
    assert post(client, signed(soft_bounce())).status_code == 200
    assert EmailEvent.objects.get().event_type == "DEFERRED"
    permanent_for_another_reason = mailgun_event(
        "failed", severity="permanent", reason="generic", **{"delivery-status": {"code": 554, "message": "content"}}
    )
    assert post(client, signed(permanent_for_another_reason)).status_code == 200
    assert sorted(EmailEvent.objects.values_list("event_type", flat=True)) == ["BOUNCED", "DEFERRED"]
    assert not EmailSuppression.objects.exists()


def test_complaint_suppresses_the_address(client):
    assert post(client, signed(mailgun_event("complained"))).status_code == 200
    assert EmailEvent.objects.get().event_type == "COMPLAINED"
    assert EmailSuppression.objects.get().reason == "COMPLAINT"


def test_provider_unsubscribe_opts_out_of_all_bulk_email(client):
    assert post(client, signed(mailgun_event("unsubscribed"))).status_code == 200
    assert list(EmailOptOut.objects.values_list("email", "category")) == [("alice@example.com", "all")]
    assert not EmailSuppression.objects.exists()


def test_opens_and_clicks_are_recorded(client):
    post(client, signed(mailgun_event("opened", **{"client-info": {"user-agent": "Mozilla/5.0"}})))
    post(client, signed(mailgun_event("clicked", url="https://app.example/messages/1")))
    opened, clicked = EmailEvent.objects.order_by("pk")
    assert (opened.event_type, opened.user_agent) == ("OPENED", "Mozilla/5.0")
    assert (clicked.event_type, clicked.click_url) == ("CLICKED", "https://app.example/messages/1")


def test_a_redelivered_webhook_is_recorded_once(client):
    payload = signed(hard_bounce())
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200  # Mailgun retries until it gets a 2xx
    assert EmailEvent.objects.count() == 1 and EmailSuppression.objects.count() == 1


def test_events_claiming_another_provider_are_ignored():
    from anymail.signals import AnymailTrackingEvent

    event = AnymailTrackingEvent(event_type="complained", recipient="alice@example.com", event_id="x")
    assert record_tracking_event(None, event=event, esp_name="Postmark") is False
    assert record_tracking_event(None, event=event, esp_name="Mailgun") is True
    assert EmailEvent.objects.count() == 1


def test_queued_and_unknown_events_are_not_recorded(client):
    assert post(client, signed(mailgun_event("accepted"))).status_code == 200
    assert post(client, signed(mailgun_event("something-new"))).status_code == 200
    assert not EmailEvent.objects.exists()


# --- SENT events from the email backend -----------------------------------------------------


@pytest.fixture
def backend(settings):
    """The production backend (pytest-django swaps in locmem): rate-limited wrapper over
    locmem as the delivering backend."""
    settings.EMAIL_BACKEND = "yesgoddess.emailing.backends.RateLimitedBackend"
    settings.EMAIL_DELIVERY_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def messages(count: int, sender: str = "YesGoddess <no-reply@mail.yesgoddess.test>") -> list[EmailMessage]:
    return [EmailMessage("Hi", "body", sender, [f"R{i}@Example.com"]) for i in range(count)]


def test_every_accepted_message_is_one_sent_event_written_once_per_connection(backend):
    with CaptureQueriesContext(connection) as queries, get_connection() as conn:
        for message in messages(5):
            conn.send_messages([message])
    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO email_events" in q["sql"]]
    assert len(inserts) == 1
    sent = list(EmailEvent.objects.order_by("pk"))
    assert [e.email for e in sent] == [f"r{i}@example.com" for i in range(5)]
    assert {e.event_type for e in sent} == {"SENT"} and {e.sender_domain for e in sent} == {"mail.yesgoddess.test"}
    # The id recorded is the Message-ID the recipient's server saw.
    assert [e.message_id for e in sent] == [m.message()["Message-ID"] for m in mail.outbox]
    assert len({e.message_id for e in sent}) == 5


def test_a_send_without_an_explicit_connection_is_recorded_too(backend):
    EmailMessage("Hi", "body", "no-reply@yesgoddess.local", ["A <a@example.com>", "b@example.com"]).send()
    assert sorted(EmailEvent.objects.values_list("email", "sender_domain")) == [
        ("a@example.com", "yesgoddess.local"),
        ("b@example.com", "yesgoddess.local"),
    ]


def test_a_refused_message_is_not_a_sent_event(settings, backend):
    settings.EMAIL_DELIVERY_BACKEND = "tests.email_backends.RefusingBackend"
    with get_connection() as conn:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            conn.send_messages([EmailMessage("Hi", "b", "x@yesgoddess.local", ["refuse@example.com"])])
        conn.send_messages([EmailMessage("Hi", "b", "x@yesgoddess.local", ["ok@example.com"])])
    assert list(EmailEvent.objects.values_list("email", flat=True)) == ["ok@example.com"]


def test_failing_to_record_never_fails_the_send(monkeypatch, backend):
    from yesgoddess.emailing import backends

    monkeypatch.setattr(backends, "INSERT_SENT", "INSERT INTO no_such_table VALUES (%s)")
    assert EmailMessage("Hi", "b", "x@yesgoddess.local", ["a@example.com"]).send() == 1
    assert len(mail.outbox) == 1
    assert EmailEvent.objects.count() == 0  # and the caller's transaction is still usable


def test_a_webhook_event_takes_the_domain_of_our_sent_event(client, backend):
    message = EmailMessage("Hi", "b", "no-reply@news.yesgoddess.test", ["alice@example.com"])
    message.send()
    sent = EmailEvent.objects.get()
    data = mailgun_event("delivered", envelope={})
    data["message"]["headers"] = {"message-id": sent.message_id.strip("<>")}
    assert post(client, signed(data)).status_code == 200
    delivered = EmailEvent.objects.get(event_type="DELIVERED")
    assert delivered.message_id == sent.message_id and delivered.sender_domain == "news.yesgoddess.test"
