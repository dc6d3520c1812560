"""Royalty calculation and statement notification, against hand-computed figures.

Runs cover whole UTC days of 2026 (a run's period must be over). Unless a test says
otherwise, licenses use the default payout threshold of $20.00.
"""

from __future__ import annotations

import itertools
import smtplib
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from jobs.api import enqueue
from jobs.handlers.royalties import calculate_royalties, notify_statements
from yesgoddess.core.errors import InvalidInput
from yesgoddess.licensing.models import LicenseStatus, LicenseUsageDailyAggregate
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import render_email
from yesgoddess.royalties.calculation import flat_fee_part, round_half_even, split_largest_remainder
from yesgoddess.royalties.models import RoyaltyLine, RoyaltyRun, RoyaltyStatement
from yesgoddess.royalties.services import RunRefused, create_run

from .concurrency import run_twice_at_once
from .email_backends import DroppingBackend
from .license_factories import make_asset, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db


def utc(y: int, m: int, d: int, hour: int = 0) -> datetime:
    return datetime(y, m, d, hour, tzinfo=UTC)


@pytest.fixture
def staff():
    return make_user(is_staff=True)


def run_for(staff, start: date, end: date) -> RoyaltyRun:
    return create_run(start, end, staff.pk)


def january(staff) -> RoyaltyRun:
    return run_for(staff, date(2026, 1, 1), date(2026, 1, 31))


def statement_of(run: RoyaltyRun, creator) -> RoyaltyStatement:
    return RoyaltyStatement.objects.get(royalty_run=run, creator=creator)


def license_lines(statement: RoyaltyStatement) -> list[int]:
    return list(
        statement.lines.filter(line_type=RoyaltyLine.LineType.LICENSE)
        .order_by("pk")
        .values_list("calculated_royalty_cents", flat=True)
    )


# --- arithmetic ------------------------------------------------------------------------


def test_round_half_even():
    assert [round_half_even(n, 2) for n in (1, 3, 5, 7)] == [0, 2, 2, 4]  # 0.5, 1.5, 2.5, 3.5
    assert round_half_even(10, 3) == 3 and round_half_even(20, 3) == 7


def test_largest_remainder_hand_computed():
    assert split_largest_remainder(100, [3333, 3333, 3334]) == [33, 33, 34]
    assert split_largest_remainder(10, [3334, 3333, 3333]) == [4, 3, 3]
    assert split_largest_remainder(1001, [5000, 2500, 2500]) == [501, 250, 250]
    with pytest.raises(ValueError, match="9000 bps"):
        split_largest_remainder(100, [5000, 4000])


@given(
    amount=st.integers(min_value=0, max_value=10**12),
    cuts=st.lists(st.integers(min_value=1, max_value=9_999), max_size=12, unique=True),
)
def test_split_sums_exactly_and_each_share_is_within_a_cent(amount, cuts):
    points = [0, *sorted(cuts), 10_000]
    shares = [b - a for a, b in itertools.pairwise(points)]
    parts = split_largest_remainder(amount, shares)
    assert sum(parts) == amount
    for part, share in zip(parts, shares, strict=True):
        exact = amount * share / 10_000
        assert abs(part - exact) < 1  # floor or floor + 1 of the exact share


def test_flat_fee_parts_of_consecutive_periods_add_up_to_the_fee():
    start, end = date(2026, 1, 10), date(2026, 3, 20)  # 70 days
    months = [
        (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 31)),
    ]
    parts = [flat_fee_part(99_999, start, end, a, b) for a, b in months]
    # 22, 28 and 20 days of 70: round(99,999 x 22/70) = 31,428; round(x 50/70) = 71,428 (- 31,428)
    assert parts == [31_428, 40_000, 28_571]
    assert sum(parts) == 99_999


# --- runs -------------------------------------------------------------------------------


