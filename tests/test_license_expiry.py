"""License expiry lifecycle: 90/60/30-day notices, grace, expiry, re-engagement, drafts.

Times are frozen; a license ends at END and the jobs run at chosen distances from it.
"""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from jobs.api import enqueue
from yesgoddess.analytics.models import Event
from yesgoddess.core.models import AuditEvent
from yesgoddess.licensing import eligibility, expiry, pricing, renewal_workflow
from yesgoddess.licensing.models import License, LicenseStatus, LicenseStatusHistory, RenewalOffer
from yesgoddess.licensing.transitions import InvalidTransition, transition, transition_many
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import render_email
from yesgoddess.projects.models import ProjectStatus

from .concurrency import run_twice_at_once
from .email_backends import DroppingBackend
from .license_factories import make_asset, make_brand, make_creator, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

END = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def run_monitor(moment: datetime) -> dict[str, int]:
    with at(moment):
        return expiry.send_expiry_notices()


def run_auto_expiry(moment: datetime) -> dict[str, int]:
    with at(moment):
        return expiry.expire_due_licenses()


@pytest.fixture
def world():
    brand = make_brand("Acme", user=make_user(email="brand@example.com", first_name="Bea", last_name="Brand"))
    owners = [make_creator("Ana"), make_creator("Ben")]
    asset = make_asset((owners[0], 6000), (owners[1], 4000), title="Sunset")
    project = make_project(brand, status=ProjectStatus.ACTIVE)
    license = make_license(brand=brand, asset=asset, end=END, project=project)
    return license, brand, owners


def subjects_to(address: str) -> list[str]:
    return [m.subject for m in mail.outbox if address in m.to]


@pytest.mark.parametrize(
    ("stage", "marker", "subject"),
    [
        (90, "ninety_day_notice_sent_at", "License Expiry Notice: Sunset"),
        (60, "sixty_day_notice_sent_at", "License Expires in 60 Days: Sunset"),
        (30, "thirty_day_notice_sent_at", "Action Required: License Expires in 30 Days"),
    ],
)
def test_each_notice_goes_once_inside_its_three_day_window(world, stage, marker, subject):
    license, _brand, owners = world
    run_monitor(END - timedelta(days=stage + 2))  # one day before the window
    assert mail.outbox == []
    for days in (stage + 1, stage, stage - 1):  # the window: sent at the first run, once
        run_monitor(END - timedelta(days=days))
    assert subjects_to("brand@example.com") == [subject]
    for owner in owners:
        assert subjects_to(owner.user.email) == [subject]
    license.refresh_from_db()
    assert getattr(license, marker) == END - timedelta(days=stage + 1)
    assert Event.objects.filter(event_type="license.expiry_notification_sent", license=license).count() == 1
    assert AuditEvent.objects.get(action="expiry_notification_sent").after["notificationStage"] == f"{stage}_day_notice"


def test_no_catch_up_for_a_license_created_late(world):
    _license, _, _ = world
    run_monitor(END - timedelta(days=45))
    assert mail.outbox == []
    run_monitor(END - timedelta(days=31))
    assert subjects_to("brand@example.com") == ["Action Required: License Expires in 30 Days"]


def test_thirty_day_stage_notifies_in_app_and_marks_expiring_soon(world):
    license, brand, owners = world
    counts = run_monitor(END - timedelta(days=30))
    assert counts["notices_30d"] == 1 and counts["marked_expiring_soon"] == 1
    license.refresh_from_db()
    assert license.status == LicenseStatus.EXPIRING_SOON
    history = LicenseStatusHistory.objects.get(license=license)
    assert (history.from_status, history.to_status) == ("ACTIVE", "EXPIRING_SOON")
    notes = {n.user_id: n for n in Notification.objects.all()}
    assert set(notes) == {brand.user_id, owners[0].user_id, owners[1].user_id}
    assert notes[brand.user_id].message == 'Your license for "Sunset" expires on June 15, 2027. Review renewal options.'
    assert notes[owners[0].user_id].message == 'The license for "Sunset" with Acme expires on June 15, 2027.'
    assert notes[brand.user_id].priority == "HIGH"
    # A second run: nothing sent, nothing moved, no second notification.
    assert run_monitor(END - timedelta(days=29)) == {
        "notices_90d": 0,
        "notices_60d": 0,
        "notices_30d": 0,
        "marked_expiring_soon": 0,
    }
    assert Notification.objects.count() == 3 and len(mail.outbox) == 3


