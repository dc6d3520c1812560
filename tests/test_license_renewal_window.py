"""Renewing at any time in the renewal window, and the links of every license notice
(issue 21 items 9 and 11).

- A brand gets its current renewal offer (made on demand when none is live) and accepts
  it on any day from 90 days before the end to 30 days after it.
- Every link of every license message resolves, through the app's page table
  (`yesgoddess.core.app_links`), to an API endpoint that answers its recipient.
- The 30-day notice announces the final notice that follows; a notice cut off mid-send
  keeps `renewal_notified_at`, so its offer is never emailed a second time.

The clock is frozen; every date is computed from NOW.
"""

from __future__ import annotations

import re
import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core import mail
from django.test import Client

from yesgoddess.accounts.models import ApiToken
from yesgoddess.assets.models import AssetStatus
from yesgoddess.core.app_links import api_path_for, app_url
from yesgoddess.licensing import expiry, renewal_workflow, renewals, usage_forecasts, usage_thresholds
from yesgoddess.licensing.models import (
    License,
    LicenseStatus,
    LicenseUsageDailyAggregate,
    LicenseUsageForecast,
    LicenseUsageThreshold,
    RenewalOffer,
)
from yesgoddess.notifications.delivery import deliver_pending, pending

from .email_backends import DroppingBackend
from .license_factories import make_asset, make_brand, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
S = LicenseStatus
LINK = re.compile(r"https?://[^\s\"'<>]+")


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def ending(days: float, **fields) -> License:
    """A license in force ending `days` after NOW, on a published asset with one owner."""
    owner = make_creator()
    asset = make_asset((owner, 10_000), title=fields.pop("title", "Sunset"), status=AssetStatus.PUBLISHED)
    brand = make_brand("Acme", user=make_user(email=fields.pop("email", None) or f"brand-{owner.pk}@example.com"))
    return make_license(brand=brand, asset=asset, end=NOW + timedelta(days=days), **fields)


