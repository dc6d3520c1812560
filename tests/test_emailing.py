"""Bulk email rules: opt-outs and suppressions, signed one-click unsubscribe, the
List-Unsubscribe headers, and the shared send rate."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core import mail
from django.core.mail import EmailMessage, get_connection

from yesgoddess.emailing.models import EmailOptOut, SuppressionReason
from yesgoddess.emailing.services import (
    blocked,
    list_unsubscribe_headers,
    opt_out,
    read_unsubscribe_token,
    suppress,
    unsubscribe_token,
)

from .email_backends import StampingBackend

pytestmark = pytest.mark.django_db


def test_token_round_trip_and_tampering():
    token = unsubscribe_token("Ana@Example.com ", "campaigns")
    assert read_unsubscribe_token(token) == ("ana@example.com", "campaigns")
    with pytest.raises(Exception, match="Signature"):
        read_unsubscribe_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_headers_carry_a_one_click_link(settings):
    settings.API_URL = "https://api.example"
    headers = list_unsubscribe_headers("ana@example.com", "digests")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = headers["List-Unsubscribe"]
    assert link.startswith("<https://api.example/api/email/unsubscribe/") and link.endswith(">")


def test_one_click_unsubscribe_without_login(client):
    token = unsubscribe_token("ana@example.com", "campaigns")
    page = client.get(f"/api/email/unsubscribe/{token}")
    assert page.status_code == 200 and b"Unsubscribe?" in page.content
    assert not EmailOptOut.objects.exists()  # a GET (link scanners) changes nothing
    done = client.post(
        f"/api/email/unsubscribe/{token}",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert done.status_code == 200 and b"You are unsubscribed" in done.content
    assert client.post(f"/api/email/unsubscribe/{token}").status_code == 200  # twice: still fine
    assert list(EmailOptOut.objects.values_list("email", "category")) == [("ana@example.com", "campaigns")]
    bad = client.post("/api/email/unsubscribe/not-a-token")
    assert bad.status_code == 400 and EmailOptOut.objects.count() == 1


def test_blocked_by_suppression_category_or_all():
    suppress("Bounced@example.com", SuppressionReason.BOUNCE)
    opt_out("camp@example.com", "campaigns")
    opt_out("all@example.com", "all")
    everyone = ["bounced@example.com", "camp@example.com", "all@example.com", "ok@example.com"]
    assert blocked(everyone, "campaigns") == {"bounced@example.com", "camp@example.com", "all@example.com"}
    assert blocked(everyone, "digests") == {"bounced@example.com", "all@example.com"}
    assert suppress("bounced@example.com") is False and opt_out("camp@example.com", "campaigns") is False


def test_every_send_honours_the_shared_rate(settings):
    settings.EMAIL_DELIVERY_BACKEND = "tests.email_backends.StampingBackend"
    settings.EMAIL_BACKEND = "yesgoddess.emailing.backends.RateLimitedBackend"
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 5
    StampingBackend.stamps = []
    with get_connection() as connection:
        for i in range(12):
            connection.send_messages([EmailMessage("s", "b", "from@example.com", [f"r{i}@example.com"])])
    assert len(mail.outbox) == 12
    per_second = Counter(int(stamp) for stamp in StampingBackend.stamps)
    assert max(per_second.values()) <= 5 and len(per_second) >= 3
