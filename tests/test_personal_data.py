"""Personal data (issue 21, item 6): every field that looks personal is declared next to its
model; erasing an account leaves nothing that names the person in any table, keeps what
money and licences need by id, and deletes the account once nothing references it; login
records end after their retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import TextField
from django.db.models.functions import Cast

from jobs.api import enqueue
from jobs.handlers.accounts import delete_accounts
from yesgoddess.accounts import cleanup
from yesgoddess.accounts.cleanup import LOGIN_RECORD_RETENTION
from yesgoddess.accounts.models import ApiToken, LoginAttempt, RememberMeToken, SecurityAlert
from yesgoddess.analytics.models import Attribution, Event
from yesgoddess.assets.housekeeping import cleanup_deleted_assets
from yesgoddess.assets.models import IpAsset, IpOwnership
from yesgoddess.brands.models import Brand
from yesgoddess.campaigns.models import CampaignRecipient, DeferredEmail, EmailCampaign
from yesgoddess.core.models import AuditEvent, IdempotencyKey
from yesgoddess.core.privacy import declarations, looks_personal
from yesgoddess.creators.models import Creator
from yesgoddess.emailing.models import EmailEvent, EmailSuppression
from yesgoddess.licensing.models import License
from yesgoddess.messaging.models import Message, MessageThread, ThreadParticipant
from yesgoddess.notifications.models import Notification
from yesgoddess.royalties.models import RoyaltyRun, RoyaltyStatement

from .concurrency import run_twice_at_once
from .license_factories import make_asset, make_brand, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 5, 12, 2, 0, tzinfo=UTC)  # account-deletion's 02:00 run
DAY = timedelta(days=1)
EMAIL = "jane.marker@example.com"
CONTACT = "jane.contact@example.org"
NAME = "Jane Marker"
PHONE = "+1 555 0100 777"
IP = "198.51.100.77"
AGENT = "JaneBrowser/7.7 (Marker)"
# What names Jane, wherever it is written; "marker" also catches her username and stage name.
MARKERS = ("marker", "jane.contact", PHONE, IP, "janebrowser")


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


# --- the declarations ---------------------------------------------------------------------


def all_fields():
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            yield model, field


def test_every_field_that_looks_personal_is_declared_next_to_its_model():
    """A new email, name, phone, address, IP or free-text field fails here until its app's
    personal_data.py says what becomes of it."""
    declared = {(d.model, name) for d in declarations() for name in d.fields}
    missing = sorted(
        f"{model._meta.label}.{field.name}"
        for model, field in all_fields()
        if looks_personal(field) and (model._meta.label, field.name) not in declared
    )
    assert missing == []


def test_declarations_name_real_fields_once_each():
    seen: dict[tuple[str, str], str] = {}
    for declaration in declarations():
        model = apps.get_model(declaration.model)
        for name in declaration.fields:
            model._meta.get_field(name)  # raises for a field that does not exist
            assert (declaration.model, name) not in seen, f"{declaration.model}.{name} declared twice"
            seen[(declaration.model, name)] = declaration.kind
        assert declaration.how, f"{declaration.model}: say what becomes of it"
        assert (declaration.eraser is not None) == (declaration.kind == "erased")


def test_rows_said_to_go_with_the_account_really_cascade_from_it():
    user_model = get_user_model()
    for declaration in declarations():
        if declaration.kind == "deleted_with_account":
            model = apps.get_model(declaration.model)
            cascades = [
                f
                for f in model._meta.concrete_fields
                if f.is_relation and f.related_model is user_model and f.remote_field.on_delete is models.CASCADE
            ]
            assert cascades, f"{declaration.model} has no CASCADE foreign key to the account"


@pytest.mark.parametrize(
    ("field", "personal"),
    [
        (models.CharField(max_length=30), "phone_number"),
        (models.CharField(max_length=30), "full_name"),
        (models.CharField(max_length=30), "billing_address"),
        (models.EmailField(), "backup"),
        (models.GenericIPAddressField(), "origin"),
        (models.TextField(), "anything"),
        (models.JSONField(), "contact_details"),
        (models.FileField(), "id_scan"),
    ],
)
def test_the_rule_flags_a_new_personal_field(field, personal):
    field.set_attributes_from_name(personal)
    assert looks_personal(field)


@pytest.mark.parametrize(
    "field",
    [models.CharField(max_length=16), models.JSONField(), models.IntegerField(), models.BooleanField()],
)
def test_the_rule_leaves_plain_columns_alone(field):
    field.set_attributes_from_name("status")
    assert not looks_personal(field)


# --- erasing an account --------------------------------------------------------------------


def rows_naming_jane() -> set[str]:
    """Every text, JSON and address column of every table, searched for Jane's markers."""
    found = set()
    for model, field in all_fields():
        if field.is_relation or not isinstance(
            field, models.CharField | models.TextField | models.JSONField | models.GenericIPAddressField
        ):
            continue
        rows = model._base_manager.annotate(_text=Cast(field.name, TextField()))
        for marker in MARKERS:
            if rows.filter(_text__icontains=marker).exists():
                found.add(f"{model._meta.label}.{field.name}")
    return found