def test_proration_at_the_period_edges_and_a_license_active_one_day(staff):
    ana = make_creator("Ana")
    asset = make_asset((ana, 10_000))
    # 30-day term, 15 days of it in January: half the fee.
    make_license(asset=asset, start=utc(2025, 12, 17), end=utc(2026, 1, 15, 23), fee_cents=30_000)
    # Starts on January 31: one day of a 30-day term.
    make_license(asset=asset, start=utc(2026, 1, 31), end=utc(2026, 3, 1), fee_cents=3_000)
    # Entirely inside the period: the whole fee.
    make_license(asset=asset, start=utc(2026, 1, 5), end=utc(2026, 1, 6), fee_cents=777)
    # Outside the period, deleted, or never in force: nothing.
    make_license(asset=asset, start=utc(2026, 2, 1), end=utc(2026, 3, 1), fee_cents=5_000)
    make_license(asset=asset, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=5_000, deleted_at=utc(2026, 2, 1))
    make_license(asset=asset, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=5_000, status=LicenseStatus.DRAFT)
    run = january(staff)
    result = calculate_royalties(run_id=run.pk, user_id=staff.pk)
    assert result["revenue_cents"] == 15_000 + 100 + 777
    statement = statement_of(run, ana)
    assert sorted(license_lines(statement)) == [100, 777, 15_000]
    line = statement.lines.get(calculated_royalty_cents=100)
    assert line.metadata["daysActive"] == 1 and line.metadata["termDays"] == 30
    run.refresh_from_db()
    assert (run.status, run.total_revenue_cents, run.total_royalties_cents) == ("CALCULATED", 15_877, 15_877)
    assert "Calculation completed: 1 creators, 3 licenses, $158.77 revenue, $158.77 royalties" in run.notes


@pytest.mark.parametrize(("bps", "expected"), [(0, 0), (2500, 2500), (10_000, 10_001)])
def test_usage_revenue_times_rev_share(staff, bps, expected):
    ana = make_creator("Ana")
    lic = make_license(
        asset=make_asset((ana, 10_000)), start=utc(2025, 1, 1), end=utc(2026, 12, 31), fee_cents=0, rev_share_bps=bps
    )
    for day, cents in ((date(2026, 1, 1), 4_000), (date(2026, 1, 31), 6_001), (date(2026, 2, 1), 99_999)):
        LicenseUsageDailyAggregate.objects.create(license=lic, date=day, total_revenue_cents=cents)
    run = january(staff)
    result = calculate_royalties(run_id=run.pk)
    assert result["revenue_cents"] == expected  # 10,001 x bps / 10,000, banker's rounding (2500.25 -> 2500)
    if expected:
        line = statement_of(run, ana).lines.get(line_type="LICENSE")
        assert (line.metadata["usageRevenueCents"], line.metadata["usageShareCents"]) == (10_001, expected)
    else:
        assert not RoyaltyStatement.objects.exists()  # a license with no revenue touches nobody


def test_three_way_split_and_two_rows_of_one_creator(staff):
    ana, ben, cy = make_creator("Ana"), make_creator("Ben"), make_creator("Cy")
    three = make_asset((ana, 3333), (ben, 3333), (cy, 3334))
    make_license(asset=three, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=100)
    twice = make_asset((ana, 5000), (ana, 2500), (ben, 2500))
    make_license(asset=twice, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=1001)
    run = january(staff)
    calculate_royalties(run_id=run.pk)
    assert license_lines(statement_of(run, cy)) == [34]
    assert sorted(license_lines(statement_of(run, ana))) == [33, 250, 501]  # each ownership row its own line
    assert sorted(license_lines(statement_of(run, ben))) == [33, 250]
    total = sum(RoyaltyLine.objects.filter(line_type="LICENSE").values_list("calculated_royalty_cents", flat=True))
    assert total == 1101
    run.refresh_from_db()
    assert run.total_royalties_cents == run.total_revenue_cents == 1101


