"""POST /api/events/ (issue 21 item 15): a caller may reference only objects they may
see, and revenue (`props.revenueCents`, which flows into license ROI and the roll-ups)
is taken only from trusted sources: staff and service tokens."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from yesgoddess.accounts.models import ApiToken
from yesgoddess.analytics.aggregation import aggregate_daily_for
from yesgoddess.analytics.models import DailyMetric, Event
from yesgoddess.assets.models import IpOwnership
from yesgoddess.blog.models import Post
from yesgoddess.projects.models import ProjectMatch

from .conftest import manage
from .license_factories import make_asset, make_brand, make_creator, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

HIDDEN = "does not exist or is not visible to you"


def post(client, user, body, *, token: str | None = None):
    """An events POST as `user`: through the logged-in session, or with a Bearer token."""
    if token:
        return client.post(
            "/api/events/", json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
    client.force_login(user)
    return client.post("/api/events/", json.dumps(body), content_type="application/json")


def event(**references) -> dict:
    return {"event_type": "asset_viewed", "source": "web", **references}


def make_post(author, status: str) -> Post:
    return Post.objects.create(title="Spring", slug=f"spring-{Post.objects.count()}", author=author, status=status)


@pytest.fixture
def world():
    """A stranger, and objects each visible to someone in particular."""
    creator, brand = make_creator(), make_brand()
    project = make_project(brand)
    asset = make_asset((creator, 10_000), project=project)  # DRAFT: not in the catalogue
    license = make_license(brand=make_brand(name="Licensee"), asset=asset)
    return {"stranger": make_user(), "creator": creator, "brand": brand, "project": project, "asset": asset,
            "license": license}  # fmt: skip


# --- what a caller may reference --------------------------------------------------------------


@pytest.mark.parametrize(
    "who",
    ["uploader", "owner", "project brand", "licensee brand"],
)
def test_an_asset_is_referenced_by_those_it_belongs_to(client, world, who):
    asset = world["asset"]
    user = {
        "uploader": asset.created_by,
        "owner": world["creator"].user,
        "project brand": world["brand"].user,
        "licensee brand": world["license"].brand.user,
    }[who]
    response = post(client, user, event(ip_asset_id=asset.pk))
    assert response.status_code == 202, response.content


def test_a_stranger_cannot_reference_an_unpublished_asset_and_learns_nothing_about_it(client, world):
    asset = world["asset"]
    refused = post(client, world["stranger"], event(ip_asset_id=asset.pk))
    missing = post(client, world["stranger"], event(ip_asset_id=asset.pk + 1000))
    assert refused.status_code == missing.status_code == 400
    assert refused.json()["error"] == f"ip_asset_id {asset.pk} {HIDDEN}."
    assert missing.json()["error"] == f"ip_asset_id {asset.pk + 1000} {HIDDEN}."
    assert Event.objects.count() == 0


def test_published_assets_are_the_catalogue_but_not_once_deleted(client, world):
    asset = world["asset"]
    asset.status = "PUBLISHED"
    asset.save(update_fields=["status"])
    assert post(client, world["stranger"], event(ip_asset_id=asset.pk)).status_code == 202
    asset.deleted_at = timezone.now()
    asset.save(update_fields=["deleted_at"])
    assert post(client, world["stranger"], event(ip_asset_id=asset.pk)).status_code == 400
    assert post(client, asset.created_by, event(ip_asset_id=asset.pk)).status_code == 400


def test_a_former_owner_no_longer_sees_the_asset(client, world):
    IpOwnership.objects.filter(ip_asset=world["asset"]).update(end_date=timezone.now() - timedelta(days=1))
    assert post(client, world["creator"].user, event(ip_asset_id=world["asset"].pk)).status_code == 400


def test_a_license_is_referenced_by_its_brand_and_the_assets_owner_only(client, world):
    license = world["license"]
    assert post(client, license.brand.user, event(license_id=license.pk)).status_code == 202
    assert post(client, world["creator"].user, event(license_id=license.pk)).status_code == 202
    refused = post(client, world["stranger"], event(license_id=license.pk))
    assert refused.status_code == 400 and HIDDEN in refused.json()["error"]
    other_brand = make_brand(name="Other").user  # a brand, but not this license's
    assert post(client, other_brand, event(license_id=license.pk)).status_code == 400


def test_a_project_is_referenced_by_its_brand_and_matched_creators(client, world):
    project, matched = world["project"], make_creator()
    assert post(client, matched.user, event(project_id=project.pk)).status_code == 400
    ProjectMatch.objects.create(project=project, creator=matched)
    assert post(client, matched.user, event(project_id=project.pk)).status_code == 202
    assert post(client, world["brand"].user, event(project_id=project.pk)).status_code == 202
    assert post(client, world["stranger"], event(project_id=project.pk)).status_code == 400


def test_posts_brands_and_creators_are_public_once_published_or_verified(client, world):
    stranger, author = world["stranger"], make_user()
    draft, published = make_post(author, "DRAFT"), make_post(author, "PUBLISHED")
    assert post(client, stranger, event(post_id=published.pk)).status_code == 202
    assert post(client, stranger, event(post_id=draft.pk)).status_code == 400
    assert post(client, author, event(post_id=draft.pk)).status_code == 202

    pending_brand, creator = world["brand"], world["creator"]  # pending verification
    assert post(client, stranger, event(brand_id=pending_brand.pk)).status_code == 400
    assert post(client, pending_brand.user, event(brand_id=pending_brand.pk)).status_code == 202
    assert post(client, stranger, event(creator_id=creator.pk)).status_code == 400
    assert post(client, creator.user, event(creator_id=creator.pk)).status_code == 202
    type(pending_brand).objects.filter(pk=pending_brand.pk).update(verification_status="verified")
    type(creator).objects.filter(pk=creator.pk).update(verification_status="approved")
    assert post(client, stranger, event(brand_id=pending_brand.pk, creator_id=creator.pk)).status_code == 202


def test_one_event_of_a_batch_about_someone_elses_license_refuses_the_batch(client, world):
    mine = make_license(brand=make_brand(user=world["stranger"]))
    body = {"events": [event(license_id=mine.pk), event(license_id=world["license"].pk)]}
    response = post(client, world["stranger"], body)
    assert response.status_code == 400
    assert response.json()["error"] == f"events[1]: license_id {world['license'].pk} {HIDDEN}."
    assert Event.objects.count() == 0


# --- revenue: trusted sources only ------------------------------------------------------------


def test_revenue_from_a_logged_in_user_is_refused_and_never_reaches_the_metrics(client, world):
    license = world["license"]
    body = event(ip_asset_id=license.ip_asset_id, license_id=license.pk, props={"revenueCents": 10_000_000})
    response = post(client, license.brand.user, body)  # they may see the license: still not trusted for money
    assert response.status_code == 403
    assert "revenueCents" in response.json()["error"] and Event.objects.count() == 0
    batch = post(client, license.brand.user, {"events": [event(), body]})
    assert batch.status_code == 403 and batch.json()["error"].startswith("events[1]: props.revenueCents")
    assert Event.objects.count() == 0
    _, raw = ApiToken.objects.issue(license.brand.user, name="laptop")  # a personal token is no better
    assert post(client, None, body, token=raw).status_code == 403


def test_revenue_from_staff_and_service_tokens_is_taken_and_rolled_up(client, world):
    license = world["license"]
    body = event(ip_asset_id=license.ip_asset_id, license_id=license.pk, props={"revenueCents": 1_250})
    staff = make_user(is_staff=True)
    assert post(client, staff, body).status_code == 202
    collector = make_user()  # not staff: trusted through its service token
    _, raw = ApiToken.objects.issue(collector, name="web collector", service=True)
    assert post(client, None, body, token=raw).status_code == 202
    # A service token references any object and may record the event for a visitor.
    visitor = {**event(ip_asset_id=world["asset"].pk), "actor_type": "visitor", "actor_id": "v-1", "user_id": None}
    assert post(client, None, visitor, token=raw).status_code == 202

    aggregate_daily_for(timezone.now().date().isoformat())
    metric = DailyMetric.objects.get(license_id=license.pk)
    assert metric.revenue_cents == 2_500


@pytest.mark.django_db(transaction=True)
def test_create_api_token_issues_a_service_token_on_request():
    user = make_user()
    personal = manage("create_api_token", user.username)
    service = manage("create_api_token", user.username, "--service", "--name", "collector")
    assert personal.returncode == service.returncode == 0, personal.stderr + service.stderr
    assert ApiToken.objects.token_for(personal.stdout.strip()).service is False
    assert ApiToken.objects.token_for(service.stdout.strip()).service is True
