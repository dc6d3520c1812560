"""reputation-monitoring: rates and score from 30 days of email events, thresholds at
their boundaries (inclusive), one row per day and domain (a rerun replaces it), admins
alerted once a day per condition, running campaigns paused at the critical level."""

from __future__ import annotations

import smtplib
import types
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.apps import apps
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend

from jobs.api import enqueue
from jobs.handlers.email import monitor_email_reputation
from yesgoddess.emailing.models import EmailEvent, EmailReputationMetric
from yesgoddess.emailing.reputation import Figures, conditions, latest_is_critical
from yesgoddess.emailing.reputation_alerts import alert_context, describe
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import render_email

from .license_factories import make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 8, 2, 0, tzinfo=UTC)
DOMAIN = "yesgoddess.local"  # the domain of DEFAULT_FROM_EMAIL in tests


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def events(
    sent: int = 0,
    *,
    delivered: int = 0,
    bounced: int = 0,
    complained: int = 0,
    opened: int = 0,
    clicked: int = 0,
    domain: str = DOMAIN,
    when: datetime = NOW - timedelta(days=1),
) -> None:
    """`sent` messages m0..m{sent-1}; the other events concern the first messages."""
    rows = []
    for kind, count in (
        ("SENT", sent),
        ("DELIVERED", delivered),
        ("BOUNCED", bounced),
        ("COMPLAINED", complained),
        ("OPENED", opened),
        ("CLICKED", clicked),
    ):
        rows += [
            EmailEvent(
                event_type=kind,
                provider="backend" if kind == "SENT" else "Mailgun",
                event_id=None if kind == "SENT" else uuid.uuid4().hex,
                message_id=f"<m{i}@{domain}>",
                email=f"r{i}@example.com",
                sender_domain=domain,
                occurred_at=when,
            )
            for i in range(count)
        ]
    EmailEvent.objects.bulk_create(rows)


@pytest.fixture
def admins():
    return [make_user(is_staff=True, email="ops@example.com"), make_user(is_staff=True, email="cto@example.com")]


@pytest.fixture
def campaigns(monkeypatch):
    """Stands in for yesgoddess.campaigns.services.pause_running_campaigns."""
    calls: list[str] = []

    def pause_running_campaigns(reason: str, now=None, *, domain=None, conditions=None) -> list[int]:
        calls.append(reason)
        return [11, 12] if len(calls) == 1 else []

    module = types.ModuleType("yesgoddess.campaigns.services")
    module.pause_running_campaigns = pause_running_campaigns
    monkeypatch.setitem(__import__("sys").modules, "yesgoddess.campaigns.services", module)
    real = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name == "yesgoddess.campaigns" or real(name))
    return calls


def run(moment: datetime = NOW) -> dict:
    with at(moment):
        return monitor_email_reputation()


def keys(figures: Figures) -> list[str]:
    return [c.key for c in conditions(figures)]


# --- figures, score, thresholds --------------------------------------------------------------


def test_rates_and_score_follow_the_spec():
    f = Figures(sent=1000, delivered=960, bounced=30, complained=1, opened=480, clicked=96)
    values = f.row_values()
    assert values["bounce_rate"] == 0.03 and values["complaint_rate"] == 0.001 and values["delivery_rate"] == 0.96
    assert values["open_rate"] == 0.5 and values["click_rate"] == 0.1
    # 100 - (0.03-0.01)*1000 - 0.001*10000 + (0.96-0.95)*100 + (0.5-0.2)*50 + (0.1-0.05)*100 = 91
    assert f.score == 91
    assert Figures().score == 100 and Figures().row_values()["open_rate"] is None
    assert Figures(sent=100, bounced=100).score == 0  # clamped


@pytest.mark.parametrize(
    ("bounced", "expected"),
    [(19, None), (20, "bounce_rate:warning"), (49, "bounce_rate:warning"), (50, "bounce_rate:critical")],
)
def test_bounce_thresholds_are_inclusive(bounced, expected):
    found = [k for k in keys(Figures(sent=1000, bounced=bounced)) if k.startswith("bounce_rate")]
    assert found == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("complained", "sent", "expected"),
    [
        (9, 10_000, None),
        (10, 10_000, "complaint_rate:warning"),
        (29, 10_000, "complaint_rate:warning"),
        (30, 10_000, "complaint_rate:critical"),
        (1, 1000, "complaint_rate:warning"),
        (3, 1000, "complaint_rate:critical"),
    ],
)
def test_complaint_thresholds_are_inclusive(complained, sent, expected):
    found = [k for k in keys(Figures(sent=sent, complained=complained)) if k.startswith("complaint_rate")]
    assert found == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("complained", "expected"),
    [(2, None), (3, "reputation_score:warning"), (4, "reputation_score:warning"), (5, "reputation_score:critical")],
)
def test_score_thresholds_are_inclusive(complained, expected):
    # 1,000 sends: each complaint costs 10 points (score 80, 70, 60, 50).
    found = [k for k in keys(Figures(sent=1000, complained=complained)) if k.startswith("reputation_score")]
    assert found == ([expected] if expected else [])