@pytest.fixture
def jane():
    """Jane: a creator (a licensed work with royalties, an unlicensed one) and a brand owner
    (a licence), with the traces an account leaves everywhere, two days before the run.
    Bob is someone else."""
    with at(NOW - 2 * DAY):
        return traces_of_jane()


def traces_of_jane() -> dict:
    bob = make_user(email="bob@example.com", first_name="Bob")
    user = get_user_model().objects.create_user(
        "jane.marker", EMAIL, "pw", first_name="Jane", last_name="Marker", deleted_at=NOW - 31 * DAY
    )
    creator = Creator.objects.create(user=user, display_name="Jane Marker Studio", verification_status="approved")
    licensed = make_asset((creator, 10_000), title="Harbour at dawn", created_by=user, original_filename="dawn.jpg")
    unlicensed = make_asset((creator, 10_000), title="Draft", created_by=user, description=f"by {NAME}")
    brand = make_brand(
        "Marker Goods",
        user=user,
        website="https://marker.example",
        description=f"{NAME}'s shop",
        contact_info={"primaryContact": {"name": NAME, "email": CONTACT, "phone": PHONE}},
        billing_info={"billingEmail": "jane.billing@example.org", "billingAddress": {"street": "1 Marker Lane"}},
        verification_notes=f"called {NAME}",
    )
    licence = make_license(asset=licensed, brand=make_brand("Other"), end=NOW + 90 * DAY)
    make_license(brand=brand, end=NOW + 90 * DAY)
    run = RoyaltyRun.objects.create(
        period_start=NOW - 60 * DAY, period_end=NOW - 31 * DAY, status="LOCKED", created_by=bob
    )
    statement = RoyaltyStatement.objects.create(royalty_run=run, creator=creator, total_earnings_cents=4_200)

    LoginAttempt.objects.create(user=user, email=EMAIL, ip_address=IP, user_agent=AGENT, success=True)
    LoginAttempt.objects.create(email=EMAIL, ip_address=IP, user_agent=AGENT)  # before the account existed
    LoginAttempt.objects.create(user=bob, email="bob@example.com", ip_address="203.0.113.5", user_agent="Bob/1")
    SecurityAlert.objects.create(kind="account-failures", subject=EMAIL, window_start=NOW - 40 * DAY, failures=11)
    RememberMeToken.objects.create(
        user=user, token_hash="r", device_info=f"{NAME}'s phone", ip_address=IP, user_agent=AGENT,
        expires_at=NOW + DAY,
    )  # fmt: skip
    ApiToken.objects.issue(user, name=f"{NAME} laptop")
    IdempotencyKey.objects.create(
        user=user, key="k", entity_type="x", expires_at=NOW + DAY, response_body={"email": EMAIL}
    )
    Notification.objects.create(user=user, type="SYSTEM", title="Hi", message=f"Hello {NAME}")
    EmailEvent.objects.create(
        event_type="CLICKED", provider="backend", email=EMAIL, user=user, subject=f"For {NAME}",
        user_agent=AGENT, click_url=f"https://x.example/?who={EMAIL}", metadata={"to": EMAIL},
    )  # fmt: skip
    EmailEvent.objects.create(event_type="SENT", provider="backend", email=CONTACT, subject="Brand news")
    EmailEvent.objects.create(event_type="SENT", provider="backend", email="bob@example.com", user=bob)
    EmailSuppression.objects.create(email=EMAIL, reason="UNSUBSCRIBE")
    campaign = EmailCampaign.objects.create(name="Spring", template="campaign_announcement", subject="Spring")
    waiting = CampaignRecipient.objects.create(
        campaign=campaign, user=user, email=EMAIL, personalization={"user_name": NAME}
    )
    CampaignRecipient.objects.create(campaign=campaign, email=CONTACT, status="SENT", error=f"{CONTACT} full")
    DeferredEmail.objects.create(user=user, category="campaigns", subject=f"For {NAME}", summary="s", link="l")
    thread = MessageThread.objects.create(subject="Licensing question")
    ThreadParticipant.objects.create(thread=thread, user=user)
    ThreadParticipant.objects.create(thread=thread, user=bob)
    Message.objects.create(thread=thread, sender=user, recipient=bob, body=f"{NAME} here, call {PHONE}")
    Message.objects.create(thread=thread, sender=bob, recipient=user, body="Hello Jane Marker")
    event = Event.objects.create(
        source="web", event_type="page_viewed", user_id=user.pk, actor_type="user", actor_id=str(user.pk),
        props_json={"userAgent": AGENT, "email": EMAIL, "revenueCents": 5},
    )  # fmt: skip
    Attribution.objects.create(event=event, referrer=f"https://x.example/?m={EMAIL}", browser="Firefox")
    LogEntry.objects.create(
        user=bob, content_type=ContentType.objects.get_for_model(user), object_id=str(user.pk),
        object_repr="jane.marker", action_flag=CHANGE,
    )  # fmt: skip
    LogEntry.objects.create(
        user=bob, content_type=ContentType.objects.get_for_model(Brand), object_id=str(brand.pk),
        object_repr=brand.name, action_flag=CHANGE,
    )  # fmt: skip
    return {
        "user": user,
        "bob": bob,
        "creator": creator,
        "brand": brand,
        "licensed": licensed,
        "unlicensed": unlicensed,
        "licence": licence,
        "statement": statement,
        "waiting": waiting,
        "thread": thread,
    }