def test_shares_not_summing_fail_the_run_naming_the_asset_and_write_nothing(staff, run_worker):
    ana, ben = make_creator(), make_creator()
    bad = make_asset((ana, 5000), (ben, 4000))
    make_asset((ana, 10_000))
    make_license(asset=bad, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=1000)
    run = january(staff)
    with pytest.raises(InvalidInput, match=f"asset {bad.pk} sums to 9000 bps"):
        calculate_royalties(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "FAILED" and f"asset {bad.pk} sums to 9000 bps" in run.notes
    assert not RoyaltyStatement.objects.exists() and not RoyaltyLine.objects.exists()
    # Fixed, the FAILED run is recalculated.
    bad.ownerships.filter(creator=ben).update(share_bps=5000)
    assert calculate_royalties(run_id=run.pk)["statements"] == 2
    run.refresh_from_db()
    assert run.status == "CALCULATED"


def test_held_balance_is_carried_exactly_once(staff):
    ana = make_creator("Ana")
    asset = make_asset((ana, 10_000))
    for month, fee in ((1, 1_500), (2, 1_000), (3, 100)):
        last = {1: 31, 2: 28, 3: 31}[month]
        make_license(asset=asset, start=utc(2026, month, 1), end=utc(2026, month, last), fee_cents=fee)
    jan = january(staff)
    calculate_royalties(run_id=jan.pk)
    held = statement_of(jan, ana)
    assert (held.status, held.total_earnings_cents) == ("HELD", 1_500)
    note = held.lines.get(line_type="THRESHOLD_NOTE")
    assert "below the minimum payout of $20.00" in note.metadata["description"]

    feb = run_for(staff, date(2026, 2, 1), date(2026, 2, 28))
    calculate_royalties(run_id=feb.pk)
    paid = statement_of(feb, ana)
    assert (paid.status, paid.total_earnings_cents) == ("PENDING", 2_500)
    carry = paid.lines.get(line_type="CARRYOVER")
    assert carry.calculated_royalty_cents == 1_500 and carry.metadata["carriedStatementId"] == held.pk
    held.refresh_from_db()
    assert held.status == "CARRIED"

    mar = run_for(staff, date(2026, 3, 1), date(2026, 3, 31))
    calculate_royalties(run_id=mar.pk)
    third = statement_of(mar, ana)
    assert (third.status, third.total_earnings_cents) == ("HELD", 100)
    assert not third.lines.filter(line_type="CARRYOVER").exists()


@pytest.mark.parametrize(
    ("vip", "custom", "status"), [(True, None, "PENDING"), (False, 1_500, "PENDING"), (True, 5_000, "HELD")]
)
def test_vip_and_custom_thresholds(staff, vip, custom, status):
    ana = make_creator("Ana")
    ana.vip_status, ana.custom_minimum_payout_cents = vip, custom
    ana.save()
    make_license(asset=make_asset((ana, 10_000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=1_500)
    run = january(staff)
    calculate_royalties(run_id=run.pk)
    assert statement_of(run, ana).status == status


def test_rerun_of_a_calculated_run_changes_nothing(staff):
    ana = make_creator()
    make_license(asset=make_asset((ana, 10_000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=5_000)
    run = january(staff)
    calculate_royalties(run_id=run.pk)
    before = list(RoyaltyLine.objects.values_list("pk", "calculated_royalty_cents"))
    assert calculate_royalties(run_id=run.pk) == {"run_id": run.pk, "already_calculated": 1}
    assert list(RoyaltyLine.objects.values_list("pk", "calculated_royalty_cents")) == before
    run.refresh_from_db()
    assert run.status == "CALCULATED" and run.notes.count("Calculation completed") == 1


def test_unknown_run_fails_once_with_a_clear_message():
    with pytest.raises(InvalidInput, match="Royalty run 999999 does not exist"):
        calculate_royalties(run_id=999_999)
    with pytest.raises(InvalidInput, match="does not exist"):
        notify_statements(run_id=999_999)


def test_runs_refused_for_overlap_future_and_reversed_periods(staff):
    january(staff)
    with pytest.raises(RunRefused, match="overlaps run"):
        run_for(staff, date(2026, 1, 31), date(2026, 2, 27))
    today = timezone.localdate()
    with pytest.raises(RunRefused, match="must be over"):  # a period that ends today is not over yet
        run_for(staff, today - timedelta(days=29), today)
    with pytest.raises(RunRefused, match="must be over"):
        run_for(staff, today + timedelta(days=1), today + timedelta(days=30))
    with pytest.raises(RunRefused, match="before period_start"):
        run_for(staff, date(2026, 3, 1), date(2026, 2, 1))
    assert run_for(staff, date(2026, 2, 1), date(2026, 2, 28)).status == "DRAFT"


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_run_calculate_it_once(staff):
    ana = make_creator()
    for _ in range(20):
        make_license(asset=make_asset((ana, 10_000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=1_000)
    run = january(staff)
    results = run_twice_at_once(lambda: calculate_royalties(run_id=run.pk))
    assert sum(1 for r in results if "statements" in r) == 1  # the other stepped aside
    assert RoyaltyStatement.objects.count() == 1 and RoyaltyLine.objects.filter(line_type="LICENSE").count() == 20


# --- statements -------------------------------------------------------------------------


def calculated_run(staff) -> tuple[RoyaltyRun, list]:
    creators = [make_creator(f"C{i}") for i in range(3)]
    for creator, fee in zip(creators, (5_000, 1_000, 7_000), strict=True):
        make_license(asset=make_asset((creator, 10_000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=fee)
    run = january(staff)
    calculate_royalties(run_id=run.pk)
    return run, creators


def test_each_statement_is_notified_once(staff):
    run, creators = calculated_run(staff)
    assert notify_statements(run_id=run.pk) == {"run_id": run.pk, "notified": 3, "refused": 0}
    assert notify_statements(run_id=run.pk)["notified"] == 0
    assert len(mail.outbox) == 3
    held_mail = next(m for m in mail.outbox if creators[1].user.email in m.to)
    assert "$10.00 USD" in held_mail.body and "below the minimum payout of $20.00" in held_mail.body
    notes = Notification.objects.filter(type="ROYALTY")
    assert notes.count() == 3
    assert notes.get(user=creators[0].user).message == "Your statement for Jan 1, 2026 - Jan 31, 2026 is now available."
    assert RoyaltyStatement.objects.filter(notified_at__isnull=True).count() == 0


def test_a_refused_address_is_retried_by_the_next_run(settings, staff):
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    run, creators = calculated_run(staff)
    creators[0].user.email = "refuse@example.com"
    creators[0].user.save()
    assert notify_statements(run_id=run.pk) == {"run_id": run.pk, "notified": 2, "refused": 1}
    creators[0].user.email = "fixed@example.com"
    creators[0].user.save()
    assert notify_statements(run_id=run.pk)["notified"] == 1
    assert Notification.objects.filter(type="ROYALTY").count() == 3


def test_a_crash_mid_batch_notifies_nobody_twice_and_the_retry_notifies_the_rest(settings, staff):
    run, _ = calculated_run(staff)
    backend = DroppingBackend.install(settings, drop_after=1)  # breaks while sending the second
    with pytest.raises(smtplib.SMTPServerDisconnected):
        notify_statements(run_id=run.pk)
    statements = list(RoyaltyStatement.objects.filter(royalty_run=run).select_related("creator__user").order_by("pk"))
    assert [m.to for m in mail.outbox] == [[statements[0].creator.user.email]]
    # sent, in doubt (kept), never attempted (released)
    assert [s.notified_at is not None for s in statements] == [True, True, False]
    assert list(Notification.objects.filter(type="ROYALTY").values_list("user", flat=True)) == [
        statements[0].creator.user_id
    ]

    backend.drop_after = None  # RQ's retry, the server back
    assert notify_statements(run_id=run.pk) == {"run_id": run.pk, "notified": 1, "refused": 0}
    recipients = [a for m in mail.outbox for a in m.to]
    assert recipients == [statements[0].creator.user.email, statements[2].creator.user.email]
    assert Notification.objects.filter(type="ROYALTY").count() == 2
    assert notify_statements(run_id=run.pk)["notified"] == 0


def test_a_balance_carried_into_a_later_run_is_not_announced_as_paid_out(settings, staff):
    """January is announced late, after February's run carried its HELD balance: the
    creator is told where the balance went, not that it will be paid out."""
    settings.APP_URL = "https://app.example"
    ana, ben = make_creator("Ana"), make_creator("Ben")
    asset, big = make_asset((ana, 10_000)), make_asset((ben, 10_000))
    make_license(asset=asset, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=1_500)  # held
    make_license(asset=asset, start=utc(2026, 2, 1), end=utc(2026, 2, 28), fee_cents=1_000)
    make_license(asset=big, start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=9_000)  # paid out
    jan = january(staff)
    calculate_royalties(run_id=jan.pk)
    feb = run_for(staff, date(2026, 2, 1), date(2026, 2, 28))
    calculate_royalties(run_id=feb.pk)
    carried, carrier = statement_of(jan, ana), statement_of(feb, ana)
    assert (carried.status, carrier.status) == ("CARRIED", "PENDING")

    assert notify_statements(run_id=jan.pk)["notified"] == 2
    ana_mail = next(m for m in mail.outbox if ana.user.email in m.to)
    assert "will be paid out" not in ana_mail.body
    assert "$15.00 USD" in ana_mail.body and "below the minimum payout of $20.00" in ana_mail.body
    assert "carried into your statement for February 1, 2026 to February 28, 2026" in ana_mail.body
    assert f"See that statement: https://app.example/dashboard/earnings/statements/{carrier.pk}" in ana_mail.body
    html = ana_mail.alternatives[0][0]
    assert "will be paid out" not in html and f"statements/{carrier.pk}" in html
    ben_mail = next(m for m in mail.outbox if ben.user.email in m.to)
    assert "This amount will be paid out to you." in ben_mail.body and "carried" not in ben_mail.body

    mail.outbox.clear()
    notify_statements(run_id=feb.pk)
    [feb_mail] = mail.outbox
    assert "$25.00 USD" in feb_mail.body and "This amount will be paid out to you." in feb_mail.body


def test_statement_template_renders_every_variable():
    subject, text, html = render_email(
        "royalty_statement",
        {
            "creator_name": "Ana <i>",
            "period_start": date(2026, 1, 1),
            "period_end": date(2026, 1, 31),
            "total_earnings": "$25.00",
            "currency": "USD",
            "held": False,
            "carried": False,
            "carried_into_start": None,
            "carried_into_end": None,
            "carried_into_url": "",
            "threshold": "$20.00",
            "statement_url": "https://app.example/dashboard/earnings/statements/4",
            "dashboard_url": "https://app.example/dashboard/earnings",
        },
    )
    assert subject == "Your earnings statement for Jan 1, 2026 - Jan 31, 2026"
    assert "Ana <i>" in text and "Ana &lt;i&gt;" in html
    assert "$25.00 USD" in text and "statements/4" in html and "{{" not in text + html


# --- API and workers ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_api_runs_calculation_and_lock_through_real_workers(client, staff, run_worker):
    ana = make_creator("Ana")
    make_license(asset=make_asset((ana, 10_000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31), fee_cents=5_000)
    client.force_login(staff)
    created = client.post(
        "/api/royalty-runs/",
        {"period_start": "2026-01-01", "period_end": "2026-01-31"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="run-jan",
    )
    assert created.status_code == 201, created.content
    run_id = created.json()["id"]
    replay = client.post(
        "/api/royalty-runs/",
        {"period_start": "2026-01-01", "period_end": "2026-01-31"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="run-jan",
    )
    assert replay.json()["id"] == run_id and RoyaltyRun.objects.count() == 1
    early_lock = client.post(f"/api/royalty-runs/{run_id}/lock")
    assert early_lock.status_code == 409 and "CALCULATED" in early_lock.json()["error"]
    run_worker("default")
    detail = client.get(f"/api/royalty-runs/{run_id}/").json()
    assert detail["status"] == "CALCULATED" and detail["total_royalties_cents"] == 5_000
    assert detail["statements"] == {"PENDING": 1} and detail["progress"]["done"] == 4
    locked = client.post(f"/api/royalty-runs/{run_id}/lock")
    assert locked.status_code == 200 and locked.json()["status"] == "LOCKED"
    run_worker("default")
    assert RoyaltyStatement.objects.get().notified_at is not None
    assert Notification.objects.filter(user=ana.user, type="ROYALTY").count() == 1


def test_api_refusals(client, staff):
    january(staff)
    someone = make_user()
    client.force_login(someone)
    body = {"period_start": "2026-02-01", "period_end": "2026-02-28"}
    assert client.post("/api/royalty-runs/", body, content_type="application/json").status_code == 404
    client.force_login(staff)
    overlap = client.post(
        "/api/royalty-runs/",
        {"period_start": "2026-01-15", "period_end": "2026-02-15"},
        content_type="application/json",
    )
    assert overlap.status_code == 409 and "overlaps" in overlap.json()["error"]
    future = client.post(
        "/api/royalty-runs/",
        {"period_start": str(timezone.localdate() - timedelta(days=10)), "period_end": str(timezone.localdate())},
        content_type="application/json",
    )
    assert future.status_code == 400 and "must be over" in future.json()["error"]
    bad = client.post("/api/royalty-runs/", {"period_start": "Jan"}, content_type="application/json")
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]
    assert client.get("/api/royalty-runs/999999/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_failed_calculation_through_a_worker_is_not_retried(staff, run_worker):
    ana, ben = make_creator(), make_creator()
    make_license(asset=make_asset((ana, 6000), (ben, 3000)), start=utc(2026, 1, 1), end=utc(2026, 1, 31))
    run = january(staff)
    enqueue("royalty-calculation", run_id=run.pk)
    result = run_worker("default")
    run.refresh_from_db()
    assert run.status == "FAILED" and "9000 bps" in run.notes
    assert run.notes.count("Calculation failed") == 1, result.stderr[-2000:]