@pytest.mark.parametrize(
    ("delivered", "expected"),
    [
        (0, None),
        (950, None),
        (949, "delivery_rate:warning"),
        (900, "delivery_rate:warning"),
        (899, "delivery_rate:critical"),
    ],
)
def test_delivery_rate_is_judged_once_deliveries_are_reported(delivered, expected):
    found = [k for k in keys(Figures(sent=1000, delivered=delivered)) if k.startswith("delivery_rate")]
    assert found == ([expected] if expected else [])


def test_too_few_sends_are_not_judged(settings):
    settings.EMAIL_REPUTATION_MIN_SENT = 100
    assert keys(Figures(sent=99, bounced=50, complained=50)) == []
    assert "bounce_rate:critical" in keys(Figures(sent=100, bounced=50))


# --- the job ------------------------------------------------------------------------------------


def test_a_day_row_from_the_last_30_days_of_events(admins):
    events(1000, delivered=970, bounced=10, opened=300, clicked=40)
    events(500, when=NOW - timedelta(days=30, seconds=1))  # outside the window
    EmailEvent.objects.create(  # a second open of the same message counts once
        event_type="OPENED", provider="Mailgun", event_id="again", message_id="<m0@yesgoddess.local>",
        email="r0@example.com", sender_domain=DOMAIN, occurred_at=NOW - timedelta(hours=1),
    )  # fmt: skip
    result = run()
    row = EmailReputationMetric.objects.get()
    assert (row.date, row.sender_domain) == (date(2027, 3, 8), DOMAIN)
    assert (row.sent, row.delivered, row.bounced, row.complained, row.opened, row.clicked) == (
        1000,
        970,
        10,
        0,
        300,
        40,
    )
    assert row.bounce_rate == 0.01 and row.delivery_rate == 0.97 and row.open_rate == pytest.approx(300 / 970)
    assert row.warnings == [] and result["alerts"] == 0 and result["scores"] == {DOMAIN: row.reputation_score}
    assert not Notification.objects.exists() and mail.outbox == []


def test_one_row_per_sender_domain():
    events(200, bounced=20, domain="news.example")
    events(200, domain="mail.example")
    run()
    rows = {r.sender_domain: r for r in EmailReputationMetric.objects.all()}
    assert set(rows) == {"news.example", "mail.example", DOMAIN}  # the configured domain always gets its row
    assert rows["news.example"].bounce_rate == 0.1 and rows["mail.example"].bounce_rate == 0
    assert rows[DOMAIN].sent == 0


def test_a_rerun_the_same_day_replaces_the_row_and_alerts_nobody_twice(admins):
    events(1000, bounced=20)
    first = run()
    assert first["alerts"] == 1 and first["admin_emails"] == 2
    notes = Notification.objects.all()
    assert notes.count() == 2 and {n.user_id for n in notes} == {a.pk for a in admins}
    note = notes.first()
    assert (note.type, note.priority, note.title) == ("SYSTEM", "HIGH", "Email Reputation Alert")
    assert note.message.startswith("Elevated bounce rate: Review list quality")
    assert note.metadata["alerts"][0]["key"] == "bounce_rate:warning"
    assert sorted(m.to[0] for m in mail.outbox) == ["cto@example.com", "ops@example.com"]

    events(0, delivered=975)  # new events arrive; the rerun recomputes
    second = run(NOW + timedelta(hours=3))
    row = EmailReputationMetric.objects.get()
    assert row.delivered == 975 and second["alerts"] == 0 and second["admin_emails"] == 0
    assert Notification.objects.count() == 2 and len(mail.outbox) == 2


def test_a_warning_that_turns_critical_the_same_day_is_reported(admins, campaigns):
    events(1000, bounced=20)
    run()
    assert campaigns == []
    events(0, bounced=30)  # 50 of 1,000 now
    result = run(NOW + timedelta(hours=1))
    assert result["alerts"] >= 1 and result["campaigns_paused"] == 2
    latest = Notification.objects.order_by("-pk").first()
    assert latest.priority == "URGENT" and latest.message.startswith("Critical bounce rate detected")
    row = EmailReputationMetric.objects.get()
    assert "bounce_rate:warning" in row.alerted and "bounce_rate:critical" in row.alerted
    assert row.campaigns_paused == 2 and latest_is_critical(DOMAIN)


