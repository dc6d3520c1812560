"""email-digest: bulk email kept for a user's daily/weekly digest goes out once per
period, "since the last digest", and a retry after a crash sends nothing twice."""

from __future__ import annotations

import smtplib
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.api import enqueue, get_queue
from jobs.handlers.email import send_email_digests
from jobs.rq_classes import JSONJob
from yesgoddess.campaigns import services
from yesgoddess.campaigns.models import (
    CampaignStatus,
    DeferredEmail,
    DigestFrequency,
    DigestStatus,
    EmailCampaign,
    EmailDigest,
    RecipientStatus,
)
from yesgoddess.core.errors import InvalidInput
from yesgoddess.emailing.digest import IN_DOUBT, digest_context
from yesgoddess.emailing.services import suppress
from yesgoddess.notifications.services import render_email

from .conftest import SIMPLE, manage, worker_env
from .license_factories import make_user
from .smtp_server import SmtpServer

pytestmark = pytest.mark.django_db

MON = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


def digest_user(frequency: str = DigestFrequency.DAILY, **fields):
    user = make_user(**fields)
    services.set_delivery_preference(user.pk, frequency)
    return user


def defer(user, subject: str, at: datetime) -> DeferredEmail:
    return DeferredEmail.objects.create(
        user=user, category="campaigns", subject=subject, summary=f"About {subject}", link="https://app.example/x",
        created_at=at,
    )  # fmt: skip


def run(frequency: str = DigestFrequency.DAILY, at: datetime | None = None) -> dict:
    if at is None:
        return send_email_digests(frequency=frequency)
    with time_machine.travel(at, tick=False):
        return send_email_digests(frequency=frequency)


def subjects_in(message) -> list[str]:
    return [line[2:].split(" (")[0] for line in message.body.splitlines() if line.startswith("* ")]


def test_digest_template_renders_with_what_the_job_passes():
    ana = digest_user(first_name="Ana <b>")
    digest = EmailDigest.objects.create(
        user=ana, category="campaigns", frequency="DAILY", period=MON.date(), cutoff=MON
    )  # fmt: skip
    items = [defer(ana, "Spring & <summer>", MON), defer(ana, "News", MON)]
    subject, text, html = render_email("email_digest", digest_context(digest, items))
    assert subject == "Your daily digest: 2 updates from YesGoddess"
    assert "Hello Ana <b>," in text and "* Spring & <summer> (Mar 02)" in text and "About News" in text
    assert "Ana &lt;b&gt;" in html and "Spring &amp; &lt;summer&gt;" in html
    assert "/api/email/unsubscribe/" in text + html and "{{" not in text + html
    one = render_email("email_digest", digest_context(digest, items[:1]))[0]
    assert one == "Your daily digest: 1 update from YesGoddess"


def test_each_digest_covers_what_came_since_the_last_one_once_per_period():
    ana = digest_user(email="ana@example.com")
    defer(ana, "A", MON - timedelta(hours=1))

    first = run(at=MON)
    assert (first["opened"], first["sent"]) == (1, 1)
    [message] = mail.outbox
    assert message.to == ["ana@example.com"] and subjects_in(message) == ["A"]
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/api/email/unsubscribe/" in message.extra_headers["List-Unsubscribe"]

    defer(ana, "B", MON + timedelta(hours=1))
    again = run(at=MON + timedelta(hours=6))  # same day: this period's digest went out already
    assert (again["opened"], again["sent"]) == (0, 0) and len(mail.outbox) == 1

    defer(ana, "C", MON + timedelta(hours=23, minutes=59))
    defer(ana, "later", MON + timedelta(days=1, minutes=1))  # after the next run: the day after
    next_day = run(at=MON + timedelta(days=1))
    assert next_day["sent"] == 1 and subjects_in(mail.outbox[1]) == ["B", "C"]
    assert run(at=MON + timedelta(days=1, hours=1))["sent"] == 0
    assert len(mail.outbox) == 2
    digests = EmailDigest.objects.order_by("period")
    assert [(d.period, d.status, d.item_count) for d in digests] == [
        (MON.date(), DigestStatus.SENT, 1),
        ((MON + timedelta(days=1)).date(), DigestStatus.SENT, 2),
    ]
    assert DeferredEmail.objects.filter(digest__isnull=True).get().subject == "later"


