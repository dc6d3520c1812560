"""Brand jobs: the admins' verification digest (24 h boundary, 50 listed, once a day),
re-engagement of inactive brands (90-day boundaries, once per 90 days) and the cleanup of
deleted brands (90 days; delete vs anonymise)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs.api import enqueue
from jobs.handlers.brands import check_brand_inactivity, cleanup_brand_data, remind_brand_verifications
from yesgoddess.analytics.models import Event
from yesgoddess.brands.lifecycle import re_engagement_context, verification_context
from yesgoddess.brands.models import Brand, VerificationDigest
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.services import render_email

from .license_factories import make_brand, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 8, 9, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def brand(name: str = "Acme", **fields) -> Brand:
    return make_brand(name, user=fields.pop("user", None) or make_user(), **fields)


@pytest.fixture
def admins(settings):
    settings.ADMIN_EMAILS = ["ops@example.com", "lead@example.com"]
    settings.APP_URL = "https://app.example.com"
    return settings.ADMIN_EMAILS


# --- brand-verification-reminder ---------------------------------------------------------


def test_digest_lists_brands_pending_more_than_24_hours_with_no_upper_bound(admins):
    exactly = brand("Exactly24h", created_at=NOW - timedelta(hours=24))
    just_over = brand("JustOver", created_at=NOW - timedelta(hours=24, seconds=1))
    ancient = brand("Ancient", created_at=NOW - timedelta(days=400))
    brand("Verified", created_at=NOW - 5 * DAY, verification_status="verified")
    brand("Rejected", created_at=NOW - 5 * DAY, verification_status="rejected")
    brand("Deleted", created_at=NOW - 5 * DAY, deleted_at=NOW - DAY)

    with at(NOW):
        result = remind_brand_verifications()

    assert result == {"pending": 2, "listed": 2, "sent": 2, "refused": 0, "unsent": 0}
    assert sorted(a for m in mail.outbox for a in m.to) == sorted(admins)  # one message each
    message = mail.outbox[0]
    assert message.subject == "2 Brands Awaiting Verification"
    assert "Ancient" in message.body and "JustOver" in message.body and "Exactly24h" not in message.body
    assert message.body.index("Ancient") < message.body.index("JustOver")  # oldest first
    assert f"https://app.example.com/admin/brands/{just_over.pk}/verify" in message.body
    assert f"https://app.example.com/admin/brands/{ancient.pk}/verify" in message.body
    assert f"/admin/brands/{exactly.pk}/verify" not in message.body
    assert "pending since March 7, 2027 08:59 UTC" in message.body


def test_digest_once_a_day_and_nothing_when_none_pending(admins):
    with at(NOW):
        assert remind_brand_verifications() == {"pending": 0, "sent": 0}
    assert mail.outbox == [] and not VerificationDigest.objects.exists()
    brand("Waiting", created_at=NOW - 2 * DAY)
    with at(NOW):
        remind_brand_verifications()
    with at(NOW + timedelta(hours=3)):  # a retry or a manual run the same day
        assert remind_brand_verifications()["skipped"] == "already sent today"
    assert len(mail.outbox) == 2
    with at(NOW + DAY):  # still waiting the next day: the daily digest again
        assert remind_brand_verifications()["sent"] == 2
    assert len(mail.outbox) == 4


def test_digest_lists_fifty_and_counts_the_rest(admins):
    for i in range(55):
        brand(f"Brand {i:02d}", created_at=NOW - 2 * DAY - timedelta(minutes=i))
    with at(NOW):
        result = remind_brand_verifications()
    assert result["pending"] == 55 and result["listed"] == 50
    body = mail.outbox[0].body
    assert mail.outbox[0].subject == "55 Brands Awaiting Verification"
    assert body.count("/verify") == 50 and "... and 5 more not listed here." in body
    assert "Brand 54" in body and "Brand 04" not in body  # the 50 waiting longest


def test_digest_without_admin_addresses_sends_nothing(settings):
    settings.ADMIN_EMAILS = []
    brand("Waiting", created_at=NOW - 2 * DAY)
    with at(NOW):
        assert remind_brand_verifications()["no_recipients"] == 1
    assert mail.outbox == []


def test_verification_digest_renders_with_the_job_context(admins):
    pending = [brand("Zeta & Co", created_at=NOW - 3 * DAY)]
    subject, text, html = render_email("brand_verification_reminder", verification_context(pending, 1, NOW))
    assert subject == "1 Brand Awaiting Verification"
    assert "1 brand is waiting for verification" in text
    assert "- Zeta & Co: pending since March 5, 2027 09:00 UTC (3\xa0days)" in text
    assert f"Verify: https://app.example.com/admin/brands/{pending[0].pk}/verify" in text
    assert "Zeta &amp; Co" in html and f'href="https://app.example.com/admin/brands/{pending[0].pk}/verify"' in html


# --- brand-inactivity-check --------------------------------------------------------------


def verified(name: str = "Quiet", **fields) -> Brand:
    fields.setdefault("created_at", NOW - 200 * DAY)
    return brand(name, verification_status="verified", **fields)


def contact(email: str, name: str = "Pat Contact") -> dict:
    return {"primaryContact": {"name": name, "title": "CMO", "email": email}}


def test_inactive_brand_is_re_engaged_at_its_primary_contact_else_its_account(admins):
    quiet = verified("Quiet", contact_info=contact("pat@quiet.example"))
    fallback = verified("Fallback", user=make_user(email="owner@fallback.example"))
    with at(NOW):
        result = check_brand_inactivity()
    assert result["sent"] == 2
    assert [m.to for m in mail.outbox if "pat@quiet.example" in m.to] == [["pat@quiet.example"]]
    assert any("owner@fallback.example" in m.to for m in mail.outbox)
    assert {m.subject for m in mail.outbox} == {"We Miss You on YesGoddess"}
    quiet.refresh_from_db()
    assert quiet.re_engagement_sent_at == NOW
    assert Event.objects.filter(event_type="brand.re_engagement_sent", source="system").count() == 2
    assert fallback.pk in set(Event.objects.values_list("brand_id", flat=True))


@pytest.mark.parametrize(
    ("setup", "re_engaged"),
    [
        (lambda b: make_project(b, created_at=NOW - 90 * DAY), True),  # exactly 90 days ago: outside
        (lambda b: make_project(b, created_at=NOW - 90 * DAY + timedelta(seconds=1)), False),
        (lambda b: make_license(brand=b, created_at=NOW - 90 * DAY), True),
        (lambda b: make_license(brand=b, created_at=NOW - 89 * DAY), False),
        (lambda b: Brand.objects.filter(pk=b.pk).update(created_at=NOW - 90 * DAY), True),  # old enough
        (lambda b: Brand.objects.filter(pk=b.pk).update(created_at=NOW - 89 * DAY), False),  # too new
        (lambda b: Brand.objects.filter(pk=b.pk).update(verification_status="pending"), False),
        (lambda b: Brand.objects.filter(pk=b.pk).update(deleted_at=NOW - DAY), False),
    ],
)
def test_inactivity_boundaries(setup, re_engaged):
    b = verified(contact_info=contact("pat@quiet.example"))
    setup(b)
    with at(NOW):
        assert check_brand_inactivity()["sent"] == int(re_engaged)


def test_re_engagement_at_most_once_per_ninety_days():
    verified(contact_info=contact("pat@quiet.example"))
    sent_on = []
    for week in range(30):  # every Monday for 30 weeks
        moment = NOW + timedelta(weeks=week, seconds=-week)  # each run a little earlier
        with at(moment):
            if check_brand_inactivity()["sent"]:
                sent_on.append(week)
    assert sent_on == [0, 13, 26]  # 91 days is the first Monday past 90


def test_re_engagement_email_renders_with_the_job_context(admins):
    b = verified("Acme & Sons", contact_info=contact("pat@acme.example", name="Pat"))
    subject, text, html = render_email("brand_re_engagement", re_engagement_context(b))
    assert subject == "We Miss You on YesGoddess"
    assert text.startswith("Hello Pat,")
    assert "since Acme & Sons started a project" in text and "in the last 90 days" in text
    assert "https://app.example.com/projects/new" in text
    assert 'href="https://app.example.com/projects/new"' in html and "Acme &amp; Sons" in html


# --- brand-data-cleanup -----------------------------------------------------------------


def with_files(b: Brand) -> Brand:
    b.logo.save("logo.png", ContentFile(b"png"), save=False)
    b.brand_guidelines.save("guidelines.pdf", ContentFile(b"%PDF"), save=False)
    b.save()
    return b


def test_brand_deleted_more_than_ninety_days_ago_is_deleted_with_its_files():
    gone = with_files(brand("Gone", deleted_at=NOW - 90 * DAY - timedelta(seconds=1)))
    kept = with_files(brand("Kept", deleted_at=NOW - 90 * DAY))  # exactly 90 days: not yet
    live = brand("Live")
    files = [gone.logo.name, gone.brand_guidelines.name]
    assert all(default_storage.exists(name) for name in files)

    with at(NOW):
        result = cleanup_brand_data()

    assert result == {"deleted": 1, "anonymised": 0, "still_referenced": 0, "errors": 0}
    assert not Brand.objects.filter(pk=gone.pk).exists()
    assert not any(default_storage.exists(name) for name in files)
    assert Brand.objects.filter(pk__in=[kept.pk, live.pk]).count() == 2
    assert default_storage.exists(kept.logo.name)
    audit = AuditEvent.objects.get(action="BRAND_PERMANENTLY_DELETED")
    assert audit.entity_id == str(gone.pk) and "Gone" not in str(audit.after)
    assert gone.user.__class__.objects.filter(pk=gone.user_id).exists()  # the account stays


@pytest.mark.parametrize("reference", ["license", "project"])
def test_referenced_brand_is_anonymised_instead_and_reported(reference):
    b = with_files(
        brand(
            "Referenced",
            deleted_at=NOW - 120 * DAY,
            contact_info=contact("pat@ref.example"),
            billing_info={"billingEmail": "billing@ref.example", "taxId": "X1"},
            website="https://ref.example",
            description="We sell things",
            industry="Retail",
            verification_notes="called Pat",
        )
    )
    files = [b.logo.name, b.brand_guidelines.name]
    if reference == "license":
        make_license(brand=b)
    else:
        make_project(b)

    with at(NOW):
        result = cleanup_brand_data()

    assert result == {"deleted": 0, "anonymised": 1, "still_referenced": 0, "errors": 0}
    b.refresh_from_db()
    assert b.name == f"Deleted brand {b.pk}" and b.anonymised_at == NOW
    assert (b.contact_info, b.billing_info, b.website, b.description, b.industry, b.verification_notes) == (None,) * 6
    assert b.logo.name == "" and b.brand_guidelines.name == ""
    assert not any(default_storage.exists(name) for name in files)
    audit = AuditEvent.objects.get(action="BRAND_ANONYMISED")
    assert audit.entity_id == str(b.pk)
    expected = "licensing.License" if reference == "license" else "projects.Project"
    assert expected in audit.after["referenced_by"]

    with at(NOW + 31 * DAY):  # next month: still referenced, nothing more to do
        assert cleanup_brand_data() == {"deleted": 0, "anonymised": 0, "still_referenced": 1, "errors": 0}
    assert AuditEvent.objects.count() == 1


def test_anonymised_brand_is_deleted_once_nothing_references_it():
    b = brand("Referenced", deleted_at=NOW - 120 * DAY)
    project = make_project(b)
    with at(NOW):
        cleanup_brand_data()
    project.delete()
    with at(NOW + 31 * DAY):
        assert cleanup_brand_data()["deleted"] == 1
    assert not Brand.objects.filter(pk=b.pk).exists()


def test_storage_failure_keeps_the_brand_for_next_month(monkeypatch):
    b = with_files(brand("Stuck", deleted_at=NOW - 120 * DAY))

    def broken(name):
        raise OSError("storage unavailable")

    monkeypatch.setattr("yesgoddess.core.storage.AtomicFileSystemStorage.delete", lambda self, name: broken(name))
    with at(NOW):
        assert cleanup_brand_data()["errors"] == 1
    assert Brand.objects.filter(pk=b.pk).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_brand_jobs_run_in_a_real_worker(run_worker):
    gone = brand("Gone", deleted_at=datetime.now(UTC) - 100 * DAY)
    enqueue("brand-data-cleanup")
    enqueue("brand-verification-reminder")
    enqueue("brand-inactivity-check")
    run_worker("scheduled")
    assert not Brand.objects.filter(pk=gone.pk).exists()