def test_the_next_day_a_lasting_condition_is_reported_again(admins):
    events(1000, complained=1)
    run()
    run(NOW + timedelta(days=1))
    assert EmailReputationMetric.objects.count() == 2
    assert Notification.objects.filter(user=admins[0]).count() == 2


@pytest.mark.parametrize("bounced", [49, 50])
def test_campaigns_are_paused_only_at_the_critical_level(admins, campaigns, bounced):
    events(1000, bounced=bounced)
    result = run()
    if bounced == 50:
        assert len(campaigns) == 1 and campaigns[0].startswith(f"Email reputation of {DOMAIN} is critical")
        assert result["campaigns_paused"] == 2
    else:
        assert campaigns == [] and result["campaigns_paused"] == 0


def test_critical_complaints_pause_on_every_run_while_they_last(admins, campaigns):
    events(1000, complained=3)
    run()
    run(NOW + timedelta(hours=2))  # a campaign resumed meanwhile would be paused again
    assert len(campaigns) == 2
    assert EmailReputationMetric.objects.get().campaigns_paused == 2  # the second call paused none


class DownBackend(LocmemBackend):
    down = True

    def open(self):
        if DownBackend.down:
            raise smtplib.SMTPConnectError(421, b"try later")
        return True


def test_an_alert_email_that_could_not_go_out_is_sent_by_the_retry(admins, settings):
    settings.EMAIL_BACKEND = "tests.test_reputation.DownBackend"
    DownBackend.down = True
    events(1000, bounced=20)
    with pytest.raises(smtplib.SMTPConnectError):
        run()
    assert Notification.objects.count() == 2 and mail.outbox == []
    assert EmailReputationMetric.objects.get().emailed == []
    DownBackend.down = False  # RQ's retry
    assert run(NOW + timedelta(minutes=1))["admin_emails"] == 2
    assert Notification.objects.count() == 2 and len(mail.outbox) == 2


def test_bad_domain_argument_is_refused():
    from yesgoddess.core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        monitor_email_reputation(domain="  ")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_runs_through_a_real_worker(run_worker, admins):
    from django.utils import timezone

    events(1000, bounced=60, when=timezone.now() - timedelta(hours=1))  # the worker runs at the real time
    enqueue("reputation-monitoring")
    run_worker("scheduled")
    row = EmailReputationMetric.objects.get(sender_domain=DOMAIN)
    assert row.bounce_rate == 0.06 and "bounce_rate:critical" in row.alerted
    assert Notification.objects.filter(priority="URGENT").count() == 2


def test_alert_template_renders_every_variable(settings):
    settings.API_URL = "https://api.example"
    row = EmailReputationMetric(
        date=date(2027, 3, 8), sender_domain=DOMAIN, campaigns_paused=2, **Figures(sent=1000, bounced=60).row_values()
    )
    found = conditions(Figures(sent=1000, bounced=60))
    subject, text, html = render_email("reputation_alert", alert_context(row, found))
    assert subject == f"[Critical] Email reputation alert for {DOMAIN}"
    assert "CRITICAL: Critical bounce rate detected: 6.00% (threshold 5.00%)" in text
    assert "2 running campaigns paused." in text and "Bounce rate 6.00%" in text and "open rate n/a" in text
    assert "Reputation score: 50/100" in text and "https://api.example/admin/emailing/emailreputationmetric/" in text
    assert "<strong>CRITICAL: Critical bounce rate detected</strong>" in html and "<strong>50</strong>/100" in html
    assert describe(found[0])["shown"] == "6.00%"


@pytest.mark.skipif(not apps.is_installed("yesgoddess.campaigns"), reason="the campaigns app is not installed")
def test_critical_level_pauses_real_running_campaigns(admins):
    from yesgoddess.campaigns.models import CampaignStatus, EmailCampaign

    template = EmailCampaign._meta.get_field("template").choices[0][0]
    running, done = (
        EmailCampaign.objects.create(
            name=name, created_by=admins[0], status=status, template=template, subject="Spring news"
        )
        for name, status in (("running", CampaignStatus.SENDING), ("done", CampaignStatus.COMPLETED))
    )
    events(1000, complained=3)
    assert run()["campaigns_paused"] == 1
    running.refresh_from_db()
    done.refresh_from_db()
    assert running.status == CampaignStatus.PAUSED and "critical" in running.status_reason
    assert done.status == CampaignStatus.COMPLETED


def test_the_admin_page_the_alert_links_to_opens(client, admins):
    events(1000, bounced=20)
    run()
    superuser = make_user(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    assert client.get("/admin/emailing/emailreputationmetric/").status_code == 200
    assert client.get("/admin/emailing/emailevent/").status_code == 200