def test_ninety_day_notice_carries_the_pending_renewal_offer(world):
    license, _, _ = world
    offer = RenewalOffer.objects.create(
        license=license,
        original_fee_cents=500_000,
        fee_cents=525_000,
        rev_share_bps=0,
        start_date=END + timedelta(days=1),
        end_date=END + timedelta(days=366),
        duration_days=365,
        adjustments=[{"label": "Inflation", "percent": 5.0}],
        expires_at=END - timedelta(days=60),
    )
    run_monitor(END - timedelta(days=90))
    [brand_mail] = [m for m in mail.outbox if "brand@example.com" in m.to]
    assert "$5,250.00 (was $5,000.00, +5.0%)" in brand_mail.body
    assert f"/licenses/{license.pk}/renewal/{offer.pk}" in brand_mail.body
    assert "Inflation: +5.0%" in brand_mail.body
    creator_mail = next(m for m in mail.outbox if "brand@example.com" not in m.to)
    assert "renewal" not in creator_mail.body.lower()  # the offer is the brand's
    license.refresh_from_db()
    assert license.renewal_notified_at == END - timedelta(days=90)


def test_grace_then_expiry_through_hourly_runs(world):
    license, brand, owners = world
    run_monitor(END - timedelta(days=30))  # EXPIRING_SOON
    mail.outbox.clear()
    # Hourly runs from the end date to the end of grace: one grace email.
    moment = END + timedelta(minutes=5)
    while moment < END + timedelta(days=7):
        run_auto_expiry(moment)
        moment += timedelta(hours=1)
    assert subjects_to("brand@example.com") == ["Grace Period Active: Sunset"]
    assert [m.subject for m in mail.outbox] == ["Grace Period Active: Sunset"]  # brand only
    license.refresh_from_db()
    assert license.status == LicenseStatus.EXPIRING_SOON
    assert license.grace_period_end_date == END + timedelta(days=7)
    assert "June 22, 2027" in mail.outbox[0].body

    counts = run_auto_expiry(END + timedelta(days=7, minutes=5))
    assert counts["expired"] == 1 and counts["expired_notices"] == 1
    license.refresh_from_db()
    assert license.status == LicenseStatus.EXPIRED
    assert license.expired_at == END + timedelta(days=7, minutes=5)
    last = LicenseStatusHistory.objects.filter(license=license).latest("pk")
    assert (last.from_status, last.to_status, last.reason) == ("EXPIRING_SOON", "EXPIRED", "Grace period ended")
    assert subjects_to("brand@example.com")[-1] == "License Expired: Sunset"
    assert all(subjects_to(o.user.email) == ["License Expired: Sunset"] for o in owners)
    assert Notification.objects.filter(user=brand.user, title="License Expired").count() == 1
    license.project.refresh_from_db()
    assert license.project.status == ProjectStatus.COMPLETED
    sent = len(mail.outbox)
    run_auto_expiry(END + timedelta(days=7, hours=1))
    assert len(mail.outbox) == sent and Notification.objects.filter(title="License Expired").count() == 1


def test_zero_grace_expires_at_the_end_date_without_a_grace_email(world):
    license, _, _ = world
    License.objects.filter(pk=license.pk).update(grace_period_days=0)
    counts = run_auto_expiry(END + timedelta(minutes=1))
    assert counts["expired"] == 1 and counts["grace_emails"] == 0
    license.refresh_from_db()
    assert license.status == LicenseStatus.EXPIRED
    steps = list(LicenseStatusHistory.objects.filter(license=license).values_list("from_status", "to_status"))
    assert steps == [("ACTIVE", "EXPIRING_SOON"), ("EXPIRING_SOON", "EXPIRED")]
    assert "Grace Period Active: Sunset" not in subjects_to("brand@example.com")