def test_weekly_users_get_the_monday_digest_only():
    wes = digest_user(DigestFrequency.WEEKLY, email="wes@example.com")
    dee = digest_user(DigestFrequency.DAILY, email="dee@example.com")
    back = digest_user(DigestFrequency.WEEKLY, email="back@example.com")
    for day in range(3):
        defer(wes, f"w{day}", MON - timedelta(days=day + 1))
    defer(dee, "d", MON - timedelta(hours=2))
    defer(back, "b", MON - timedelta(hours=2))
    services.set_delivery_preference(back.pk, DigestFrequency.IMMEDIATE)  # back to one message each

    daily = run(DigestFrequency.DAILY, at=MON)
    assert daily["sent"] == 2 and {m.to[0] for m in mail.outbox} == {"dee@example.com", "back@example.com"}
    weekly = run(DigestFrequency.WEEKLY, at=MON)
    assert weekly["sent"] == 1 and mail.outbox[-1].to == ["wes@example.com"]
    assert sorted(subjects_in(mail.outbox[-1])) == ["w0", "w1", "w2"]
    assert mail.outbox[-1].subject == "Your weekly digest: 3 updates from YesGoddess"
    assert EmailDigest.objects.get(user=wes).period == MON.date()
    # Wednesday: still the same week for the weekly digest
    defer(wes, "w3", MON + timedelta(days=1))
    assert run(DigestFrequency.WEEKLY, at=MON + timedelta(days=2))["sent"] == 0


def test_who_may_not_be_emailed_is_skipped_and_their_items_consumed():
    gone = digest_user(email="gone@example.com")
    off = digest_user(is_active=False)
    ok = digest_user(email="ok@example.com")
    for user in (gone, off, ok):
        defer(user, "x", MON - timedelta(hours=1))
    suppress("gone@example.com")
    result = run(at=MON)
    assert (result["sent"], result["skipped"]) == (1, 2)
    assert [m.to for m in mail.outbox] == [["ok@example.com"]]
    skipped = EmailDigest.objects.filter(status=DigestStatus.SKIPPED).order_by("user_id")
    assert [d.error for d in skipped] == ["suppressed or unsubscribed", "user inactive or without an email address"]
    assert not DeferredEmail.objects.filter(digest__isnull=True).exists()


def test_a_crash_mid_batch_then_the_retry_sends_no_digest_twice(settings):
    users = [digest_user(email=f"u{i}@example.com") for i in range(6)]
    for user in users:
        defer(user, "news", MON - timedelta(hours=1))
    with SmtpServer(drop_after=2) as smtp:
        smtp.use_for_django(settings)
        with time_machine.travel(MON, tick=True):
            with pytest.raises(smtplib.SMTPServerDisconnected):
                send_email_digests(frequency="DAILY")
            states = Counter(EmailDigest.objects.values_list("status", flat=True))
            assert states == {DigestStatus.SENT: 2, DigestStatus.FAILED: 1, DigestStatus.PENDING: 3}
            assert EmailDigest.objects.get(status=DigestStatus.FAILED).error == IN_DOUBT

            retry = send_email_digests(frequency="DAILY")  # RQ's retry, same period
            assert (retry["opened"], retry["sent"]) == (0, 3)
            assert send_email_digests(frequency="DAILY")["sent"] == 0
        received = smtp.received_by()
        assert len(received) == 5 and max(received.values()) == 1
        assert all(m.message["List-Unsubscribe"] for m in smtp.messages)