def test_erasing_an_account_leaves_nothing_that_names_the_person(jane):
    before = {column.rsplit(".", 1)[0] for column in rows_naming_jane()}
    # The fixture exercises every eraser: a new one needs Jane's traces in its model here.
    assert {d.model for d in declarations() if d.kind == "erased"} <= before
    email_events = EmailEvent.objects.count()

    with at(NOW):
        result = delete_accounts()

    assert (result["deleted"], result["anonymised"], result["errors"]) == (0, 1, 0)
    assert EmailEvent.objects.count() == email_events  # erased, not deleted: the counts stay
    # Only the suppression list still holds the address: kept so that it is never emailed.
    assert rows_naming_jane() == {"emailing.EmailSuppression.email"}

    # Someone else's records are untouched.
    bob = jane["bob"]
    assert LoginAttempt.objects.filter(user=bob, ip_address="203.0.113.5").exists()
    assert EmailEvent.objects.filter(email="bob@example.com").exists()
    assert MessageThread.objects.filter(pk=jane["thread"].pk).exists()  # Bob's conversation stays


def test_money_and_licences_keep_the_erased_account_by_id(jane):
    with at(NOW):
        delete_accounts()
    user, creator, brand = jane["user"], jane["creator"], jane["brand"]
    user.refresh_from_db()
    assert (user.username, user.email, user.is_active, user.anonymised_at) == (f"deleted-{user.pk}", "", False, NOW)
    creator.refresh_from_db()
    assert (creator.display_name, creator.deleted_at) == (f"Deleted creator {creator.pk}", NOW)
    brand.refresh_from_db()
    assert (brand.name, brand.contact_info, brand.billing_info, brand.deleted_at) == (
        f"Deleted brand {brand.pk}",
        None,
        None,
        NOW,
    )
    statement = RoyaltyStatement.objects.get(pk=jane["statement"].pk)
    assert (statement.creator_id, statement.total_earnings_cents) == (creator.pk, 4_200)
    assert License.objects.get(pk=jane["licence"].pk).ip_asset_id == jane["licensed"].pk
    assert License.objects.filter(brand=brand).count() == 1
    assert IpOwnership.objects.filter(ip_asset=jane["licensed"], creator=creator).exists()
    # The licensed work stays as it is; the unlicensed upload goes to asset-cleanup.
    assert IpAsset.objects.get(pk=jane["licensed"].pk).deleted_at is None
    assert IpAsset.objects.get(pk=jane["unlicensed"].pk).deleted_at == NOW
    # Counts stay where figures are computed from them.
    event = Event.objects.get(user_id=user.pk)
    assert event.props_json == {"revenueCents": 5}
    assert Attribution.objects.get(event=event).browser == "Firefox"
    assert EmailEvent.objects.filter(event_type="CLICKED", email__startswith="erased-").count() == 1
    recipient = CampaignRecipient.objects.get(pk=jane["waiting"].pk)
    assert (recipient.status, recipient.personalization) == ("SKIPPED", {})  # never sent to a gone address
    # The rows that hang off the account went, as they would with the account.
    for model in (Notification, DeferredEmail, RememberMeToken, ApiToken, IdempotencyKey):
        assert not model.objects.filter(user=user).exists(), model.__name__
    assert not Message.objects.filter(thread=jane["thread"]).exists()
    audit = AuditEvent.objects.get(entity_type="user", entity_id=str(user.pk))
    assert (audit.action, audit.after) == ("ACCOUNT_ANONYMISED", {"role": user.role})


