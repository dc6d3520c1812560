"""License renewals: eligibility, conflicts, pricing, offers, acceptance, auto-renewal and
the license-renewal-workflow job (spec B §5.B-5.D, §5.3; DECISIONS "Licenses").

Time is frozen at NOW (02:00 UTC, when the workflow runs) unless a test says otherwise.
"""

from __future__ import annotations

import copy
import smtplib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.api import enqueue, get_queue
from jobs.handlers.licenses import run_renewal_workflow, send_renewal_confirmation
from jobs.registry import get_spec
from yesgoddess.accounts.models import ApiToken
from yesgoddess.analytics.models import Event
from yesgoddess.assets.models import AssetStatus, IpOwnership
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.models import AuditEvent
from yesgoddess.licensing import eligibility, expiry, pricing, renewal_workflow, renewals
from yesgoddess.licensing.models import License, LicensePerformanceSnapshot, LicenseStatus, LicenseType, RenewalOffer
from yesgoddess.licensing.renewal_workflow import RenewalWorkflowError
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import render_email

from .concurrency import run_at_once, run_twice_at_once
from .email_backends import DroppingBackend
from .license_factories import make_asset, make_brand, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)
S = LicenseStatus


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def days_from_now(days: float, moment: datetime = NOW) -> datetime:
    return moment + timedelta(days=days)