def test_a_campaign_deferred_for_a_digest_arrives_in_it_once():
    ana = digest_user(email="ana@example.com")
    make_user(email="bob@example.com")
    campaign = services.create_campaign(
        name="Spring", subject="Spring licensing is open", template="campaign_announcement",
        content={"headline": "Spring", "body": "Open.", "cta_url": "https://app.example/briefs"},
        messages_per_hour=100_000, segment={},
    )  # fmt: skip
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SCHEDULED)
    from jobs.handlers.campaigns import send_campaign_batch

    with time_machine.travel(MON - timedelta(hours=3), tick=False):
        assert send_campaign_batch(campaign_id=campaign.pk)["status"] == CampaignStatus.COMPLETED
    assert [m.to for m in mail.outbox] == [["bob@example.com"]]
    assert campaign.recipients.get(user=ana).status == RecipientStatus.DEFERRED
    run(at=MON)
    digest = mail.outbox[-1]
    assert digest.to == ["ana@example.com"] and subjects_in(digest) == ["Spring licensing is open"]
    assert "https://app.example/briefs" in digest.body
    assert run(at=MON + timedelta(days=1))["sent"] == 0 and len(mail.outbox) == 2


def test_queries_per_batch_do_not_grow_with_the_batch(settings):
    def queries_for(n: int) -> int:
        EmailDigest.objects.all().delete()
        DeferredEmail.objects.all().delete()
        for _ in range(n):
            user = digest_user()
            defer(user, "a", MON - timedelta(hours=2))
            defer(user, "b", MON - timedelta(hours=1))
        with CaptureQueriesContext(connection) as queries, time_machine.travel(MON, tick=False):
            assert send_email_digests(frequency="DAILY")["sent"] == n
        return len(queries)

    settings.EMAIL_BATCH_SIZE = 100
    assert queries_for(3) == queries_for(30)


def test_a_long_run_hands_over_to_its_continuation(settings, monkeypatch, django_capture_on_commit_callbacks):
    settings.EMAIL_BATCH_SIZE = 2
    monkeypatch.setattr("yesgoddess.emailing.digest.JOB_SECONDS", 0)  # out of time after the first batch
    for i in range(5):
        defer(digest_user(email=f"c{i}@example.com"), "x", MON - timedelta(hours=1))
    with time_machine.travel(MON, tick=False), django_capture_on_commit_callbacks(execute=True):
        first = send_email_digests(frequency="DAILY")
    assert (first["opened"], first["sent"]) == (5, 2) and len(mail.outbox) == 2
    queue = get_queue("scheduled")
    assert queue.job_ids == [first["continued_by"]]
    job = JSONJob.fetch(first["continued_by"], connection=queue.connection)
    assert job.kwargs == {"frequency": "DAILY", "resume": True}
    with time_machine.travel(MON + timedelta(minutes=5), tick=False):
        monkeypatch.setattr("yesgoddess.emailing.digest.JOB_SECONDS", 300)
        rest = send_email_digests(**job.kwargs)
    assert (rest["opened"], rest["sent"]) == (0, 3) and len({m.to[0] for m in mail.outbox}) == 5


def test_bad_frequency_is_refused():
    with pytest.raises(InvalidInput, match="frequency must be one of"):
        send_email_digests(frequency="HOURLY")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_digests_go_out_through_a_real_worker():
    users = [digest_user(email=f"w{i}@example.com") for i in range(3)]
    for user in users:
        defer(user, "news", datetime.now(UTC) - timedelta(minutes=5))
    with SmtpServer() as smtp:
        enqueue("email-digest", frequency="DAILY")
        result = manage(
            "rqworker", "--burst", "--worker-class", SIMPLE, "scheduled", env={**worker_env(), **smtp.worker_env()}
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert smtp.received_by() == Counter(u.email for u in users) and smtp.connections == 1
    assert set(EmailDigest.objects.values_list("status", flat=True)) == {DigestStatus.SENT}