def api(user) -> tuple[Client, dict[str, str]]:
    _, raw = ApiToken.objects.issue(user)
    return Client(), {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def current_offer_url(license: License) -> str:
    return f"/api/licenses/{license.pk}/renewal"


# --- the current offer, at any time in the window ------------------------------------------------


@pytest.mark.parametrize(
    ("days", "status"),
    [
        (90, S.ACTIVE),
        (75, S.ACTIVE),
        (59, S.ACTIVE),  # the 90-day offer lapsed a day ago
        (45, S.ACTIVE),
        (31, S.ACTIVE),
        (20, S.EXPIRING_SOON),
        (8, S.EXPIRING_SOON),
        (2, S.EXPIRING_SOON),
        (-3, S.EXPIRING_SOON),  # in its grace period
        (-20, S.EXPIRED),
    ],
)
def test_a_brand_gets_and_accepts_an_offer_on_any_day_of_the_renewal_window(frozen, days, status):
    license = ending(days, status=status)
    # The offer of the 90-day milestone, made when the window opened and lapsed 30 days later.
    first = renewals.create_offer(license, NOW - timedelta(days=90 - days)) if days < 60 else None
    client, auth = api(license.brand.user)
    response = client.get(current_offer_url(license), **auth)
    assert response.status_code == 200, response.content
    body = response.json()
    offer = RenewalOffer.objects.get(pk=body["id"])
    assert offer.status == RenewalOffer.Status.PENDING and offer.expires_at > NOW
    assert first is None or offer.pk != first.pk
    assert (body["fee_cents"], body["start_date"]) == (offer.fee_cents, offer.start_date.isoformat())
    accepted = client.post(body["accept_url"], **auth)
    assert accepted.status_code == 201, accepted.content
    renewal = License.objects.get(pk=accepted.json()["id"])
    assert (renewal.parent_license_id, renewal.fee_cents, renewal.status) == (
        license.pk,
        offer.fee_cents,
        S.PENDING_APPROVAL,
    )


def test_the_current_offer_is_made_once_and_replaced_only_when_it_lapses(frozen):
    license = ending(50)
    client, auth = api(license.brand.user)
    first = client.get(current_offer_url(license), **auth).json()
    assert client.get(current_offer_url(license), **auth).json()["id"] == first["id"]
    assert RenewalOffer.objects.filter(license=license).count() == 1
    license.refresh_from_db()
    assert license.renewal_notified_at == NOW  # shown to the brand: not emailed to it alone as well
    assert renewal_workflow.send_offer_emails(NOW)["offer_emails_sent"] == 0
    frozen.shift(timedelta(days=30, seconds=1))  # the offer lapsed
    second = client.get(current_offer_url(license), **auth).json()
    assert second["id"] != first["id"] and second["status"] == "PENDING"
    assert list(RenewalOffer.objects.filter(license=license).order_by("pk").values_list("status", flat=True)) == [
        "EXPIRED",
        "PENDING",
    ]


def test_a_renewed_license_shows_its_accepted_offer(frozen):
    license = ending(40)
    client, auth = api(license.brand.user)
    offer = client.get(current_offer_url(license), **auth).json()
    renewal_id = client.post(offer["accept_url"], **auth).json()["id"]
    shown = client.get(current_offer_url(license), **auth).json()
    assert (shown["id"], shown["status"], shown["renewal_license_id"], shown["accept_url"]) == (
        offer["id"],
        "ACCEPTED",
        renewal_id,
        None,
    )
    assert RenewalOffer.objects.filter(license=license).count() == 1


@pytest.mark.parametrize(
    ("days", "status", "code"),
    [
        (120, S.ACTIVE, "OUTSIDE_WINDOW"),
        (-40, S.EXPIRED, "ENDED_TOO_LONG_AGO"),
        (50, S.TERMINATED, "STATUS_NOT_RENEWABLE"),
    ],
)
def test_a_license_that_cannot_be_renewed_is_a_409_with_its_reasons(frozen, days, status, code):
    license = ending(days, status=status)
    client, auth = api(license.brand.user)
    response = client.get(current_offer_url(license), **auth)
    assert response.status_code == 409
    assert code in [reason["code"] for reason in response.json()["reasons"]]
    assert response.json()["error"]
    assert not RenewalOffer.objects.exists()


def test_only_the_brand_user_gets_the_offer(frozen):
    license = ending(50)
    owner_user = license.ip_asset.ownerships.get().creator.user
    for user in (make_user(), make_user(is_staff=True), owner_user):
        client, auth = api(user)
        assert client.get(current_offer_url(license), **auth).status_code == 404
    assert Client().get(current_offer_url(license)).status_code == 401
    client, auth = api(license.brand.user)
    assert client.get("/api/licenses/999999/renewal", **auth).status_code == 404
    assert client.post(current_offer_url(license), **auth).status_code == 405
    assert not RenewalOffer.objects.exists()


def test_hostile_ids_are_a_json_404_never_a_500(frozen):
    license = ending(50)
    client, auth = api(license.brand.user)
    huge = 10**20  # beyond a bigint
    for path in (
        f"/api/licenses/{huge}",
        f"/api/licenses/{huge}/renewal",
        f"/api/licenses/{license.pk}/renewal/{huge}",
        f"/api/licenses/{huge}/usage",
        f"/api/licenses/{huge}/usage/overages",
    ):
        response = client.get(path, **auth)
        assert response.status_code == 404 and response.json()["error"], path
    assert not RenewalOffer.objects.exists()


def test_the_link_of_a_lapsed_offer_leads_to_the_current_offer(frozen):
    license = ending(45)
    lapsed = renewals.create_offer(license, NOW - timedelta(days=45))
    client, auth = api(license.brand.user)
    response = client.get(f"/api/licenses/{license.pk}/renewal/{lapsed.pk}", **auth)
    assert response.status_code == 200
    body = response.json()
    assert body["replaces_offer_id"] == lapsed.pk and body["id"] != lapsed.pk and body["status"] == "PENDING"
    live = client.get(f"/api/licenses/{license.pk}/renewal/{body['id']}", **auth).json()
    assert live["id"] == body["id"] and "replaces_offer_id" not in live
    other = renewals.create_offer(ending(45), NOW)
    assert client.get(f"/api/licenses/{license.pk}/renewal/{other.pk}", **auth).status_code == 404


# --- every link of every notice -----------------------------------------------------------------


def links_of(message) -> list[str]:
    html = "".join(body for body, kind in getattr(message, "alternatives", []) if kind == "text/html")
    return sorted(set(LINK.findall(message.body)) | set(LINK.findall(html.replace("&amp;", "&"))))


def check_links(messages, users_by_address) -> dict[str, list[str]]:
    """Follow every link of `messages` as their recipient: each must be an app page whose
    API endpoint answers 200 (a renewal page: a PENDING offer that can be accepted).
    Returns the links per subject."""
    followed: dict[str, list[str]] = {}
    clients = {}
    for message in messages:
        [address] = message.to
        if address not in clients:
            clients[address] = api(users_by_address[address])
        client, auth = clients[address]
        links = links_of(message)
        assert links, message.subject
        for link in links:
            assert link.startswith(django_settings.APP_URL + "/"), link
            path = api_path_for(link)
            assert path is not None, f"{message.subject}: {link} is no page of the app"
            response = client.get(path, **auth)
            assert response.status_code == 200, (message.subject, link, response.content)
            if "/renewal" in path:
                assert response.json()["status"] == "PENDING" and response.json()["accept_url"]
        followed[message.subject] = links
    return followed


def people(*licenses: License) -> dict[str, object]:
    """Recipient address -> user: each license's brand user and its owners."""
    users = {}
    for lic in licenses:
        users[lic.brand.user.email] = lic.brand.user
        for row in lic.ip_asset.ownerships.select_related("creator__user"):
            users[row.creator.user.email] = row.creator.user
    return users


def test_every_link_in_every_license_notice_works_for_its_recipient(settings):
    """One license through its whole life: the 90/60/30-day notices, the final notice,
    the grace and expired emails and the re-engagement; after each step, every link of
    what went out is followed, at that moment, as its recipient."""
    settings.APP_URL = "https://app.example.test"
    end = NOW + timedelta(days=100)
    license = ending(100, grace_period_days=7)
    users = people(license)
    checked = 0
    followed: dict[str, list[str]] = {}

    def step(moment: datetime, run) -> None:
        nonlocal checked
        with at(moment):
            run()
        with at(moment + timedelta(minutes=1)):
            followed.update(check_links(mail.outbox[checked:], users))
        checked = len(mail.outbox)

    def day(before_end: int, hour: int) -> datetime:
        return (end - timedelta(days=before_end)).replace(hour=hour)

    for before_end in (90, 60, 30, 7):
        step(day(before_end, 2), renewal_workflow.run_workflow)  # offers; the final notice at 7 days
        step(day(before_end, 9), expiry.send_expiry_notices)
    step(end + timedelta(hours=1), expiry.expire_due_licenses)  # grace
    step(end + timedelta(days=7, hours=1), expiry.expire_due_licenses)  # expired (still renewable)
    license.refresh_from_db()
    step(license.expired_at + timedelta(days=30, hours=1), expiry.expire_due_licenses)  # re-engagement

    assert set(followed) == {
        "License Expiry Notice: Sunset",
        "License Expires in 60 Days: Sunset",
        "Action Required: License Expires in 30 Days",
        "FINAL NOTICE: License Expires in 7 Days",
        "Grace Period Active: Sunset",
        "License Expired: Sunset",
        'Relicense "Sunset"?',
    }
    brand_mail = [m for m in mail.outbox if m.to == [license.brand.user.email]]
    assert len(brand_mail) == 7 and checked == len(mail.outbox) == 7 + 4  # the owner: 3 notices and "expired"
    renewal_links = [link for m in brand_mail for link in links_of(m) if "/renewal" in link]
    assert len(renewal_links) == 6  # every brand message but the re-engagement leads to an offer
    assert followed['Relicense "Sunset"?'] == [app_url("license", license_id=license.pk)]


def test_the_standalone_offer_email_links_work(settings, frozen):
    settings.APP_URL = "https://app.example.test"
    late = ending(80)  # made after its 90-day mark: no notice will carry its offer
    renewal_workflow.run_workflow(NOW)
    [offer_email] = mail.outbox
    assert offer_email.subject == "Renewal Offer Available for Sunset"
    check_links([offer_email], people(late))


def test_a_notice_of_a_license_already_renewed_has_no_renewal_link(settings, frozen):
    settings.APP_URL = "https://app.example.test"
    license = ending(60)
    renewals.accept_offer(renewals.create_offer(license, NOW), license.brand.user_id, now=NOW)
    expiry.send_expiry_notices(NOW)
    [notice] = [m for m in mail.outbox if m.to == [license.brand.user.email]]
    assert "This license already has a renewal." in notice.body
    assert [link for link in links_of(notice) if "/renewal" in link] == []
    check_links(mail.outbox, people(license))


def test_every_link_in_the_usage_alerts_works_for_the_brand(settings, frozen):
    settings.APP_URL = "https://app.example.test"
    license = ending(200, email="brand@example.com")
    LicenseUsageThreshold.objects.create(
        license=license, usage_type="view", period_type="daily", limit_quantity=10, allow_overage=True
    )
    LicenseUsageDailyAggregate.objects.create(license=license, date=NOW.date(), total_views=20, total_quantity=20)
    usage_thresholds.check_all_thresholds(NOW)
    deliver_pending(pending(), limit=100)
    titles = sorted(m.subject for m in mail.outbox)
    assert len(titles) == 2, titles  # the 100 % warning and the overage alert, both emailed
    followed = check_links(mail.outbox, {"brand@example.com": license.brand.user})
    paths = {api_path_for(link) for links in followed.values() for link in links}
    assert {
        f"/api/licenses/{license.pk}/usage",
        f"/api/licenses/{license.pk}/usage/overages",
        "/api/notifications/",
        "/api/notifications/preferences",
    } <= paths
    overages = Client().get(f"/api/licenses/{license.pk}/usage/overages", **api(license.brand.user)[1]).json()
    assert [row["overage"] for row in overages["overages"]] == [10]
    usage = Client().get(f"/api/licenses/{license.pk}/usage", **api(license.brand.user)[1]).json()
    assert [(t["usage"], t["limit"], t["last_warning_level"]) for t in usage["thresholds"]] == [(20, 10, 100)]
    # The forecast breach email: its link too.
    mail.outbox.clear()
    forecast = LicenseUsageForecast.objects.create(
        license=license,
        usage_type="view",
        forecast_date=NOW.date(),
        period_start=NOW.date(),
        period_end=NOW.date(),
        predicted_quantity=30,
        predicted_breach_date=NOW.date(),
        breach_probability="0.9",
        metadata={"limit": 10, "period_type": "daily"},
    )
    usage_forecasts.send_breach_alerts(NOW)
    assert check_links(mail.outbox, {"brand@example.com": license.brand.user})
    assert forecast.license_id == license.pk


def test_the_usage_pages_answer_only_the_brand_user_or_staff(frozen):
    license = ending(200)
    for path in (f"/api/licenses/{license.pk}/usage", f"/api/licenses/{license.pk}/usage/overages"):
        assert Client().get(path, **api(make_user())[1]).status_code == 404
        assert Client().get(path, **api(make_user(is_staff=True))[1]).status_code == 200
        assert Client().get(path).status_code == 401
    assert Client().post(f"/api/licenses/{license.pk}/usage/overages", **api(license.brand.user)[1]).status_code == 405


def test_the_license_page_answers_the_brand_the_current_owners_and_staff_only(frozen):
    license = ending(50)
    owner = license.ip_asset.ownerships.get()
    path = f"/api/licenses/{license.pk}"
    for user in (license.brand.user, owner.creator.user, make_user(is_staff=True)):
        response = Client().get(path, **api(user)[1])
        assert response.status_code == 200 and response.json()["id"] == license.pk
    assert Client().get(path, **api(make_user())[1]).status_code == 404
    owner.end_date = NOW - timedelta(days=1)  # a former owner
    owner.save(update_fields=["end_date"])
    assert Client().get(path, **api(owner.creator.user)[1]).status_code == 404
    assert Client().get("/api/licenses/0", **api(license.brand.user)[1]).status_code == 404


# --- the 30-day notice and the final notice (item 11) ---------------------------------------------


def test_the_thirty_day_notice_announces_the_final_notice_that_follows(frozen):
    license = ending(30, email="brand@example.com")
    expiry.send_expiry_notices(NOW)
    brand = next(m for m in mail.outbox if m.to == ["brand@example.com"])
    creator = next(m for m in mail.outbox if m.to != ["brand@example.com"])
    for text in (brand.body, brand.alternatives[0][0], creator.body):
        assert "last scheduled notice" not in text
    assert "we will send you a final reminder 7 days before the license ends" in brand.body
    assert "This is the last notice before the license ends." in creator.body
    with at(license.end_date - timedelta(days=7, hours=7)):
        assert (
            renewal_workflow.send_final_notices(license.end_date - timedelta(days=7, hours=7))["final_notices_sent"]
            == 1
        )
    assert [m.subject for m in mail.outbox if m.to == ["brand@example.com"]][-1].startswith("FINAL NOTICE")


def test_a_notice_cut_off_mid_send_never_lets_its_offer_go_twice(frozen, settings):
    """The 60-day notice makes the offer and carries it; the connection drops while it is
    being sent. The offer must not go out again alone (the standalone offer email)."""
    license = ending(60, email="brand@example.com")
    backend = DroppingBackend.install(settings, drop_after=0)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        expiry.send_expiry_notices(NOW)
    license.refresh_from_db()
    assert license.sixty_day_notice_sent_at == NOW and license.renewal_notified_at == NOW
    backend.drop_after = None
    for hours in (1, 17, 41):  # the monitor's retry, then the next two workflow runs
        with at(NOW + timedelta(hours=hours)):
            expiry.send_expiry_notices()
            renewal_workflow.run_workflow()
    assert [m.to for m in mail.outbox] == []
    assert RenewalOffer.objects.filter(license=license).count() == 1