def test_a_second_run_changes_nothing(jane):
    with at(NOW):
        delete_accounts()
    before = {
        "users": list(get_user_model().objects.values_list("pk", "username", "email").order_by("pk")),
        "audit": AuditEvent.objects.count(),
        "events": list(EmailEvent.objects.values_list("pk", "email").order_by("pk")),
    }
    with at(NOW + DAY):
        result = delete_accounts()
    assert (result["deleted"], result["anonymised"], result["still_referenced"]) == (0, 0, 1)
    after = {
        "users": list(get_user_model().objects.values_list("pk", "username", "email").order_by("pk")),
        "audit": AuditEvent.objects.count(),
        "events": list(EmailEvent.objects.values_list("pk", "email").order_by("pk")),
    }
    assert after == before


def test_an_account_without_an_address_erases_only_its_own_rows():
    """An empty address must never match everyone's empty addresses."""
    with at(NOW - DAY):
        nobody = get_user_model().objects.create_user("noaddr", "", "pw", deleted_at=NOW - 31 * DAY)
        make_asset(created_by=nobody, title="kept")  # a reference: anonymised, not deleted
        LoginAttempt.objects.create(email="", ip_address="203.0.113.9")
        EmailEvent.objects.create(event_type="SENT", provider="backend", email="")
    with at(NOW):
        assert delete_accounts()["anonymised"] == 1
    assert LoginAttempt.objects.filter(email="").count() == 1
    assert EmailEvent.objects.get().email == ""