def renewable(days: float = 80, *, owners: int = 1, brand=None, asset=None, **fields) -> License:
    """A license in force ending `days` from NOW, on a published asset with current owners."""
    if asset is None:
        creators = [make_creator() for _ in range(owners)]
        asset = make_asset(*((c, 10_000 // owners) for c in creators), status=AssetStatus.PUBLISHED)
    brand = brand or make_brand("Acme")
    return make_license(brand=brand, asset=asset, end=fields.pop("end", days_from_now(days)), **fields)


def emails_to(address: str) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if address in m.to]


def reload(license: License) -> License:
    license.refresh_from_db()
    return license


# --- pricing -----------------------------------------------------------------------------------

END = datetime(2027, 6, 1, tzinfo=UTC)
START = END - timedelta(days=365)


def price(fee: int, renewals_: int = 0, days: int = 45, rev_share: int = 1500) -> pricing.RenewalTerms:
    return pricing.price_renewal(
        fee_cents=fee,
        rev_share_bps=rev_share,
        start_date=START,
        end_date=END,
        renewal_count=renewals_,
        days_until_expiry=days,
    )


def test_price_is_the_original_plus_five_percent_over_the_same_period():
    terms = price(500_000)
    assert terms.fee_cents == 525_000
    assert terms.adjustments == [{"label": "Inflation adjustment", "percent": 5.0}]
    assert terms.fee_change_percent == 5.0
    assert terms.rev_share_bps == 1500
    assert terms.start_date == END + timedelta(days=1)
    assert terms.duration_days == 365
    assert terms.end_date == terms.start_date + timedelta(days=365)


@pytest.mark.parametrize(
    ("renewal_count", "fee", "loyalty"),
    [
        (1, 525_000, None),  # >= 1: 0 %
        (2, 498_750, -5.0),  # 525,000 x 0.95
        (3, 472_500, -10.0),  # 525,000 x 0.90
        (4, 472_500, -10.0),
        (5, 446_250, -15.0),  # 525,000 x 0.85
        (9, 446_250, -15.0),
    ],
)
def test_loyalty_tiers_apply_to_the_running_amount(renewal_count, fee, loyalty):
    terms = price(500_000, renewal_count)
    assert terms.fee_cents == fee
    percents = [a["percent"] for a in terms.adjustments]
    assert percents == ([5.0, loyalty] if loyalty else [5.0])


def test_early_renewal_discount_only_beyond_sixty_days():
    assert price(500_000, days=60).fee_cents == 525_000
    early = price(500_000, days=61)
    assert early.fee_cents == 498_750  # 525,000 x 0.95
    assert early.adjustments[-1] == {"label": "Early renewal discount", "percent": -5.0}
    assert early.fee_change_percent == -0.25
    # All three: 500,000 x 1.05 x 0.85 x 0.95 = 423,937.5 -> 423,938 (half to even)
    assert price(500_000, 5, days=75).fee_cents == 423_938


def test_rounding_is_to_even_on_exact_halves():
    assert price(10_010).fee_cents == 10_510  # 10,510.5 -> 10,510 (half-up would say 10,511)
    assert price(10_030).fee_cents == 10_532  # 10,531.5 -> 10,532
    assert price(12_345, days=61).fee_cents == 12_314  # 12,314.1375


def test_caps_hold_the_change_between_minus_20_and_plus_25_percent(monkeypatch):
    # The AUTOMATIC steps alone stay within the caps (+5 % .. -15.2 %); widen them to see the caps work.
    monkeypatch.setattr(pricing, "LOYALTY_TIERS", ((1, Decimal(30)),))
    low = price(100_000, 1, days=61)  # 100,000 x 1.05 x 0.70 x 0.95 = 69,825 -> floor 80,000
    assert low.fee_cents == 80_000
    assert low.adjustments[-1] == {"label": "Cap: at most -20%", "percent": 14.57}
    assert low.fee_change_percent == -20.0
    monkeypatch.setattr(pricing, "INFLATION_PERCENT", Decimal(40))
    monkeypatch.setattr(pricing, "LOYALTY_TIERS", ())
    high = price(100_000)
    assert high.fee_cents == 125_000
    assert high.adjustments[-1]["label"] == "Cap: at most +25%"


def test_minimum_fee_applies_only_to_fees_that_were_at_least_the_minimum():
    floored = price(10_000, 5, days=61)  # 8,478.75 -> $100 minimum
    assert floored.fee_cents == 10_000
    assert floored.adjustments[-1]["label"] == "Minimum fee ($100.00)"
    assert floored.fee_change_percent == 0.0
    cheap = price(5_000, 5, days=61)  # 4,239.375: a $50 license is not raised to $100
    assert cheap.fee_cents == 4_239


def test_a_zero_fee_renews_at_zero_without_dividing_by_zero():
    terms = price(0, 5, days=75)
    assert (terms.fee_cents, terms.adjustments, terms.fee_change_percent) == (0, [], 0.0)
    assert renewal_workflow.fee_change(0, 0) == "+0%"


def test_rev_share_is_unchanged_and_clamped():
    assert price(100_000, rev_share=2500).rev_share_bps == 2500
    assert price(100_000, rev_share=12_000).rev_share_bps == 10_000
    assert price(100_000, rev_share=-5).rev_share_bps == 0


# --- eligibility -------------------------------------------------------------------------------------


def check(license: License, **options) -> eligibility.Eligibility:
    license = License.objects.select_related(*eligibility.RELATED).get(pk=license.pk)
    return eligibility.check_eligibility(license, NOW, **options)


def test_an_ordinary_license_is_eligible_with_its_facts(frozen):
    license = renewable(80, auto_renew=True)
    result = check(license)
    assert result.eligible and result.blocking == [] and result.warnings == []
    assert result.facts["days_until_expiry"] == 80
    assert result.facts["renewal_count"] == 0
    assert result.facts["renewal_likelihood"] == "LOW"
    assert result.facts["has_auto_renew"] is True
    assert result.suggested_action == "will auto-renew within 60 days of the end date"


def _child(license: License, status: str = S.PENDING_APPROVAL, **fields) -> License:
    return make_license(brand=license.brand, asset=license.ip_asset, parent_license=license, status=status, **fields)


def _end_ownership(license: License) -> None:
    IpOwnership.objects.filter(ip_asset=license.ip_asset).update(end_date=NOW - timedelta(days=1))


def _dispute(license: License) -> None:
    IpOwnership.objects.filter(ip_asset=license.ip_asset).update(disputed=True)


def _deactivate_brand_user(license: License) -> None:
    user = license.brand.user
    user.is_active = False
    user.save()


@pytest.mark.parametrize(
    ("days", "change", "reason"),
    [
        (91, None, "OUTSIDE_WINDOW"),
        (-31, lambda lic: License.objects.filter(pk=lic.pk).update(status=S.EXPIRED), "ENDED_TOO_LONG_AGO"),
        (80, lambda lic: License.objects.filter(pk=lic.pk).update(status=S.TERMINATED), "STATUS_NOT_RENEWABLE"),
        (80, lambda lic: License.objects.filter(pk=lic.pk).update(status=S.SUSPENDED), "STATUS_NOT_RENEWABLE"),
        (80, _child, "RENEWAL_EXISTS"),
        (80, lambda lic: License.objects.filter(pk=lic.pk).update(deleted_at=NOW), "LICENSE_DELETED"),
        (80, lambda lic: type(lic.ip_asset).objects.filter(pk=lic.ip_asset_id).update(deleted_at=NOW), "ASSET_DELETED"),
        (80, lambda lic: type(lic.brand).objects.filter(pk=lic.brand_id).update(deleted_at=NOW), "BRAND_DELETED"),
        (80, _deactivate_brand_user, "BRAND_USER_INACTIVE"),
        (80, _end_ownership, "NO_CURRENT_OWNERSHIP"),
        (80, _dispute, "OWNERSHIP_DISPUTED"),
    ],
)
def test_each_blocking_rule(frozen, days, change, reason):
    license = renewable(days)
    if change:
        change(license)
    result = check(license)
    assert not result.eligible
    assert result.blocking == [reason]


def test_what_does_not_block(frozen):
    expired = renewable(-29, status=S.EXPIRED)  # ended 29 days ago: still in the window
    assert check(expired).eligible
    canceled_child = renewable(80)
    _child(canceled_child, status=S.CANCELED)
    _child(canceled_child, deleted_at=NOW)
    assert check(canceled_child).eligible
    future_end = renewable(80)
    IpOwnership.objects.filter(ip_asset=future_end.ip_asset).update(end_date=NOW + timedelta(days=1))
    assert check(future_end).eligible
    resolved = renewable(80)
    IpOwnership.objects.filter(ip_asset=resolved.ip_asset).update(disputed=True, resolved_at=NOW)
    assert check(resolved).eligible
    assert check(renewable(90.9)).eligible  # 90 whole days


def test_warnings_do_not_block(frozen):
    license = renewable(80, owners=2)
    type(license.ip_asset).objects.filter(pk=license.ip_asset_id).update(status=AssetStatus.REVIEW)
    owner = IpOwnership.objects.filter(ip_asset=license.ip_asset).first().creator.user
    owner.is_active = False
    owner.save()
    result = check(license)
    assert result.eligible
    assert result.warnings == ["ASSET_NOT_PUBLISHED", "OWNER_INACTIVE"]


def test_renewal_count_feeds_loyalty(frozen):
    license = renewable(45)
    for _ in range(3):  # three earlier renewals of the same brand on the same asset
        make_license(
            brand=license.brand, asset=license.ip_asset, parent_license=make_license(status=S.RENEWED), status=S.EXPIRED
        )
    result = check(license)
    assert result.facts["renewal_count"] == 3
    assert result.facts["renewal_likelihood"] == "HIGH"
    assert pricing.terms_for(license, result).fee_cents == 472_500  # +5 %, then -10 %


# --- conflicts (B3) ----------------------------------------------------------------------------------------


def neighbour(license: License, **fields) -> License:
    """Another brand's license on the same asset, covering the proposed renewal period."""
    start, end, _ = eligibility.proposed_period(license)
    fields.setdefault("start", start + timedelta(days=10))
    fields.setdefault("end", end - timedelta(days=10))
    return make_license(asset=license.ip_asset, **fields)


def reasons(license: License) -> set[tuple[int, str]]:
    return {(c.license_id, c.reason) for c in check(license).conflicts}


def test_an_exclusive_license_in_the_renewal_period_blocks_it(frozen):
    license = renewable(80)
    other = neighbour(license, license_type=LicenseType.EXCLUSIVE)
    result = check(license)
    assert result.blocking == ["CONFLICT"]
    assert reasons(license) == {(other.pk, "EXCLUSIVITY"), (other.pk, "TERRITORY"), (other.pk, "DATE_OVERLAP")}
    assert result.facts["conflict_count"] == 3


def test_renewing_an_exclusive_license_conflicts_with_any_overlap(frozen):
    license = renewable(80, license_type=LicenseType.EXCLUSIVE)
    other = neighbour(license)
    assert (other.pk, "EXCLUSIVITY") in reasons(license)


def test_licenses_outside_the_period_drafts_and_canceled_ones_do_not_conflict(frozen):
    license = renewable(80)
    start, _, _ = eligibility.proposed_period(license)
    neighbour(license, license_type=LicenseType.EXCLUSIVE, start=NOW, end=start - timedelta(hours=1))
    neighbour(license, license_type=LicenseType.EXCLUSIVE, status=S.DRAFT)
    neighbour(license, license_type=LicenseType.EXCLUSIVE, status=S.CANCELED)
    neighbour(license, license_type=LicenseType.EXCLUSIVE, deleted_at=NOW)
    assert check(license).eligible


def test_exclusive_territories_conflict_only_where_they_meet(frozen):
    license = renewable(80, scope_json={"geographic": {"territories": ["US", "CA"]}})
    other = neighbour(
        license, license_type=LicenseType.EXCLUSIVE_TERRITORY, scope_json={"geographic": {"territories": ["US"]}}
    )
    assert reasons(license) == {(other.pk, "TERRITORY"), (other.pk, "DATE_OVERLAP")}
    other.scope_json = {"geographic": {"territories": ["FR"]}}
    other.save()
    assert check(license).eligible
    other.scope_json = {"geographic": {"territories": ["GLOBAL"]}}  # everywhere includes the US
    other.save()
    assert (other.pk, "TERRITORY") in reasons(license)


def test_media_and_placement_overlap_under_an_exclusivity_clause(frozen):
    scope = {"media": {"digital": True, "print": False}, "placement": {"social": True, "website": False}}
    license = renewable(80, scope_json=scope | {"exclusivity": {"category": "beverages"}})
    same = neighbour(license, scope_json={"media": {"digital": True}, "placement": {"social": True}})
    assert reasons(license) == {(same.pk, "MEDIA_OVERLAP"), (same.pk, "PLACEMENT_OVERLAP"), (same.pk, "DATE_OVERLAP")}
    # Another category's exclusivity, or other media and placements: no conflict.
    same.scope_json = {"media": {"digital": True}, "placement": {"social": True}, "exclusivity": {"category": "cars"}}
    same.save()
    assert check(license).eligible
    same.scope_json = {"media": {"print": True}, "placement": {"website": True}}
    same.save()
    assert check(license).eligible


def test_plain_non_exclusive_grants_of_the_same_media_do_not_conflict(frozen):
    scope = {"media": {"digital": True}, "placement": {"social": True}}
    license = renewable(80, scope_json=scope)
    neighbour(license, scope_json=scope)
    assert check(license).eligible


def test_cumulative_rev_share_above_eighty_percent_conflicts(frozen):
    license = renewable(80, rev_share_bps=5000)
    other = neighbour(license, rev_share_bps=3000)  # 8,000 bps: at the limit, allowed
    assert check(license).eligible
    other.rev_share_bps = 3500  # 8,500 bps
    other.save()
    result = check(license)
    assert result.blocking == ["CONFLICT"]
    assert reasons(license) == {(other.pk, "HIGH_REV_SHARE")}
    assert "8500 bps" in result.conflicts[0].detail


def test_conflicts_are_deduplicated_by_license_and_reason():
    license = License(pk=1, license_type=LicenseType.EXCLUSIVE, rev_share_bps=9000, scope_json={})
    start, end = NOW, NOW + timedelta(days=30)
    other = License(pk=2, license_type=LicenseType.EXCLUSIVE, rev_share_bps=100, start_date=start, end_date=end)
    found = eligibility.find_conflicts(license, start, end, [other, other])
    keys = [(c.license_id, c.reason) for c in found]
    assert len(keys) == len(set(keys)) == 4  # EXCLUSIVITY, TERRITORY, DATE_OVERLAP, HIGH_REV_SHARE


# --- offers ------------------------------------------------------------------------------------------------


def test_create_offer_stores_the_priced_terms_and_is_idempotent(frozen):
    license = renewable(75, fee_cents=500_000, rev_share_bps=1200)
    offer = renewals.create_offer(license, NOW)
    assert offer.status == RenewalOffer.Status.PENDING
    assert (offer.original_fee_cents, offer.fee_cents, offer.rev_share_bps) == (500_000, 498_750, 1200)
    assert offer.start_date == license.end_date + timedelta(days=1)
    assert offer.duration_days == 365
    assert offer.expires_at == NOW + timedelta(days=30)
    assert [a["label"] for a in offer.adjustments] == ["Inflation adjustment", "Early renewal discount"]
    assert renewals.create_offer(license, NOW).pk == offer.pk
    assert RenewalOffer.objects.count() == 1
    audit = AuditEvent.objects.get(action="renewal_offer_generated")
    assert audit.entity_id == str(license.pk) and audit.after["offerId"] == offer.pk
    assert audit.after["feeCents"] == 498_750


def test_an_ineligible_license_gets_no_offer(frozen):
    license = renewable(120)
    with pytest.raises(renewals.RenewalBlocked) as caught:
        renewals.create_offer(license, NOW)
    assert caught.value.reasons == ["OUTSIDE_WINDOW"]
    assert not RenewalOffer.objects.exists()


def test_a_stale_pending_offer_is_replaced(frozen):
    license = renewable(55)
    old = renewals.create_offer(license, NOW - timedelta(days=31))
    new = renewals.create_offer(license, NOW)
    assert new.pk != old.pk
    assert RenewalOffer.objects.get(pk=old.pk).status == RenewalOffer.Status.EXPIRED


def test_the_workflow_expires_stale_offers(frozen):
    license = renewable(55)
    offer = renewals.create_offer(license, NOW - timedelta(days=30))  # expires exactly now
    assert renewal_workflow.expire_stale_offers(NOW) == 1
    assert RenewalOffer.objects.get(pk=offer.pk).status == RenewalOffer.Status.EXPIRED
    assert renewal_workflow.expire_stale_offers(NOW) == 0


# --- the offer email and the 90-day handoff ----------------------------------------------------------------


def test_no_standalone_email_while_the_ninety_day_notice_will_carry_the_offer(frozen):
    license = renewable(90.5)  # 90 whole days; the expiry monitor's 90-day notice is still to come
    counts = run_renewal_workflow()
    assert counts["offers_created"] == 1 and counts["offer_emails_sent"] == 0
    assert mail.outbox == []
    assert reload(license).renewal_notified_at is None


def test_the_ninety_day_notice_carries_the_offer_made_before_it_and_nothing_else_is_sent():
    license = renewable(90.5)
    with time_machine.travel(NOW, tick=False):  # 02:00: the workflow makes the offer
        run_renewal_workflow()
    offer = RenewalOffer.objects.get(license=license)
    with time_machine.travel(NOW + timedelta(hours=7), tick=False):  # 09:00: the expiry monitor
        expiry.send_expiry_notices()
    [notice] = emails_to(license.brand.user.email)
    assert f"/licenses/{license.pk}/renewal/{offer.pk}" in notice.body
    assert reload(license).renewal_notified_at is not None
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        counts = run_renewal_workflow()
    assert counts["offer_emails_sent"] == 0
    assert len(emails_to(license.brand.user.email)) == 1


def test_an_offer_made_after_the_ninety_day_notice_is_emailed_once(frozen, settings):
    license = renewable(90.5, ninety_day_notice_sent_at=NOW - timedelta(days=1))  # notice went without an offer
    counts = run_renewal_workflow()
    assert counts["offers_created"] == 1 and counts["offer_emails_sent"] == 1
    offer = RenewalOffer.objects.get(license=license)
    [message] = mail.outbox
    assert message.subject == "Renewal Offer Available for Sunset"
    assert message.to == [license.brand.user.email]
    assert f"{settings.APP_URL}/licenses/{license.pk}/renewal/{offer.pk}" in message.body
    license = reload(license)
    assert license.renewal_notified_at == NOW
    event = Event.objects.get(event_type="license.renewal_offer", license=license)
    assert event.props_json["offerId"] == offer.pk and event.props_json["success"] is True
    assert "@" not in str(event.props_json)  # ids only
    assert run_renewal_workflow()["offer_emails_sent"] == 0
    assert len(mail.outbox) == 1


def test_a_license_past_the_ninety_day_window_gets_the_standalone_email(frozen):
    license = renewable(80)  # created with 80 days left: the 90-day notice will never come
    run_renewal_workflow()
    assert [m.subject for m in emails_to(license.brand.user.email)] == ["Renewal Offer Available for Sunset"]


def test_the_offer_email_shows_exactly_the_stored_terms(frozen):
    license = renewable(80, fee_cents=1_234_567, rev_share_bps=1250)
    run_renewal_workflow()
    offer = RenewalOffer.objects.get(license=license)
    assert offer.fee_cents == 1_231_481  # 1,234,567 x 1.05 x 0.95 = 1,231,480.5825
    [message] = mail.outbox
    html = message.alternatives[0][0]
    for body in (message.body, html):
        assert "$12,314.81" in body  # the stored fee
        assert "$12,345.67" in body  # the original fee
        assert "-0.2%" in body  # fee change
        assert "12.50%" in body  # rev share
        assert "Inflation adjustment: +5.0%" in body and "Early renewal discount: -5.0%" in body
        assert "80 days" in body


def test_an_ineligible_license_gets_neither_offer_nor_email(frozen):
    license = renewable(80)
    _dispute(license)
    counts = run_renewal_workflow()
    assert counts["offers_created"] == 0 and counts["offers_ineligible"] == 1
    assert mail.outbox == [] and not RenewalOffer.objects.exists()


def test_a_refused_offer_email_is_not_marked_and_goes_next_time(frozen, settings):
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    refused = renewable(80, brand=make_brand(user=make_user(email="refuse@example.com")))
    accepted = renewable(80)
    counts = run_renewal_workflow()
    assert (counts["offer_emails_sent"], counts["offer_emails_failed"]) == (1, 1)
    assert reload(refused).renewal_notified_at is None
    assert reload(accepted).renewal_notified_at == NOW
    failure = Event.objects.get(event_type="license.renewal_offer", license=refused)
    assert failure.props_json["success"] is False


def test_offer_emails_take_a_constant_number_of_queries_per_batch(frozen):
    for _ in range(2):
        renewable(80)
    renewal_workflow.create_due_offers(NOW)
    with CaptureQueriesContext(connection) as few:
        assert renewal_workflow.send_offer_emails(NOW)["offer_emails_sent"] == 2
    for _ in range(6):
        renewable(80)
    renewal_workflow.create_due_offers(NOW)
    with CaptureQueriesContext(connection) as many:
        assert renewal_workflow.send_offer_emails(NOW)["offer_emails_sent"] == 6
    assert len(many) == len(few)


# --- final notice -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", [8, 7, 6])
def test_final_notice_at_six_to_eight_days_once(frozen, days):
    license = renewable(days + 0.5, renewal_notified_at=NOW - timedelta(days=80))
    counts = run_renewal_workflow()
    assert counts["final_notices_sent"] == 1
    [message] = mail.outbox
    assert message.subject == f"FINAL NOTICE: License Expires in {days} Days"
    offer = RenewalOffer.objects.get(license=license, status=RenewalOffer.Status.PENDING)
    assert f"${renewal_workflow.dollars(offer.fee_cents)}" in message.body
    assert f"/licenses/{license.pk}/renewal/{offer.pk}" in message.body
    assert reload(license).renewal_final_notice_sent_at == NOW
    assert Event.objects.filter(event_type="license.renewal_reminder_final_notice", license=license).count() == 1
    assert run_renewal_workflow()["final_notices_sent"] == 0
    frozen.shift(timedelta(days=1))
    assert run_renewal_workflow()["final_notices_sent"] == 0
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("days", [9.5, 5.5])
def test_no_final_notice_outside_six_to_eight_days(frozen, days):
    renewable(days, renewal_notified_at=NOW - timedelta(days=80))
    assert run_renewal_workflow()["final_notices_sent"] == 0
    assert mail.outbox == []


def test_no_final_notice_for_a_renewed_or_ineligible_license(frozen):
    renewed = renewable(7.5, renewal_notified_at=NOW - timedelta(days=80))
    _child(renewed)
    disputed = renewable(7.5, renewal_notified_at=NOW - timedelta(days=80))
    _dispute(disputed)
    assert run_renewal_workflow()["final_notices_sent"] == 0
    assert mail.outbox == []


def test_a_license_never_offered_gets_one_email_at_the_final_notice(frozen):
    license = renewable(7.5)  # entered the window late: no offer announced yet
    counts = run_renewal_workflow()
    assert (counts["offer_emails_sent"], counts["final_notices_sent"]) == (0, 1)
    assert [m.subject for m in mail.outbox] == ["FINAL NOTICE: License Expires in 7 Days"]
    license = reload(license)
    assert license.renewal_notified_at == license.renewal_final_notice_sent_at == NOW
    assert run_renewal_workflow()["offer_emails_sent"] == 0
    assert len(mail.outbox) == 1


def test_a_license_too_close_for_the_final_notice_still_gets_its_offer(frozen):
    renewable(3.5)
    assert run_renewal_workflow()["offer_emails_sent"] == 1
    assert [m.subject for m in mail.outbox] == ["Renewal Offer Available for Sunset"]


def test_the_final_notice_quotes_the_pending_offer(frozen):
    license = renewable(7.5, renewal_notified_at=NOW - timedelta(days=80))
    offer = renewals.create_offer(license, NOW - timedelta(days=3))
    run_renewal_workflow()
    assert RenewalOffer.objects.filter(license=license).count() == 1
    assert f"/renewal/{offer.pk}" in mail.outbox[0].body


# --- acceptance ------------------------------------------------------------------------------------------------


def queued_confirmations() -> list[int]:
    """Renewal ids of the confirmation jobs waiting on their queue."""
    queue = get_queue(get_spec(renewals.CONFIRMATION_JOB).queue)
    return [job.kwargs["renewal_id"] for job in queue.get_jobs() if list(job.args) == [renewals.CONFIRMATION_JOB]]


def test_confirmation_job_for_an_unknown_renewal_fails_once():
    with pytest.raises(InvalidInput, match="Renewal license 999999 does not exist"):
        send_renewal_confirmation(renewal_id=999_999)


def api_client(user) -> tuple[Client, dict[str, str]]:
    _, raw = ApiToken.objects.issue(user)
    return Client(), {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def accept_url(offer: RenewalOffer) -> str:
    return f"/api/licenses/{offer.license_id}/renewal/{offer.pk}/accept"


def test_the_brand_accepts_an_offer_through_the_api(frozen, django_capture_on_commit_callbacks):
    license = renewable(75, owners=2, fee_cents=500_000, rev_share_bps=1000, scope_json={"media": {"digital": True}})
    offer = renewals.create_offer(license, NOW)
    client, auth = api_client(license.brand.user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(accept_url(offer), **auth)
    assert response.status_code == 201, response.content
    renewal = License.objects.get(pk=response.json()["id"])
    assert renewal.status == S.PENDING_APPROVAL
    assert renewal.parent_license_id == license.pk
    assert (renewal.start_date, renewal.end_date) == (offer.start_date, offer.end_date)
    assert (renewal.fee_cents, renewal.rev_share_bps) == (offer.fee_cents, offer.rev_share_bps)
    assert (renewal.ip_asset_id, renewal.brand_id, renewal.license_type) == (
        license.ip_asset_id,
        license.brand_id,
        license.license_type,
    )
    assert renewal.scope_json == {"media": {"digital": True}}
    assert renewal.created_by_id == license.brand.user_id
    assert renewal.metadata["renewalFrom"] == license.pk
    assert renewal.metadata["renewalOfferId"] == offer.pk
    assert renewal.metadata["renewalAdjustments"] == offer.adjustments
    offer.refresh_from_db()
    assert offer.status == RenewalOffer.Status.ACCEPTED and offer.renewal_license_id == renewal.pk
    assert offer.accepted_by_id == license.brand.user_id and offer.accepted_at == NOW
    audit = AuditEvent.objects.get(action="renewal_accepted")
    assert audit.after["renewalId"] == renewal.pk and audit.actor_id == license.brand.user_id
    owner_ids = set(IpOwnership.objects.filter(ip_asset=license.ip_asset).values_list("creator__user_id", flat=True))
    notes = Notification.objects.filter(type=Notification.Type.LICENSE)
    assert {n.user_id for n in notes} == owner_ids and len(owner_ids) == 2
    assert all(n.action_url == f"/licenses/{renewal.pk}" for n in notes)
    # The confirmation is a job, not sent inside the request: one queued, once.
    assert mail.outbox == []
    assert queued_confirmations() == [renewal.pk]
    assert send_renewal_confirmation(renewal_id=renewal.pk) == {"renewal_id": renewal.pk, "sent": 1}
    assert send_renewal_confirmation(renewal_id=renewal.pk)["sent"] == 0
    [confirmation] = mail.outbox
    assert confirmation.subject == "Renewal Confirmed: Sunset"
    assert confirmation.to == [license.brand.user.email]
    assert f"${renewal_workflow.dollars(offer.fee_cents)}" in confirmation.body
    # The catch-up phase finds nothing left to confirm.
    assert renewal_workflow.send_renewal_confirmations(NOW) == 0
    assert len(mail.outbox) == 1


def test_only_the_brand_user_may_accept(frozen):
    license = renewable(75)
    offer = renewals.create_offer(license, NOW)
    for user in (make_user(), make_user(is_staff=True)):
        client, auth = api_client(user)
        assert client.post(accept_url(offer), **auth).status_code == 404
    client, auth = api_client(license.brand.user)
    wrong_license = f"/api/licenses/{renewable(75).pk}/renewal/{offer.pk}/accept"
    assert client.post(wrong_license, **auth).status_code == 404
    assert client.post(f"/api/licenses/{license.pk}/renewal/999999/accept", **auth).status_code == 404
    assert client.get(accept_url(offer), **auth).status_code == 405
    assert Client().post(accept_url(offer)).status_code == 401
    assert not License.objects.filter(parent_license=license).exists()


def test_an_expired_or_accepted_offer_is_a_conflict(frozen):
    license = renewable(55)
    offer = renewals.create_offer(license, NOW - timedelta(days=31))
    client, auth = api_client(license.brand.user)
    response = client.post(accept_url(offer), **auth)
    assert response.status_code == 409 and "expired" in response.json()["error"]
    fresh = renewals.create_offer(license, NOW)
    assert client.post(accept_url(fresh), **auth).status_code == 201
    again = client.post(accept_url(fresh), **auth)
    assert again.status_code == 409 and "no longer pending" in again.json()["error"]
    assert License.objects.filter(parent_license=license).count() == 1


def test_an_offer_whose_terms_no_longer_hold_cannot_be_accepted(frozen):
    license = renewable(75)
    offer = renewals.create_offer(license, NOW)
    neighbour(license, license_type=LicenseType.EXCLUSIVE)  # sold exclusively meanwhile
    client, auth = api_client(license.brand.user)
    response = client.post(accept_url(offer), **auth)
    assert response.status_code == 409 and "conflicts" in response.json()["error"]
    assert reload_offer(offer).status == RenewalOffer.Status.PENDING


def reload_offer(offer: RenewalOffer) -> RenewalOffer:
    offer.refresh_from_db()
    return offer


def test_a_replay_with_the_same_idempotency_key_answers_the_first_response(frozen):
    license = renewable(75)
    offer = renewals.create_offer(license, NOW)
    client, auth = api_client(license.brand.user)
    first = client.post(accept_url(offer), HTTP_IDEMPOTENCY_KEY="k-1", **auth)
    replay = client.post(accept_url(offer), HTTP_IDEMPOTENCY_KEY="k-1", **auth)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert License.objects.filter(parent_license=license).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_acceptances_at_once_create_one_renewal():
    license = renewable(75, end=timezone.now() + timedelta(days=75))
    offer = renewals.create_offer(license)
    outcomes = run_at_once(*[lambda: renewals.accept_offer(offer, license.brand.user_id)] * 2)
    made = [o for o in outcomes if isinstance(o, License)]
    refused = [o for o in outcomes if isinstance(o, renewals.OfferNotAcceptable)]
    assert (len(made), len(refused)) == (1, 1), outcomes
    assert License.objects.filter(parent_license=license).count() == 1
    assert AuditEvent.objects.filter(action="renewal_accepted").count() == 1
    assert queued_confirmations() == [made[0].pk]  # one confirmation


# --- auto-renewal ------------------------------------------------------------------------------------------------


def test_auto_renew_creates_one_renewal_with_the_offers_terms(frozen, django_capture_on_commit_callbacks):
    license = renewable(45, auto_renew=True, fee_cents=300_000)
    with django_capture_on_commit_callbacks(execute=True):
        assert renewals.auto_renew_due_licenses() == {"processed": 1, "failed": 0, "skipped": 0}
    offer = RenewalOffer.objects.get(license=license)
    renewal = License.objects.get(parent_license=license)
    assert offer.status == RenewalOffer.Status.ACCEPTED and offer.renewal_license_id == renewal.pk
    assert offer.accepted_by_id is None  # the system, on behalf of the brand
    assert renewal.status == S.PENDING_APPROVAL and renewal.auto_renew
    assert renewal.created_by_id == license.brand.user_id
    assert (renewal.fee_cents, renewal.start_date, renewal.end_date) == (315_000, offer.start_date, offer.end_date)
    assert AuditEvent.objects.get(action="renewal_accepted").after["acceptedBy"] == "system (auto-renew)"
    assert queued_confirmations() == [renewal.pk]
    send_renewal_confirmation(renewal_id=renewal.pk)
    [confirmation] = mail.outbox
    assert confirmation.subject == "License Renewed Automatically: Sunset"
    with django_capture_on_commit_callbacks(execute=True):
        assert renewals.auto_renew_due_licenses() == {"processed": 0, "failed": 0, "skipped": 0}
    assert License.objects.filter(parent_license=license).count() == 1
    assert RenewalOffer.objects.count() == 1 and len(mail.outbox) == 1


def test_auto_renew_accepts_the_pending_offer(frozen):
    license = renewable(45, auto_renew=True)
    offer = renewals.create_offer(license, NOW - timedelta(days=10))
    renewals.auto_renew_due_licenses()
    assert reload_offer(offer).status == RenewalOffer.Status.ACCEPTED
    assert RenewalOffer.objects.count() == 1


def test_auto_renew_window_and_selection(frozen):
    renewable(61, auto_renew=True)  # not yet
    renewable(45)  # no auto-renew
    renewable(45, auto_renew=True, status=S.SUSPENDED)
    renewable(45, auto_renew=True, deleted_at=NOW)
    assert renewals.auto_renew_due_licenses() == {"processed": 0, "failed": 0, "skipped": 0}
    assert not License.objects.filter(parent_license__isnull=False).exists()


def test_an_ineligible_auto_renewal_is_skipped_not_failed(frozen, caplog):
    license = renewable(45, auto_renew=True)
    _dispute(license)
    with caplog.at_level("INFO", logger="yesgoddess.licensing.renewals"):
        assert renewals.auto_renew_due_licenses() == {"processed": 0, "failed": 0, "skipped": 1}
    assert f"license={license.pk} reasons=OWNERSHIP_DISPUTED" in caplog.text
    assert license.brand.user.email not in caplog.text
    assert not RenewalOffer.objects.exists()


def test_the_system_cannot_accept_for_a_license_without_auto_renew(frozen):
    license = renewable(45)
    offer = renewals.create_offer(license, NOW)
    with pytest.raises(renewals.NotOfferRecipient):
        renewals.accept_offer(offer, None, on_behalf_of_auto_renew=True)
    with pytest.raises(renewals.NotOfferRecipient):
        renewals.accept_offer(offer, None)


# --- analytics snapshot ---------------------------------------------------------------------------------------------


def test_the_renewal_snapshot_is_upserted_per_day(frozen):
    yesterday = NOW.date() - timedelta(days=1)
    ended = [renewable(-d, fee_cents=100_000, status=S.EXPIRED) for d in (2, 5, 10, 20)]
    renewable(-40, status=S.EXPIRED)  # before the period
    for parent in ended[:2]:
        offer = renewals.create_offer(parent, NOW - timedelta(days=30))
        renewals.accept_offer(offer, parent.brand.user_id, now=NOW - timedelta(days=26))
    at_risk = renewable(20)
    renewal_workflow.record_renewal_snapshot(NOW)
    snapshot = LicensePerformanceSnapshot.objects.get()
    assert (snapshot.date, snapshot.granularity) == (yesterday, "renewals_30d")
    assert snapshot.period_start == yesterday - timedelta(days=29)
    metrics = snapshot.metrics
    assert metrics["totalExpiring"] == 4
    assert metrics["totalRenewalsSuccessful"] == 2 and metrics["totalRenewalsFailed"] == 2
    assert metrics["renewalRate"] == 50.0
    assert metrics["averageDaysToRenewal"] == 4.0
    fees = sum(License.objects.filter(parent_license__in=ended).values_list("fee_cents", flat=True))
    assert metrics["totalRenewalRevenueCents"] == fees == snapshot.total_revenue_cents
    assert metrics["revenueRetentionRate"] == round(fees * 100 / 400_000, 2)
    assert sorted(a["ipAssetId"] for a in metrics["topAssets"]) == sorted(p.ip_asset_id for p in ended[:2])
    assert [r["licenseId"] for r in metrics["atRiskLicenses"]] == [at_risk.pk]
    # A second run (here: after another renewal) updates the same row.
    offer = renewals.create_offer(ended[2], NOW)
    renewals.accept_offer(offer, ended[2].brand.user_id)
    renewal_workflow.record_renewal_snapshot(NOW)
    snapshot = LicensePerformanceSnapshot.objects.get()
    assert snapshot.metrics["totalRenewalsSuccessful"] == 3


# --- templates, concurrency, the real worker ----------------------------------------------------------------------


def test_every_template_renders_with_the_variables_the_code_passes(frozen, settings):
    engine = copy.deepcopy(settings.TEMPLATES)
    engine[0].setdefault("OPTIONS", {})["string_if_invalid"] = "!!MISSING %s!!"
    settings.TEMPLATES = engine
    license = renewable(75, auto_renew=True)
    license = License.objects.select_related(*eligibility.RELATED).get(pk=license.pk)
    offer = renewals.create_offer(license, NOW)
    renewal = renewals.accept_offer(offer, license.brand.user_id)
    renewal = License.objects.select_related(*eligibility.RELATED).get(pk=renewal.pk)
    contexts = {
        "license_renewal_offer": renewal_workflow.offer_email_context(license, offer, NOW),
        "license_renewal_final_notice": renewal_workflow.final_notice_context(license, offer, NOW),
        "license_renewal_complete": renewal_workflow.confirmation_context(renewal, auto_renewed=False),
    }
    for name, context in contexts.items():
        for variant in (context, context | {"adjustments_summary": [], "auto_renew": False, "auto_renewed": True}):
            subject, text, html = render_email(name, variant)
            for part in (subject, text, html):
                assert "!!MISSING" not in part, (name, part)
            assert license.ip_asset.title in text and license.ip_asset.title in html
            assert "<html" in html and "{{" not in text
            if "renewal_fee_dollars" in variant:
                assert f"${variant['renewal_fee_dollars']}" in text
                assert f"${variant['renewal_fee_dollars']}" in html


@pytest.mark.django_db(transaction=True)
def test_two_workflows_at_once_send_each_email_once():
    now = timezone.now()
    brand = make_brand(user=make_user(email="many@example.com"))
    for _ in range(12):
        renewable(80, brand=brand, end=now + timedelta(days=80))
    for _ in range(8):
        renewable(7.5, brand=brand, end=now + timedelta(days=7, hours=12), renewal_notified_at=now)
    run_twice_at_once(lambda: run_renewal_workflow())
    subjects = [m.subject for m in emails_to("many@example.com")]
    assert subjects.count("Renewal Offer Available for Sunset") == 12
    assert subjects.count("FINAL NOTICE: License Expires in 7 Days") == 8
    assert RenewalOffer.objects.filter(status=RenewalOffer.Status.PENDING).count() == 20


@pytest.mark.django_db(transaction=True)
def test_the_workflow_runs_in_a_real_worker(run_worker):
    now = timezone.now()
    license = renewable(80, end=now + timedelta(days=80))
    enqueue("license-renewal-workflow")
    run_worker("scheduled")
    offer = RenewalOffer.objects.get(license=license)
    assert offer.status == RenewalOffer.Status.PENDING
    assert reload(license).renewal_notified_at is not None
    assert Event.objects.filter(event_type="license.renewal_offer", license=license).count() == 1
    assert LicensePerformanceSnapshot.objects.filter(granularity="renewals_30d").count() == 1
    # A second run makes and sends nothing new.
    enqueue("license-renewal-workflow")
    run_worker("scheduled")
    assert RenewalOffer.objects.count() == 1
    assert Event.objects.filter(event_type="license.renewal_offer").count() == 1
    assert LicensePerformanceSnapshot.objects.count() == 1


# --- at most once across a crash ----------------------------------------------------------------------------


def test_a_crash_mid_batch_sends_no_offer_email_twice_and_the_retry_sends_the_rest(frozen, settings):
    licenses = [renewable(80, brand=make_brand(user=make_user(email=f"brand{i}@example.com"))) for i in range(4)]
    backend = DroppingBackend.install(settings, drop_after=2)  # breaks while sending the third
    with pytest.raises(RenewalWorkflowError, match="offer_emails"):
        run_renewal_workflow()
    assert [m.to for m in mail.outbox] == [["brand0@example.com"], ["brand1@example.com"]]
    notified = [reload(lic).renewal_notified_at for lic in licenses]
    assert notified == [NOW, NOW, NOW, None]  # sent, sent, in doubt (kept), never attempted (released)
    events = Event.objects.filter(event_type="license.renewal_offer")
    assert sorted(events.values_list("license", flat=True)) == [licenses[0].pk, licenses[1].pk]

    backend.drop_after = None  # RQ's retry, the server back
    frozen.shift(timedelta(minutes=5))
    counts = run_renewal_workflow()
    assert (counts["offers_created"], counts["offer_emails_sent"]) == (0, 1)
    recipients = [a for m in mail.outbox for a in m.to]
    assert sorted(recipients) == ["brand0@example.com", "brand1@example.com", "brand3@example.com"]
    assert reload(licenses[3]).renewal_notified_at == NOW + timedelta(minutes=5)
    assert events.count() == 3


def test_a_final_notice_not_sent_gives_renewal_notified_at_back_and_one_in_doubt_keeps_it(frozen, settings):
    in_doubt, unsent = renewable(7.5), renewable(7.5)  # never told of an offer: the notice is the offer
    backend = DroppingBackend.install(settings, drop_after=0)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        renewal_workflow.send_final_notices(NOW)
    in_doubt, unsent = reload(in_doubt), reload(unsent)
    # In doubt: it may have gone out with its offer; neither goes again (issue 21 item 11).
    assert (in_doubt.renewal_final_notice_sent_at, in_doubt.renewal_notified_at) == (NOW, NOW)
    assert (unsent.renewal_final_notice_sent_at, unsent.renewal_notified_at) == (None, None)
    backend.drop_after = None
    assert renewal_workflow.send_final_notices(NOW)["final_notices_sent"] == 1
    assert [m.to for m in mail.outbox] == [[unsent.brand.user.email]]
    assert reload(unsent).renewal_notified_at == reload(unsent).renewal_final_notice_sent_at == NOW
    # The next day's workflow does not email the offer of the notice in doubt on its own.
    assert renewal_workflow.send_offer_emails(NOW + timedelta(days=1))["offer_emails_sent"] == 0
    assert [m.to for m in mail.outbox] == [[unsent.brand.user.email]]


def test_a_confirmation_in_doubt_is_not_sent_again_and_one_never_attempted_is(frozen, settings):
    made = []
    for _ in range(2):
        license = renewable(75)
        made.append(renewals.accept_offer(renewals.create_offer(license, NOW), license.brand.user_id, now=NOW))
    backend = DroppingBackend.install(settings, drop_after=0)  # the first is in doubt, the second never goes
    with pytest.raises(smtplib.SMTPServerDisconnected):
        renewal_workflow.send_renewal_confirmations(NOW)
    marker = renewal_workflow.CONFIRMATION_MARKER
    assert [marker in reload(renewal).metadata for renewal in made] == [True, False]
    assert reload(made[1]).metadata["renewalOfferId"]  # the release removed the marker only
    backend.drop_after = None
    assert renewal_workflow.send_renewal_confirmations(NOW + timedelta(minutes=5)) == 1
    assert [m.to for m in mail.outbox] == [[made[1].brand.user.email]]
    assert renewal_workflow.send_renewal_confirmations(NOW + timedelta(minutes=10)) == 0
