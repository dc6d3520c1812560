"""Email campaigns: recipients from a segment, the send/pause/resume/cancel API, and the
email-campaign batch job against a real SMTP server on loopback (tests/smtp.py)."""

from __future__ import annotations

import smtplib
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone
from rq.job import JobStatus

from jobs.api import get_queue
from jobs.handlers.campaigns import record_campaign_failure, send_campaign_batch
from jobs.handlers.email import monitor_email_reputation
from jobs.rq_classes import JSONJob
from yesgoddess.campaigns import services
from yesgoddess.campaigns.models import (
    CampaignStatus,
    DeferredEmail,
    DigestFrequency,
    EmailCampaign,
    RecipientStatus,
)
from yesgoddess.campaigns.sending import IN_DOUBT
from yesgoddess.emailing.models import EmailEvent, EmailOptOut, EmailReputationMetric
from yesgoddess.emailing.reputation import Figures, conditions
from yesgoddess.emailing.services import opt_out, suppress
from yesgoddess.notifications.services import render_email

from .conftest import SIMPLE, manage, worker_env
from .license_factories import make_user
from .smtp_server import SmtpServer

pytestmark = pytest.mark.django_db

CONTENT = {
    "headline": "Spring licensing is open",
    "body": "Brands are looking for <new> work.\nShow yours.",
    "cta_label": "See briefs",
    "cta_url": "https://app.example/briefs",
}


def make_campaign(emails: list[str] | None = None, **fields) -> EmailCampaign:
    fields.setdefault("batch_size", 4)
    fields.setdefault("messages_per_hour", 100_000)
    campaign = services.create_campaign(
        name=fields.pop("name", "Spring"),
        subject=fields.pop("subject", "Spring licensing is open"),
        template=fields.pop("template", "campaign_announcement"),
        content=fields.pop("content", CONTENT),
        **fields,
    )
    if emails:
        services.add_recipients(
            campaign, [{"email": e, "personalization": {"user_name": e.split("@")[0]}} for e in emails]
        )
    return campaign


def start(campaign: EmailCampaign) -> None:
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SCHEDULED)


def run_chain(campaign_id: int, limit: int = 50) -> list[dict]:
    """Run the batch job inline until the chain stops (what a worker does job by job)."""
    results = []
    for _ in range(limit):
        result = send_campaign_batch(campaign_id=campaign_id)
        results.append(result)
        if result.get("status") != CampaignStatus.SENDING:
            return results
    raise AssertionError("the chain did not stop")


