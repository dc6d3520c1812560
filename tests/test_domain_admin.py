"""The operator's admin covers the domain (issue 22, point 2): every model an operator
asks about is registered; its list and its pages answer a staff user with data present,
and nobody else; rows link to the rows they refer to; hostile search and filter input is
never a 500; and the fields a state machine owns cannot be edited through the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models.fields.files import FieldFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from yesgoddess.accounts.models import LoginAttempt, SecurityAlert
from yesgoddess.assets.models import IpAsset, OwnershipFinding, StorageMetrics
from yesgoddess.blog.models import Post
from yesgoddess.brands.models import Brand, VerificationDigest
from yesgoddess.campaigns.models import EmailCampaign
from yesgoddess.core.models import AuditEvent
from yesgoddess.creators.models import Creator, CreatorMonthlyReport
from yesgoddess.licensing.models import (
    License,
    LicenseStatusHistory,
    LicenseUsageOverage,
    LicenseUsageThreshold,
    RenewalOffer,
)
from yesgoddess.projects.models import Project, ProjectMatch
from yesgoddess.royalties.models import RoyaltyLine, RoyaltyRun, RoyaltyStatement

from .license_factories import make_asset, make_brand, make_creator, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

# What the issue names, and what else an operator asks about.
OPERATOR_MODELS = [
    IpAsset,
    License,
    RenewalOffer,
    RoyaltyRun,
    RoyaltyStatement,
    Brand,
    Creator,
    Project,
    Post,
    SecurityAlert,
    LoginAttempt,
    OwnershipFinding,
    StorageMetrics,
    AuditEvent,
    EmailCampaign,
    LicenseUsageOverage,
    CreatorMonthlyReport,
]


def registered_models() -> list[type]:
    """Admin-registered models with rows of their own (not the panels' table-less entries)."""
    return [model for model in admin.site._registry if model._meta.managed and model._meta.app_label != "django_rq"]


def admin_url(model: type, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def staff():
    return get_user_model().objects.create_superuser("ops", "ops@example.test", "pw")


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def rows(staff) -> dict[str, object]:
    """One row of each model the admin shows, related the way the platform relates them."""
    now = timezone.now()
    brand = make_brand("Acme Studios")
    creator = make_creator("Ana Lens")
    project = make_project(brand, name="Spring shoot")
    asset = make_asset((creator, 10_000), title="Harbour at dawn", project=project, scan_status="CLEAN")
    license = make_license(brand=brand, asset=asset, project=project)
    LicenseStatusHistory.objects.create(license=license, from_status="PENDING_SIGNATURE", to_status="ACTIVE")
    offer = RenewalOffer.objects.create(
        license=license,
        original_fee_cents=500_000,
        fee_cents=450_000,
        rev_share_bps=0,
        start_date=license.end_date,
        end_date=license.end_date + timedelta(days=365),
        duration_days=365,
        expires_at=now + timedelta(days=30),
    )
    threshold = LicenseUsageThreshold.objects.create(
        license=license, usage_type="view", limit_quantity=100, period_type="monthly"
    )
    LicenseUsageOverage.objects.create(
        license=license,
        threshold=threshold,
        period_start=now.date().replace(day=1),
        period_end=now.date(),
        usage_type="view",
        limit_quantity=100,
        actual_quantity=150,
        overage_quantity=50,
    )
    run = RoyaltyRun.objects.create(
        period_start=now - timedelta(days=40),
        period_end=now - timedelta(days=10),
        status=RoyaltyRun.Status.CALCULATED,
        total_revenue_cents=123_456,
        total_royalties_cents=123_456,
        created_by=staff,
    )
    statement = RoyaltyStatement.objects.create(
        royalty_run=run, creator=creator, total_earnings_cents=123_456, net_payable_cents=123_456
    )
    line = RoyaltyLine.objects.create(
        royalty_statement=statement,
        license=license,
        ip_asset=asset,
        revenue_cents=123_456,
        share_bps=10_000,
        calculated_royalty_cents=123_456,
        period_start=run.period_start,
        period_end=run.period_end,
    )
    ProjectMatch.objects.create(project=project, creator=creator, matched_specialties=["photography"])
    post = Post.objects.create(title="Licensing 101", slug="licensing-101", author=staff)
    LoginAttempt.objects.create(email="ana@example.test", ip_address="192.0.2.7", failure_reason="bad_password")
    SecurityAlert.objects.create(kind="account", subject="ana@example.test", window_start=now, failures=5)
    OwnershipFinding.objects.create(ip_asset=asset, total_bps=9000, owner_count=2)
    StorageMetrics.objects.create(snapshot_date=now.date(), entity_type="platform", total_bytes=10, file_count=1)
    AuditEvent.objects.create(action="ASSET_UPLOADED", entity_type="asset", entity_id=str(asset.pk), actor=staff)
    CreatorMonthlyReport.objects.create(creator=creator, month=now.date().replace(day=1))
    VerificationDigest.objects.create(day=now.date())
    campaign = EmailCampaign.objects.create(
        name="Spring", template="campaign_announcement", subject="Hi", status="PAUSED", recipient_count=3
    )
    return {
        "brand": brand,
        "creator": creator,
        "project": project,
        "asset": asset,
        "license": license,
        "offer": offer,
        "run": run,
        "statement": statement,
        "line": line,
        "post": post,
        "campaign": campaign,
    }


def test_every_model_an_operator_asks_about_is_in_the_admin():
    assert [m.__name__ for m in OPERATOR_MODELS if m not in admin.site._registry] == []


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m._meta.label)
def test_each_list_and_page_answers_staff_with_data_present(rows, staff_client, model):
    listing = staff_client.get(admin_url(model, "changelist"))
    assert listing.status_code == 200
    obj = model.objects.order_by("pk").first()
    if obj is not None:
        assert staff_client.get(admin_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", OPERATOR_MODELS, ids=lambda m: m._meta.label)
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(rows, model):
    member = make_user()
    member_client = Client()
    member_client.force_login(member)
    for client in (Client(), member_client):
        response = client.get(admin_url(model, "changelist"))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
        obj = model.objects.order_by("pk").first()
        response = client.get(admin_url(model, "change", obj.pk))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


# Raw query strings, as a browser or a script may send them (invalid UTF-8 included).
HOSTILE_QUERIES = [
    "q=%27%20OR%201%3D1%20--",
    "q=abc%00def",
    "q=%ED%A0%80",
    "q=%FF%FE",
    "q=%3D9999999999999999999999",
    "q=1.5",
    "status=NOT-A-STATUS",
    "o=99.-42",
    "p=-1",
    "ip_asset__id__exact=x",
]


@pytest.mark.parametrize("model", registered_models(), ids=lambda m: m._meta.label)
def test_hostile_search_and_filters_are_never_a_server_error(rows, staff_client, model):
    for query in HOSTILE_QUERIES:
        response = staff_client.get(f"{admin_url(model, 'changelist')}?{query}")
        assert response.status_code < 500, (query, response.status_code)


def test_list_columns_show_what_operators_ask_about(rows, staff_client):
    assets = staff_client.get(admin_url(IpAsset, "changelist")).content.decode()
    asset = rows["asset"]
    assert "Harbour at dawn" in assets and "CLEAN" in assets
    assert admin_url(get_user_model(), "change", asset.created_by_id) in assets  # owner
    assert admin_url(Project, "change", asset.project_id) in assets
    runs = staff_client.get(admin_url(RoyaltyRun, "changelist")).content.decode()
    assert "CALCULATED" in runs and "$1,234.56" in runs
    licenses = staff_client.get(admin_url(License, "changelist"), {"status": "ACTIVE"}).content.decode()
    assert admin_url(License, "change", rows["license"].pk) in licenses
    brands = staff_client.get(admin_url(Brand, "changelist")).content.decode()
    assert "Acme Studios" in brands and f"brand__id__exact={rows['brand'].pk}" in brands  # its projects, licences
    campaigns = staff_client.get(admin_url(EmailCampaign, "changelist"), {"status": "PAUSED"}).content.decode()
    assert "Spring" in campaigns


def test_filters_narrow_the_asset_list(rows, staff_client):
    other = make_asset(title="Night market", scan_status="ERROR")
    page = staff_client.get(admin_url(IpAsset, "changelist"), {"scan_status__exact": "ERROR"}).content.decode()
    assert "Night market" in page and "Harbour at dawn" not in page
    found = staff_client.get(admin_url(IpAsset, "changelist"), {"q": "market"}).content.decode()
    assert "Night market" in found and "Harbour at dawn" not in found
    by_owner = staff_client.get(admin_url(IpAsset, "changelist"), {"q": "Ana Lens"}).content.decode()
    assert "Harbour at dawn" in by_owner and "Night market" not in by_owner
    assert other.pk


def test_an_asset_page_links_its_owner_project_and_licences(rows, staff_client):
    asset, license = rows["asset"], rows["license"]
    page = staff_client.get(admin_url(IpAsset, "change", asset.pk)).content.decode()
    assert admin_url(get_user_model(), "change", asset.created_by_id) in page
    assert admin_url(Project, "change", asset.project_id) in page
    assert admin_url(License, "change", license.pk) in page
    assert admin_url(Brand, "change", license.brand_id) in page
    assert admin_url(Creator, "change", rows["creator"].pk) in page  # the ownership inline
    assert f"ip_asset__id__exact={asset.pk}" in page  # every licence of the asset
    assert f"entity_type=asset&amp;entity_id={asset.pk}" in page  # its audit trail


def test_a_statement_page_shows_its_lines_and_links_run_creator_and_licence(rows, staff_client):
    statement = rows["statement"]
    page = staff_client.get(admin_url(RoyaltyStatement, "change", statement.pk)).content.decode()
    assert admin_url(RoyaltyRun, "change", rows["run"].pk) in page
    assert admin_url(Creator, "change", rows["creator"].pk) in page
    assert admin_url(License, "change", rows["license"].pk) in page  # the line's licence
    assert admin_url(IpAsset, "change", rows["asset"].pk) in page  # the line's asset
    assert "$1,234.56" in page


def test_a_run_page_counts_its_statements_by_status(rows, staff_client):
    page = staff_client.get(admin_url(RoyaltyRun, "change", rows["run"].pk)).content.decode()
    assert "PENDING: 1" in page and f"royalty_run__id__exact={rows['run'].pk}" in page


def test_audit_events_link_their_subject_and_filter_by_it(rows, staff_client):
    other = AuditEvent.objects.create(action="ASSET_UPLOADED", entity_type="asset", entity_id="999999")
    asset = rows["asset"]
    response = staff_client.get(admin_url(AuditEvent, "changelist"), {"entity_type": "asset", "entity_id": asset.pk})
    assert response.status_code == 200
    assert [event.pk for event in response.context["cl"].result_list] == [
        AuditEvent.objects.get(entity_id=str(asset.pk)).pk
    ]
    assert admin_url(IpAsset, "change", asset.pk) in response.content.decode()
    assert other.pk


def change_form(client: Client, model: type, obj) -> dict[str, str]:
    """The change form's own values, as a browser would post them back."""
    response = client.get(admin_url(model, "change", obj.pk))
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None or isinstance(value, FieldFile):  # no file upload in these posts
            continue
        data[name] = value.pk if hasattr(value, "pk") else value
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, 0)
    return data


@pytest.mark.parametrize(
    ("key", "model", "field", "forged"),
    [
        ("asset", IpAsset, "status", "PUBLISHED"),
        ("asset", IpAsset, "scan_status", "INFECTED"),
        ("license", License, "status", "TERMINATED"),
        ("run", RoyaltyRun, "status", "LOCKED"),
        ("campaign", EmailCampaign, "status", "SENDING"),
        ("project", Project, "status", "ARCHIVED"),
        ("brand", Brand, "verification_status", "verified"),
        ("creator", Creator, "verification_status", "approved"),
        ("post", Post, "status", "PUBLISHED"),
    ],
)
def test_a_status_a_state_machine_owns_cannot_be_posted(rows, staff_client, key, model, field, forged):
    obj = rows[key]
    before = getattr(model.objects.get(pk=obj.pk), field)
    assert before != forged
    data = change_form(staff_client, model, obj)
    assert field not in data  # not even a form field
    staff_client.post(admin_url(model, "change", obj.pk), {**data, field: forged})
    assert getattr(model.objects.get(pk=obj.pk), field) == before


def test_editable_fields_still_save(rows, staff_client):
    asset = rows["asset"]
    data = change_form(staff_client, IpAsset, asset)
    response = staff_client.post(admin_url(IpAsset, "change", asset.pk), {**data, "title": "Harbour at dusk"})
    assert response.status_code == 302, response.content.decode()[:3000]
    asset.refresh_from_db()
    assert asset.title == "Harbour at dusk" and asset.status == "DRAFT"


def test_rows_made_by_workflows_cannot_be_added_or_deleted_here(rows, staff_client):
    for model in (IpAsset, License, RoyaltyRun, Brand, Creator, Project):
        assert staff_client.get(admin_url(model, "add")).status_code == 403
    for model, key in ((IpAsset, "asset"), (RoyaltyRun, "run"), (License, "license")):
        assert staff_client.get(admin_url(model, "delete", rows[key].pk)).status_code == 403
    for model in (AuditEvent, LoginAttempt, SecurityAlert, RoyaltyStatement, OwnershipFinding, StorageMetrics):
        assert staff_client.get(admin_url(model, "add")).status_code == 403