def test_project_with_another_license_in_force_is_not_completed(world):
    license, brand, _ = world
    make_license(brand=brand, project=license.project, end=END + timedelta(days=200))
    License.objects.filter(pk=license.pk).update(grace_period_days=0)
    run_auto_expiry(END + timedelta(minutes=1))
    license.project.refresh_from_db()
    assert license.project.status == ProjectStatus.ACTIVE


def test_re_engagement_once_thirty_days_after_expiry_unless_renewed(world):
    license, brand, _ = world
    renewed = make_license(brand=brand, end=END)
    for lic in (license, renewed):
        License.objects.filter(pk=lic.pk).update(grace_period_days=0)
    run_auto_expiry(END + timedelta(minutes=1))
    make_license(brand=brand, asset=renewed.ip_asset, parent_license=renewed, status=LicenseStatus.PENDING_APPROVAL)
    mail.outbox.clear()
    run_auto_expiry(END + timedelta(days=29, hours=23))
    assert mail.outbox == []
    run_auto_expiry(END + timedelta(days=30, hours=1))
    run_auto_expiry(END + timedelta(days=30, hours=2))
    assert [m.subject for m in mail.outbox] == ['Relicense "Sunset"?']
    license.refresh_from_db()
    assert license.re_engagement_sent_at is not None


def test_refused_brand_address_is_retried_next_run_and_refused_creator_is_not(settings, world):
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    license, brand, owners = world
    brand.user.email = "refuse-brand@example.com"
    brand.user.save()
    owners[0].user.email = "refuse-ana@example.com"
    owners[0].user.save()
    counts = run_monitor(END - timedelta(days=90))
    assert counts["notices_90d"] == 0
    license.refresh_from_db()
    assert license.ninety_day_notice_sent_at is None
    brand.user.email = "brand@example.com"
    brand.user.save()
    assert run_monitor(END - timedelta(days=89))["notices_90d"] == 1
    assert subjects_to("brand@example.com") == ["License Expiry Notice: Sunset"]
    # The owners' notices ride on the brand's: none went with the refused one, so the
    # brand's retry gives the other owner the notice once.
    assert subjects_to(owners[1].user.email) == ["License Expiry Notice: Sunset"]


def test_deleted_and_inactive_licenses_are_left_alone(world):
    license, brand, _ = world
    License.objects.filter(pk=license.pk).update(deleted_at=END - timedelta(days=100))
    make_license(brand=brand, end=END, status=LicenseStatus.SUSPENDED)
    for days in (90, 60, 30):
        run_monitor(END - timedelta(days=days))
    run_auto_expiry(END + timedelta(days=8))
    assert mail.outbox == []
    assert LicenseStatusHistory.objects.count() == 0


def test_stale_drafts_are_canceled_after_ninety_days():
    created = datetime(2027, 1, 1, tzinfo=UTC)
    draft = make_license(status=LicenseStatus.DRAFT, created_at=created)
    with at(created + timedelta(days=90)):
        assert expiry.cancel_stale_drafts() == 0
    with at(created + timedelta(days=90, seconds=1)):
        assert expiry.cancel_stale_drafts() == 1
        assert expiry.cancel_stale_drafts() == 0
    draft.refresh_from_db()
    assert draft.status == LicenseStatus.CANCELED