def statuses(campaign: EmailCampaign) -> Counter:
    return Counter(campaign.recipients.values_list("status", flat=True))


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback that Django delivers to."""
    with SmtpServer() as server:
        yield server.use_for_django(settings)


@pytest.fixture
def staff():
    return make_user(is_staff=True)


# --- templates and recipients ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "content"),
    [
        ("campaign_announcement", CONTENT),
        (
            "campaign_newsletter",
            {
                "intro": "What happened in <March>.",
                "items": [{"title": "New brands", "summary": "12 joined", "url": "https://app.example/b"}],
                "outro": "See you next month.",
            },
        ),
    ],
)
def test_campaign_templates_render_with_what_the_job_passes(template, content):
    campaign = make_campaign(["ana@example.com"], template=template, content=content, subject="News & <more>")
    recipient = campaign.recipients.get()
    subject, text, html = render_email(template, services.campaign_context(campaign, recipient))
    assert subject == "News & <more>"
    assert "Hello ana," in text and "/api/email/unsubscribe/" in text and "{{" not in text + html
    assert "&lt;" in html and "<new>" not in html and "/api/email/unsubscribe/" in html
    if template == "campaign_newsletter":
        assert "* New brands" in text and "What happened in <March>." in text


@pytest.mark.parametrize("template", ["campaign_announcement", "campaign_newsletter"])
def test_the_batch_renderer_builds_what_a_full_render_builds(template):
    content = CONTENT if template == "campaign_announcement" else {"intro": "Hi & <b>", "items": [{"title": "T"}]}
    campaign = make_campaign(template=template, content=content, subject="News & <more>")
    services.add_recipients(
        campaign,
        [
            {"email": "ana@example.com", "personalization": {"user_name": 'Ana <b> & "co"', "user_role": "BRAND"}},
            {"email": "bob@example.com", "personalization": {}},
            {"email": "cy@example.com", "personalization": {"user_name": "Cy", "user_role": "CREATOR"}},
        ],
    )
    renderer = services.CampaignRenderer(campaign)
    for row in campaign.recipients.order_by("pk"):
        fast, fast_id = renderer.message(row)
        full, full_id = services.campaign_message(campaign, row)
        assert fast_id != full_id and fast.extra_headers.keys() == full.extra_headers.keys()
        assert (fast.subject, fast.body, fast.alternatives, fast.to) == (
            full.subject,
            full.body,
            full.alternatives,
            full.to,
        )
        assert fast.extra_headers["List-Unsubscribe"] == full.extra_headers["List-Unsubscribe"]
    assert set(renderer.parts) == {"BRAND", "", "CREATOR"} and all(renderer.parts.values())


def test_a_template_that_transforms_a_token_falls_back_to_a_full_render(monkeypatch):
    campaign = make_campaign(["ana@example.com"])
    real = services.render_email

    def upper_name(name, context):  # as if the template said {{ user_name|upper }}
        return real(name, {**context, "user_name": str(context["user_name"]).upper()})

    monkeypatch.setattr(services, "render_email", upper_name)
    renderer = services.CampaignRenderer(campaign)
    message, _ = renderer.message(campaign.recipients.get())
    assert renderer.parts == {"": None} and "Hello ana," in message.body


def test_content_is_checked_against_the_template():
    with pytest.raises(services.CampaignError, match="needs content fields: body"):
        services.create_campaign(name="x", subject="s", template="campaign_announcement", content={"headline": "h"})
    with pytest.raises(services.CampaignError, match="template must be one of"):
        services.create_campaign(name="x", subject="s", template="welcome", content={})


def test_recipients_from_a_segment_leave_out_who_cannot_be_mailed():
    creator = make_user(role="CREATOR", first_name="Ana", email="Ana@Example.com")
    make_user(role="CREATOR", is_active=False)
    make_user(role="CREATOR", deleted_at=timezone.now())
    make_user(role="CREATOR", email="")
    suppressed = make_user(role="CREATOR")
    opted = make_user(role="CREATOR")
    brand = make_user(role="BRAND")
    suppress(suppressed.email)
    opt_out(opted.email, "all")
    campaign = make_campaign()
    assert services.build_recipients(campaign, {"roles": ["CREATOR"]}) == 1
    row = campaign.recipients.get()
    assert (row.email, row.user_id) == ("ana@example.com", creator.pk)
    assert row.personalization == {"user_name": "Ana", "user_role": "CREATOR"}
    assert services.build_recipients(campaign, {}) == 1  # the brand; Ana is not added twice
    assert set(campaign.recipients.values_list("user_id", flat=True)) == {creator.pk, brand.pk}
    assert EmailCampaign.objects.get(pk=campaign.pk).recipient_count == 2
    with pytest.raises(services.CampaignError, match=r"segment\.roles"):
        services.build_recipients(campaign, {"roles": ["NOPE"]})


# --- the batch job through a real SMTP server -------------------------------------------


def test_campaign_reaches_every_recipient_once_over_reused_connections(smtp, client):
    emails = [f"r{i}@example.com" for i in range(10)]
    campaign = make_campaign([*emails, "gone@example.com", "quit@example.com", "all@example.com"], batch_size=4)
    suppress("gone@example.com")  # after the recipients were built: re-checked at send time
    opt_out("quit@example.com", "campaigns")
    opt_out("all@example.com", "all")
    start(campaign)

    results = run_chain(campaign.pk)

    assert results[-1]["status"] == CampaignStatus.COMPLETED
    assert smtp.received_by() == Counter(emails)  # each once, blocked ones never
    assert statuses(campaign) == {RecipientStatus.SENT: 10, RecipientStatus.SKIPPED: 3}
    # one connection per batch that sent something: 4 + 4 + 2 (the blocked rows of the
    # first batch are skipped in its claim and do not use a send)
    assert smtp.connections == 3 < smtp.message_count == 10
    assert Counter(m.connection for m in smtp.messages) == {1: 4, 2: 4, 3: 2}
    campaign.refresh_from_db()
    assert (campaign.sent_count, campaign.skipped_count, campaign.recipient_count) == (10, 3, 13)
    assert campaign.send_started_at and campaign.send_completed_at

    message = smtp.messages[0].message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message["List-Unsubscribe"].strip().strip("<>")
    assert link.startswith("http://localhost:8000/api/email/unsubscribe/")
    row = campaign.recipients.get(email=smtp.messages[0].rcpt_tos[0])
    assert message["Message-ID"] == row.message_id and row.sent_at is not None
    assert message["Subject"] == "Spring licensing is open"
    html = message.get_body(("html",)).get_content()
    assert "See briefs" in html and "&lt;new&gt;" in html

    # The one-click link works without logging in: that address is opted out.
    path = link.split("localhost:8000", 1)[1]
    answer = client.post(path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200
    assert EmailOptOut.objects.filter(email=row.email, category="campaigns").exists()


def test_the_rate_limit_is_honoured_at_the_server(smtp, settings):
    settings.EMAIL_RATE_LIMIT_PER_SECOND = 5
    campaign = make_campaign([f"r{i}@example.com" for i in range(12)], batch_size=12)
    start(campaign)
    run_chain(campaign.pk)
    per_second = smtp.per_second()
    assert sum(per_second.values()) == 12
    assert max(per_second.values()) <= 5 and len(per_second) >= 3
    assert smtp.connections == 1


def test_refused_address_fails_and_the_rest_still_go(smtp):
    campaign = make_campaign(["a@example.com", "refuse-me@example.com", "b@example.com"], batch_size=10)
    start(campaign)
    run_chain(campaign.pk)
    assert smtp.received_by() == Counter(["a@example.com", "b@example.com"])
    failed = campaign.recipients.get(status=RecipientStatus.FAILED)
    assert failed.email == "refuse-me@example.com" and "refused" in failed.error
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED


def test_crash_mid_batch_then_the_retry_sends_nobody_twice(settings):
    with SmtpServer(drop_after=3) as smtp:
        smtp.use_for_django(settings)
        emails = [f"r{i}@example.com" for i in range(8)]
        campaign = make_campaign(emails, batch_size=8)
        start(campaign)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send_campaign_batch(campaign_id=campaign.pk)
        # 3 accepted; the 4th was on the wire when the connection died; 4 never attempted
        assert statuses(campaign) == {RecipientStatus.SENT: 3, RecipientStatus.FAILED: 1, RecipientStatus.PENDING: 4}
        assert campaign.recipients.get(status=RecipientStatus.FAILED).error == IN_DOUBT
        assert EmailCampaign.objects.get(pk=campaign.pk).sent_count == 3

        run_chain(campaign.pk)  # RQ's retry

        received = smtp.received_by()
        assert max(received.values()) == 1 and len(received) == 7
        in_doubt = campaign.recipients.get(status=RecipientStatus.FAILED).email
        assert set(received) == set(emails) - {in_doubt}
        assert smtp.drops == 1
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent_count, campaign.failed_count) == (CampaignStatus.COMPLETED, 7, 1)


def test_recipients_a_killed_worker_left_claimed_are_settled_from_the_send_journal(smtp):
    """A SIGKILLed worker leaves its batch SENDING. The next run of the chain settles them
    from the send journal: accepted -> SENT, attempted -> FAILED in doubt, never
    attempted -> sent now. Nobody twice, nobody lost."""
    from yesgoddess.notifications.fanout import ACCEPTED, ATTEMPTED, _journal_name, _write_journal

    emails = [f"k{i}@example.com" for i in range(6)]
    campaign = make_campaign(emails, batch_size=10)
    start(campaign)
    rows = list(campaign.recipients.order_by("pk"))
    long_ago = timezone.now() - timedelta(hours=2)
    campaign.recipients.filter(pk__in=[r.pk for r in rows[:3]]).update(
        status=RecipientStatus.SENDING, claimed_at=long_ago
    )
    _write_journal([_journal_name(ATTEMPTED, f"campaign-recipient:{rows[0].pk}")])
    _write_journal([_journal_name(ACCEPTED, f"campaign-recipient:{rows[0].pk}")])  # went out before the kill
    _write_journal([_journal_name(ATTEMPTED, f"campaign-recipient:{rows[1].pk}")])  # on the wire at the kill
    # rows[2]: claimed, never attempted

    results = run_chain(campaign.pk)
    assert results[0]["recovered_sent"] == results[0]["recovered_in_doubt"] == results[0]["recovered_unattempted"] == 1
    assert set(smtp.received_by()) == set(emails) - {rows[0].email, rows[1].email}
    assert max(smtp.received_by().values()) == 1
    final = dict(campaign.recipients.values_list("email", "status"))
    assert final[rows[0].email] == RecipientStatus.SENT and final[rows[1].email] == RecipientStatus.FAILED
    assert statuses(campaign) == {RecipientStatus.SENT: 5, RecipientStatus.FAILED: 1}


def test_completion_settles_rows_a_dead_run_left_sending_from_the_send_journal(smtp):
    """A run died mid-batch a minute ago (its rows are not stale yet) and nothing else is
    PENDING: completing the campaign settles those rows from the send journal instead of
    failing them all: accepted -> SENT, attempted -> FAILED in doubt, never attempted ->
    sent before the campaign completes."""
    from yesgoddess.notifications.fanout import ACCEPTED, ATTEMPTED, _journal_name, _write_journal

    emails = [f"c{i}@example.com" for i in range(4)]
    campaign = make_campaign(emails, batch_size=10)
    start(campaign)
    rows = list(campaign.recipients.order_by("pk"))
    campaign.recipients.filter(pk__in=[r.pk for r in rows[:3]]).update(
        status=RecipientStatus.SENDING, claimed_at=timezone.now() - timedelta(minutes=1)
    )
    _write_journal([_journal_name(ATTEMPTED, f"campaign-recipient:{rows[0].pk}")])
    _write_journal([_journal_name(ACCEPTED, f"campaign-recipient:{rows[0].pk}")])  # went out before the death
    _write_journal([_journal_name(ATTEMPTED, f"campaign-recipient:{rows[1].pk}")])  # on the wire at the death
    # rows[2]: claimed, never attempted

    results = run_chain(campaign.pk)
    assert smtp.received_by() == Counter([rows[2].email, rows[3].email])
    final = dict(campaign.recipients.values_list("email", "status"))
    assert final == {
        rows[0].email: RecipientStatus.SENT,
        rows[1].email: RecipientStatus.FAILED,
        rows[2].email: RecipientStatus.SENT,
        rows[3].email: RecipientStatus.SENT,
    }
    assert campaign.recipients.get(pk=rows[1].pk).error == IN_DOUBT
    first = results[0]
    assert (first["sent"], first["interrupted_sent"], first["interrupted_in_doubt"]) == (1, 1, 1)
    assert first["interrupted_unattempted"] == 1 and first["status"] == CampaignStatus.SENDING
    assert results[-1]["status"] == CampaignStatus.COMPLETED
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent_count, campaign.failed_count) == (CampaignStatus.COMPLETED, 3, 1)


def reputation_events(sent: int = 0, complained: int = 0) -> None:
    """Email events of our sender domain an hour ago, as the email backend (SENT) and the
    provider's webhooks (COMPLAINED) record them."""
    domain, when = django_settings.EMAIL_SENDER_DOMAIN, timezone.now() - timedelta(hours=1)
    EmailEvent.objects.bulk_create(
        [
            EmailEvent(
                event_type=kind,
                provider="backend" if kind == "SENT" else "Mailgun",
                event_id=None if kind == "SENT" else uuid.uuid4().hex,
                message_id=f"<old-{kind}-{i}@{domain}>",
                email=f"old{i}@example.com",
                sender_domain=domain,
                occurred_at=when,
            )
            for kind, count in (("SENT", sent), ("COMPLAINED", complained))
            for i in range(count)
        ]
    )