def test_an_anonymised_account_is_deleted_once_nothing_references_it():
    """Ana only uploaded an unlicensed work: erased, it is soft-deleted; once asset-cleanup
    purged it, the next account-deletion deletes her profile and account. Ben has royalty
    statements: money needs his profile by id, so his account stays anonymised."""
    ana = make_creator("Ana Verity")
    Creator.objects.filter(pk=ana.pk).update(verification_status="approved")
    make_asset((ana, 10_000), created_by=ana.user)
    ben = make_creator("Ben Solder")
    staff = make_user(is_staff=True)
    run = RoyaltyRun.objects.create(period_start=NOW - 90 * DAY, period_end=NOW - 60 * DAY, created_by=staff)
    RoyaltyStatement.objects.create(royalty_run=run, creator=ben)
    get_user_model().objects.filter(pk__in=[ana.user_id, ben.user_id]).update(deleted_at=NOW - 31 * DAY)

    with at(NOW):
        assert delete_accounts()["anonymised"] == 2
    with at(NOW + DAY):  # the upload still names her account
        result = delete_accounts()
    assert (result["deleted"], result["still_referenced"]) == (0, 2)

    with at(NOW + 31 * DAY):
        assert cleanup_deleted_assets()["deleted"] == 1
        result = delete_accounts()
    assert (result["deleted"], result["anonymised"], result["still_referenced"]) == (1, 0, 1)
    assert not get_user_model().objects.filter(pk=ana.user_id).exists()
    assert not Creator.objects.filter(pk=ana.pk).exists()
    assert get_user_model().objects.get(pk=ben.user_id).anonymised_at == NOW
    audit = AuditEvent.objects.get(action="ACCOUNT_PERMANENTLY_DELETED")
    assert (audit.entity_id, audit.after["after_anonymisation"]) == (str(ana.user_id), True)
    with at(NOW + 32 * DAY):
        assert delete_accounts()["deleted"] == 0


def test_an_unreferenced_account_is_deleted_at_once_with_its_traces():
    with at(NOW - DAY):
        gone = make_user(email="gone@example.com", deleted_at=NOW - 31 * DAY)
        LoginAttempt.objects.create(user=gone, email="gone@example.com", ip_address=IP)
        EmailEvent.objects.create(event_type="SENT", provider="backend", email="gone@example.com", user=gone)
    with at(NOW):
        result = delete_accounts()
    assert (result["deleted"], result["anonymised"]) == (1, 0)
    assert not get_user_model().objects.filter(pk=gone.pk).exists()
    # SET_NULL rows would have kept the address without the account: erased first.
    assert not LoginAttempt.objects.exists()
    assert EmailEvent.objects.get().email.startswith("erased-")


def test_login_records_end_after_their_retention():
    old, recent = NOW - LOGIN_RECORD_RETENTION - DAY, NOW - LOGIN_RECORD_RETENTION + DAY
    for moment in (old, recent):
        LoginAttempt.objects.create(email="someone@example.com", ip_address=IP, timestamp=moment)
        SecurityAlert.objects.create(
            kind="ip-stuffing", subject=f"{IP}-{moment:%j}", window_start=moment, failures=20, created_at=moment
        )
    with at(NOW):
        result = delete_accounts()
    assert (result["login_attempts_purged"], result["security_alerts_purged"]) == (1, 1)
    assert list(LoginAttempt.objects.values_list("timestamp", flat=True)) == [recent]
    assert list(SecurityAlert.objects.values_list("created_at", flat=True)) == [recent]
    with at(NOW):
        assert delete_accounts()["login_attempts_purged"] == 0


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_erase_each_account_once():
    users = [make_user(deleted_at=NOW - 31 * DAY) for _ in range(6)]
    for user in users:
        make_asset(created_by=user)  # referenced: anonymised
    results = run_twice_at_once(lambda: cleanup.delete_soft_deleted_accounts(NOW))
    assert sum(r["anonymised"] for r in results) == 6
    assert AuditEvent.objects.filter(action="ACCOUNT_ANONYMISED").count() == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_account_deletion_erases_through_a_real_worker(run_worker):
    user = make_user(email="worker.marker@example.com", deleted_at=datetime.now(UTC) - 31 * DAY)
    make_brand("Worker Marker Ltd", user=user, contact_info={"primaryContact": {"email": "wm@example.org"}})
    EmailEvent.objects.create(event_type="SENT", provider="backend", email="wm@example.org")
    enqueue("account-deletion")
    run_worker("scheduled")
    user.refresh_from_db()
    assert user.anonymised_at is not None and user.email == ""
    brand = Brand.objects.get(user=user)
    assert brand.contact_info is None and brand.name == f"Deleted brand {brand.pk}"
    assert EmailEvent.objects.get().email.startswith("erased-")