def test_transition_helper_validates_and_records():
    license = make_license(status=LicenseStatus.EXPIRED)
    with pytest.raises(InvalidTransition, match="from EXPIRED to ACTIVE"):
        transition(license, LicenseStatus.ACTIVE, reason="no")
    # RENEWED needs a renewal: refused (nothing recorded) without one.
    assert transition(license, LicenseStatus.RENEWED, reason="renewed") is False
    make_license(brand=license.brand, asset=license.ip_asset, parent_license=license, status="PENDING_APPROVAL")
    assert transition(license, LicenseStatus.RENEWED, reason="renewed") is True
    history = LicenseStatusHistory.objects.get(license=license)
    assert (history.from_status, history.to_status, history.metadata) == ("EXPIRED", "RENEWED", {"automated": True})
    audit = AuditEvent.objects.get(entity_type="license", entity_id=str(license.pk))
    assert audit.before == {"status": "EXPIRED"} and audit.after["status"] == "RENEWED"
    # A stale read (status changed elsewhere) moves nothing and records nothing.
    assert transition_many([license.pk], "EXPIRED", "RENEWED", reason="again") == []
    assert LicenseStatusHistory.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_monitor_at_once_send_each_notice_once():
    brand = make_brand(user=make_user(email="many@example.com"))
    for _ in range(30):
        make_license(brand=brand, end=END)
    run_twice_at_once(lambda: expiry.send_expiry_notices(now=END - timedelta(days=30)))
    assert len(subjects_to("many@example.com")) == 30
    assert Notification.objects.filter(user=brand.user).count() == 30
    assert LicenseStatusHistory.objects.count() == 30


@pytest.mark.django_db(transaction=True)
def test_auto_expiry_runs_in_a_real_worker(run_worker):
    license = make_license(end=datetime.now(UTC) - timedelta(days=1), grace_period_days=0)
    enqueue("license-auto-expiry")
    run_worker("scheduled")
    license.refresh_from_db()
    assert license.status == LicenseStatus.EXPIRED and license.expired_notice_sent_at is not None


@pytest.mark.parametrize(
    "name", ["license_expiry_notice", "license_grace_period", "license_expired", "license_re_engagement"]
)
@pytest.mark.parametrize("role", ["brand", "creator"])
def test_templates_render_every_variable(name, role):
    context = {
        "license_id": 7,
        "asset_title": "Sunset <b>",
        "brand_name": "Acme",
        "expiry_date": "June 15, 2027",
        "auto_renew": True,
        "license_url": "https://app.example/licenses/7",
        "renewal_url": "https://app.example/licenses/7/renewal",
        "stage": 90,
        "days_remaining": 90,
        "urgency": "informational",
        "user_name": "Bea",
        "recipient_role": role,
        "offer": None,
        "renewal_blocked": None,
        "final_notice_follows": True,
        "grace_end_date": "June 22, 2027",
        "grace_days": 7,
        "expired_on": "June 22, 2027",
    }
    subject, text, html = render_email(name, context)
    assert subject and "Bea" in text and "Bea" in html
    assert "Sunset <b>" in text and "Sunset &lt;b&gt;" in html  # text is plain, HTML escaped
    assert "{{" not in text + html and "None" not in text


def test_sixty_day_notice_is_also_the_renewal_reminder_with_an_offer_at_the_one_price(world):
    license, _, _ = world
    moment = END - timedelta(days=60)
    run_monitor(moment)
    [brand_mail] = [m for m in mail.outbox if "brand@example.com" in m.to]
    check = eligibility.check_eligibility(license, moment)
    terms = pricing.terms_for(license, check)
    assert check.eligible
    # No offer was live (the first lasts 30 days): the notice made one, and shows its stored terms.
    offer = RenewalOffer.objects.get(license=license, status="PENDING")
    assert (offer.fee_cents, offer.created_at, offer.expires_at) == (
        terms.fee_cents,
        moment,
        moment + timedelta(days=30),
    )
    assert f"Fee: {expiry.dollars(offer.fee_cents)} (was $5,000.00" in brand_mail.body
    assert expiry.dollars(offer.fee_cents) in brand_mail.alternatives[0][0]
    assert f"/licenses/{license.pk}/renewal/{offer.pk}" in brand_mail.body
    creator_mail = next(m for m in mail.outbox if "brand@example.com" not in m.to)
    assert "renewal" not in creator_mail.body.lower()