def test_an_operators_resume_holds_until_reputation_gets_worse(smtp, client, staff):
    """reputation-monitoring pauses a campaign at a critical complaint rate; an operator
    resumes it. Neither the next batch nor the next day's run (the 30-day window still
    holds the same complaints) pauses it again; more complaints do."""
    client.force_login(staff)
    campaign = make_campaign([f"r{i}@example.com" for i in range(12)], batch_size=3)
    start(campaign)
    assert send_campaign_batch(campaign_id=campaign.pk)["sent"] == 3
    reputation_events(sent=1000, complained=4)  # 4 in ~1,000: over the 0.3 % critical rate
    assert monitor_email_reputation()["campaigns_paused"] == 1
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED

    resumed = client.post(f"/api/campaigns/{campaign.pk}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "SENDING"

    # The batch jobs read the same critical row: the resume holds.
    assert send_campaign_batch(campaign_id=campaign.pk).get("sent") == 3
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    accepted = resumed.json()["reputation_accepted"][django_settings.EMAIL_SENDER_DOMAIN]
    assert list(accepted) == ["complaint_rate"]
    # The next day: still critical (the same complaints in the window), not worse.
    with time_machine.travel(timezone.now() + timedelta(days=1), tick=False):
        next_day = monitor_email_reputation()
    latest = EmailReputationMetric.objects.order_by("-date").first()
    assert "complaint_rate:critical" in [w["key"] for w in latest.warnings]
    assert next_day["campaigns_paused"] == 0
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING
    assert send_campaign_batch(campaign_id=campaign.pk)["sent"] == 3

    reputation_events(complained=3)  # worse: 7 complaints
    with time_machine.travel(timezone.now() + timedelta(days=1, hours=1), tick=False):
        assert monitor_email_reputation()["campaigns_paused"] == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED and "reputation" in campaign.status_reason
    assert send_campaign_batch(campaign_id=campaign.pk)["stopped"]
    campaign_mail = {email: n for email, n in smtp.received_by().items() if email.startswith("r")}  # not the alerts
    assert sum(campaign_mail.values()) == 9 and max(campaign_mail.values()) == 1
    assert statuses(campaign)[RecipientStatus.PENDING] == 3


def test_a_resumed_campaign_is_paused_before_a_batch_when_reputation_gets_worse(smtp, client, staff):
    client.force_login(staff)
    campaign = make_campaign([f"r{i}@example.com" for i in range(6)], batch_size=3)
    start(campaign)
    critical_reputation_row(complained=3)
    assert send_campaign_batch(campaign_id=campaign.pk)["stopped"]
    assert client.post(f"/api/campaigns/{campaign.pk}/resume").json()["status"] == "SENDING"
    assert send_campaign_batch(campaign_id=campaign.pk).get("sent") == 3  # the resume holds
    EmailReputationMetric.objects.all().delete()
    critical_reputation_row(complained=5)  # a later run of reputation-monitoring: worse
    assert send_campaign_batch(campaign_id=campaign.pk)["stopped"]
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.PAUSED
    assert smtp.message_count == 3


def test_a_message_that_cannot_be_built_fails_alone(smtp, monkeypatch):
    campaign = make_campaign(["a@example.com", "poison@example.com", "b@example.com"], batch_size=10)
    start(campaign)
    real = services.CampaignRenderer.message

    def build(renderer, recipient):
        if recipient.email.startswith("poison"):
            raise ValueError("bad personalization")
        return real(renderer, recipient)

    monkeypatch.setattr(services.CampaignRenderer, "message", build)
    run_chain(campaign.pk)
    assert smtp.received_by() == Counter(["a@example.com", "b@example.com"])
    poison = campaign.recipients.get(email="poison@example.com")
    assert poison.status == RecipientStatus.FAILED and "bad personalization" in poison.error


def test_pause_stops_between_batches_and_resume_goes_on_where_it_was(smtp, client, staff):
    client.force_login(staff)
    emails = [f"r{i}@example.com" for i in range(10)]
    campaign = make_campaign(emails, batch_size=4)
    start(campaign)
    assert send_campaign_batch(campaign_id=campaign.pk)["sent"] == 4

    paused = client.post(f"/api/campaigns/{campaign.pk}/pause", {"reason": "checking"}, "application/json")
    assert paused.status_code == 200 and paused.json()["status"] == "PAUSED"
    assert paused.json()["status_reason"] == "checking"
    stopped = send_campaign_batch(campaign_id=campaign.pk)  # the next batch job sees PAUSED
    assert stopped["stopped"] and smtp.message_count == 4
    assert client.post(f"/api/campaigns/{campaign.pk}/pause").status_code == 409

    resumed = client.post(f"/api/campaigns/{campaign.pk}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "SENDING"
    run_chain(campaign.pk)
    assert smtp.received_by() == Counter(emails)
    detail = client.get(f"/api/campaigns/{campaign.pk}/").json()
    assert detail["status"] == "COMPLETED" and detail["recipients"]["SENT"] == 10
    assert detail["progress"] == {"total": 10, "done": 10, "percent": 100.0}


def test_a_paused_campaign_does_not_queue_its_next_batch(smtp, monkeypatch):
    campaign = make_campaign([f"r{i}@example.com" for i in range(6)], batch_size=3)
    start(campaign)
    real = services.CampaignRenderer.message

    def pause_while_sending(renderer, recipient):  # an admin pauses while the batch is being sent
        if EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING:
            services.pause(campaign.pk, "admin")
        return real(renderer, recipient)

    monkeypatch.setattr(services.CampaignRenderer, "message", pause_while_sending)
    result = send_campaign_batch(campaign_id=campaign.pk)
    assert result["sent"] == 3 and result["status"] == CampaignStatus.PAUSED and "next_delay_seconds" not in result
    assert statuses(campaign) == {RecipientStatus.SENT: 3, RecipientStatus.PENDING: 3}


def critical_reputation_row(complained: int = 3, sent: int = 1000) -> EmailReputationMetric:
    """A reputation-monitoring row for our sender domain, today, with the conditions those
    figures meet (3 complaints in 1,000 sends: the critical complaint rate)."""
    figures = Figures(sent=sent, complained=complained)
    return EmailReputationMetric.objects.create(
        date=timezone.now().date(),
        sender_domain=django_settings.EMAIL_SENDER_DOMAIN,
        warnings=[c.as_dict() for c in conditions(figures)],
        **figures.row_values(),
    )


def test_a_critical_sender_reputation_pauses_before_the_next_batch(smtp):
    campaign = make_campaign([f"r{i}@example.com" for i in range(6)], batch_size=3)
    start(campaign)
    assert send_campaign_batch(campaign_id=campaign.pk)["sent"] == 3
    critical_reputation_row()
    assert send_campaign_batch(campaign_id=campaign.pk)["stopped"]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED and "reputation" in campaign.status_reason
    assert smtp.message_count == 3 and statuses(campaign)[RecipientStatus.PENDING] == 3


def test_a_resume_racing_the_end_of_a_stopping_run_still_continues(
    smtp, monkeypatch, django_capture_on_commit_callbacks
):
    """The run saw PAUSED and queues no successor; a resume lands before it ends (its
    enqueue found this run still active and queued nothing): the run notices."""
    campaign = make_campaign([f"r{i}@example.com" for i in range(4)], batch_size=2)
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.PAUSED, send_started_at=timezone.now())

    def resumed_meanwhile(name, key):
        EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING)

    monkeypatch.setattr("yesgoddess.campaigns.sending.release_own_dedup", resumed_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        result = send_campaign_batch(campaign_id=campaign.pk)
    assert result["stopped"] and result["next"]
    assert get_queue("bulk").job_ids == [result["next"]] and smtp.message_count == 0
    assert EmailCampaign.objects.get(pk=campaign.pk).job_id == result["next"]


def test_cancel_skips_the_pending_and_stops_the_chain(smtp, client, staff):
    client.force_login(staff)
    campaign = make_campaign([f"r{i}@example.com" for i in range(6)], batch_size=3)
    start(campaign)
    send_campaign_batch(campaign_id=campaign.pk)
    cancelled = client.post(f"/api/campaigns/{campaign.pk}/cancel", {"reason": "typo"}, "application/json")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    assert send_campaign_batch(campaign_id=campaign.pk)["stopped"]
    assert smtp.message_count == 3
    assert statuses(campaign) == {RecipientStatus.SENT: 3, RecipientStatus.SKIPPED: 3}
    assert client.post(f"/api/campaigns/{campaign.pk}/cancel").status_code == 409


def test_users_who_take_campaigns_as_a_digest_get_a_deferred_email(smtp):
    daily = make_user(email="daily@example.com")
    weekly = make_user(email="weekly@example.com")
    now = make_user(email="now@example.com")
    services.set_delivery_preference(daily.pk, DigestFrequency.DAILY)
    services.set_delivery_preference(weekly.pk, DigestFrequency.WEEKLY)
    services.set_delivery_preference(now.pk, DigestFrequency.IMMEDIATE)
    campaign = make_campaign(batch_size=10, preview_text="Brands want your work")
    services.build_recipients(campaign, {})
    start(campaign)
    run_chain(campaign.pk)
    assert set(smtp.received_by()) == {"now@example.com"}
    assert statuses(campaign) == {RecipientStatus.SENT: 1, RecipientStatus.DEFERRED: 2}
    items = DeferredEmail.objects.order_by("user_id")
    assert [(i.user_id, i.subject, i.summary, i.link) for i in items] == [
        (u.pk, "Spring licensing is open", "Brands want your work", "https://app.example/briefs")
        for u in (daily, weekly)
    ]
    assert EmailCampaign.objects.get(pk=campaign.pk).deferred_count == 2


def test_messages_per_hour_sets_the_delay_of_the_next_batch(django_capture_on_commit_callbacks, settings):
    settings.EMAIL_DELIVERY_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    campaign = make_campaign([f"r{i}@example.com" for i in range(25)], batch_size=10, messages_per_hour=360)
    start(campaign)
    with time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            result = send_campaign_batch(campaign_id=campaign.pk)
        # 10 messages at 360 an hour: the next batch 100 seconds later
        assert result["sent"] == 10 and 99 <= result["next_delay_seconds"] <= 100  # less the time it took
        queue = get_queue("bulk")
        [job_id] = queue.scheduled_job_registry.get_job_ids()
        when = queue.scheduled_job_registry.get_scheduled_time(job_id)
        # (less the real time the batch took)
        assert datetime(2026, 3, 2, 12, 1, 39, tzinfo=UTC) <= when <= datetime(2026, 3, 2, 12, 1, 40, tzinfo=UTC)
        assert EmailCampaign.objects.get(pk=campaign.pk).job_id == job_id
        assert JSONJob.fetch(job_id, connection=queue.connection).kwargs == {"campaign_id": campaign.pk}
    assert len(mail.outbox) == 10


# --- the API ---------------------------------------------------------------------------


def test_scheduled_send_enqueues_the_first_batch_at_the_scheduled_time(
    client, staff, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    campaign = make_campaign(["a@example.com"], scheduled_send_time=at + timedelta(hours=2))
    with time_machine.travel(at, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            sent = client.post(f"/api/campaigns/{campaign.pk}/send", HTTP_IDEMPOTENCY_KEY="go")
        assert sent.status_code == 200 and sent.json()["status"] == "SCHEDULED"
        queue = get_queue("bulk")
        job_id = sent.json()["job_id"]
        assert queue.scheduled_job_registry.get_job_ids() == [job_id] and len(queue) == 0
        assert queue.scheduled_job_registry.get_scheduled_time(job_id) == at + timedelta(hours=2)
        replay = client.post(f"/api/campaigns/{campaign.pk}/send", HTTP_IDEMPOTENCY_KEY="go")
        assert replay.json() == sent.json() and replay["Idempotent-Replayed"] == "true"
        again = client.post(f"/api/campaigns/{campaign.pk}/send")
        assert again.status_code == 409 and "SCHEDULED" in again.json()["error"]
        # run early by hand: it waits for its time instead of sending
        early = send_campaign_batch(campaign_id=campaign.pk)
        assert early["waiting_seconds"] == 7200 and not mail.outbox


def test_send_now_queues_one_chain_per_campaign(client, staff, django_capture_on_commit_callbacks):
    client.force_login(staff)
    campaign = make_campaign(["a@example.com", "b@example.com"])
    with django_capture_on_commit_callbacks(execute=True):
        sent = client.post(f"/api/campaigns/{campaign.pk}/send")
        paused = client.post(f"/api/campaigns/{campaign.pk}/pause")
        resumed = client.post(f"/api/campaigns/{campaign.pk}/resume")
    assert sent.status_code == paused.status_code == resumed.status_code == 200
    queue = get_queue("bulk")
    assert queue.job_ids == [sent.json()["job_id"]]  # the resume found the queued job
    assert resumed.json()["job_id"] == sent.json()["job_id"]
    assert resumed.json()["status"] == "SCHEDULED"  # it had not started yet
    assert JSONJob.fetch(queue.job_ids[0], connection=queue.connection).get_status() == JobStatus.QUEUED


def test_api_permissions_and_refusals(client, staff):
    campaign = make_campaign()
    assert client.get(f"/api/campaigns/{campaign.pk}/").status_code == 401
    client.force_login(make_user())
    for path in ("", "send", "pause", "resume", "cancel"):
        response = (
            client.post(f"/api/campaigns/{campaign.pk}/{path}")
            if path
            else client.get(f"/api/campaigns/{campaign.pk}/")
        )
        assert response.status_code == 404, path
    assert client.post("/api/campaigns/", {}, "application/json").status_code == 404
    client.force_login(staff)
    empty = client.post(f"/api/campaigns/{campaign.pk}/send")
    assert empty.status_code == 409 and "no recipients" in empty.json()["error"]
    assert client.post(f"/api/campaigns/{campaign.pk}/pause").status_code == 409
    assert client.post(f"/api/campaigns/{campaign.pk}/resume").status_code == 409
    assert client.get("/api/campaigns/999999/").status_code == 404
    assert client.post("/api/campaigns/999999/send").status_code == 404
    bad = client.post("/api/campaigns/", {"name": "x", "subject": "s", "template": "nope"}, "application/json")
    assert bad.status_code == 400 and "template must be one of" in bad.json()["error"]


def test_create_from_a_segment_through_the_api(client, staff):
    make_user(role="CREATOR")
    make_user(role="CREATOR")
    make_user(role="BRAND")
    client.force_login(staff)
    created = client.post(
        "/api/campaigns/",
        {
            "name": "Creators",
            "subject": "Hello creators",
            "template": "campaign_announcement",
            "content": CONTENT,
            "segment": {"roles": ["CREATOR"]},
            "scheduled_send_time": "2030-01-01T09:00:00Z",
            "batch_size": 50,
        },
        "application/json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "DRAFT" and body["recipients"]["PENDING"] == 2 and body["batch_size"] == 50
    assert body["scheduled_send_time"] == "2030-01-01T09:00:00+00:00"
    assert EmailCampaign.objects.get(pk=body["id"]).created_by == staff
    bad = client.post(
        "/api/campaigns/",
        {"name": "x", "subject": "s", "template": "campaign_announcement", "content": CONTENT, "batch_size": 0},
        "application/json",
    )
    assert bad.status_code == 400 and "batch_size" in bad.json()["error"]


def test_final_failure_marks_the_campaign_failed_and_resume_continues(
    client, staff, django_capture_on_commit_callbacks
):
    campaign = make_campaign(["a@example.com"])
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING, send_started_at=timezone.now())
    record_campaign_failure({"campaign_id": campaign.pk}, "SMTPServerDisconnected: gone", "job-1")
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED and "gone" in campaign.status_reason
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        resumed = client.post(f"/api/campaigns/{campaign.pk}/resume")
    assert resumed.json()["status"] == "SENDING" and len(get_queue("bulk")) == 1


def test_a_missing_campaign_is_a_job_input_error():
    from yesgoddess.core.errors import InvalidInput

    with pytest.raises(InvalidInput, match="does not exist"):
        send_campaign_batch(campaign_id=999_999)


def test_delivery_preferences_api(client):
    user = make_user()
    client.force_login(user)
    assert client.get("/api/email/delivery-preferences").json() == {"preferences": {"campaigns": "IMMEDIATE"}}
    chosen = client.post(
        "/api/email/delivery-preferences", {"category": "campaigns", "frequency": "weekly"}, "application/json"
    )
    assert chosen.json() == {"preferences": {"campaigns": "WEEKLY"}}
    bad = client.post("/api/email/delivery-preferences", {"category": "all", "frequency": "DAILY"}, "application/json")
    assert bad.status_code == 400


# --- through a real worker -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_campaign_runs_through_a_real_worker_batch_by_batch(client, staff):
    emails = [f"w{i}@example.com" for i in range(7)]
    with SmtpServer() as smtp:
        campaign = make_campaign([*emails, "blocked@example.com"], batch_size=3)
        suppress("blocked@example.com")
        client.force_login(staff)
        sent = client.post(f"/api/campaigns/{campaign.pk}/send")
        assert sent.status_code == 200, sent.content
        result = manage(
            "rqworker", "--burst", "--worker-class", SIMPLE, "bulk", env={**worker_env(), **smtp.worker_env()}
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert smtp.received_by() == Counter(emails)
        # three batch jobs of 3 rows (the last: 1 to send, 1 skipped), one connection each
        assert smtp.connections == 3 and Counter(m.connection for m in smtp.messages) == {1: 3, 2: 3, 3: 1}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert (campaign.sent_count, campaign.skipped_count) == (7, 1)
    assert result.stderr.count("job=email-campaign") >= 3