def test_a_crash_mid_batch_sends_nobody_a_second_copy_and_the_retry_sends_the_rest(settings):
    # Four licenses, each with its own brand and one owner: messages go brand, owner, brand, ...
    licenses, owners = [], []
    for i in range(4):
        owner = make_creator(f"Owner {i}")
        asset = make_asset((owner, 10_000), title=f"Asset {i}")
        licenses.append(make_license(brand=make_brand(f"Brand {i}"), asset=asset, end=END))
        owners.append(owner.user.email)
    brands = [lic.brand.user.email for lic in licenses]
    first, retry = END - timedelta(days=30), END - timedelta(days=30) + timedelta(minutes=5)
    backend = DroppingBackend.install(settings, drop_after=4)  # breaks while sending the third brand's
    with pytest.raises(smtplib.SMTPServerDisconnected):
        run_monitor(first)
    assert sorted(a for m in mail.outbox for a in m.to) == sorted(brands[:2] + owners[:2])
    markers = [License.objects.get(pk=lic.pk).thirty_day_notice_sent_at for lic in licenses]
    assert markers[:3] == [first] * 3  # sent, sent, in doubt: kept
    assert markers[3] is None  # never attempted: released for the retry
    told = {licenses[0].pk, licenses[1].pk}
    assert (
        set(Event.objects.filter(event_type="license.expiry_notification_sent").values_list("license", flat=True))
        == told
    )
    notified = AuditEvent.objects.filter(action="expiry_notification_sent").values_list("entity_id", flat=True)
    assert {int(pk) for pk in notified} == told
    assert Notification.objects.count() == 4  # brand and owner of the two sent

    backend.drop_after = None  # RQ's retry, the server back
    counts = run_monitor(retry)
    assert counts["notices_30d"] == 1
    recipients = [a for m in mail.outbox for a in m.to]
    assert len(recipients) == len(set(recipients))  # nobody got a second copy
    assert set(recipients) == set(brands + owners) - {brands[2], owners[2]}  # the one in doubt is not re-sent
    assert License.objects.get(pk=licenses[3].pk).thirty_day_notice_sent_at == retry
    assert Notification.objects.count() == 6
    assert Event.objects.filter(event_type="license.expiry_notification_sent").count() == 3


def test_an_offer_notice_in_doubt_keeps_renewal_notified_at_and_one_never_attempted_gives_it_back(settings, world):
    license, _, _ = world
    RenewalOffer.objects.create(
        license=license,
        original_fee_cents=500_000,
        fee_cents=525_000,
        rev_share_bps=0,
        start_date=END + timedelta(days=1),
        end_date=END + timedelta(days=366),
        duration_days=365,
        adjustments=[],
        expires_at=END - timedelta(days=60),
    )
    # A second license whose notice is never attempted (the connection broke before it).
    unsent = make_license(brand=make_brand("Other"), asset=make_asset((make_creator(), 10_000)), end=END)
    DroppingBackend.install(settings, drop_after=0)  # the first brand's notice is in doubt
    moment = END - timedelta(days=90)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        run_monitor(moment)
    license.refresh_from_db()
    unsent.refresh_from_db()
    # In doubt: it may have gone out with the offer, so neither it nor the offer goes again.
    assert (license.ninety_day_notice_sent_at, license.renewal_notified_at) == (moment, moment)
    # Never attempted: both given back, the retry sends the notice with the offer.
    assert (unsent.ninety_day_notice_sent_at, unsent.renewal_notified_at) == (None, None)

    DroppingBackend.drop_after = None  # the server is back: RQ's retry, then the next workflow run
    retry = moment + timedelta(minutes=5)
    assert run_monitor(retry)["notices_90d"] == 1
    with at(moment + timedelta(hours=17)):  # license-renewal-workflow, 02:00 the next day
        renewal_workflow.run_workflow()
    brand_mail = [m.subject for m in mail.outbox if "brand@example.com" in m.to]
    assert brand_mail == []  # the notice in doubt is not re-sent, nor is its offer sent alone
    [other] = [m for m in mail.outbox if unsent.brand.user.email in m.to]
    assert f"/licenses/{unsent.pk}/renewal/" in other.body
    unsent.refresh_from_db()
    assert unsent.renewal_notified_at == retry
