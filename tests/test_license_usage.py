"""license-usage-tracking: the usage API, aggregation, thresholds and overages,
forecasts, breach alerts and the purge (spec B §5.5, defects fixed)."""

from __future__ import annotations

import json
import smtplib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from jobs.api import enqueue
from jobs.handlers.license_usage import (
    aggregate_usage,
    check_usage_thresholds,
    generate_usage_forecasts,
    purge_usage_events,
    send_forecast_breach_alerts,
)
from yesgoddess.accounts.models import ApiToken
from yesgoddess.licensing import usage, usage_forecasts, usage_thresholds
from yesgoddess.licensing.models import (
    License,
    LicenseStatus,
    LicenseUsageDailyAggregate,
    LicenseUsageEvent,
    LicenseUsageForecast,
    LicenseUsageOverage,
    LicenseUsageThreshold,
)
from yesgoddess.notifications.delivery import deliver_pending, pending
from yesgoddess.notifications.models import Notification, NotificationPreference
from yesgoddess.notifications.services import render_email

from .concurrency import run_twice_at_once
from .email_backends import DroppingBackend
from .license_factories import make_asset, make_brand, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db

# A Wednesday; the week started on Monday 2025-03-10, the month on 2025-03-01.
NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
TODAY = NOW.date()


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def event(license: License, when: datetime, usage_type: str = "view", quantity: int = 1, **fields) -> None:
    LicenseUsageEvent.objects.create(
        license=license, occurred_at=when, usage_type=usage_type, quantity=quantity, **fields
    )


def set_usage(license: License, day: date, **columns: int) -> None:
    """Write a daily aggregate directly (what aggregation would have produced)."""
    LicenseUsageDailyAggregate.objects.update_or_create(license=license, date=day, defaults=columns)


def threshold(license: License, **fields) -> LicenseUsageThreshold:
    fields.setdefault("usage_type", "view")
    fields.setdefault("period_type", "daily")
    fields.setdefault("limit_quantity", 100)
    return LicenseUsageThreshold.objects.create(license=license, **fields)


def notices(license: License, title: str | None = None) -> list[Notification]:
    rows = Notification.objects.filter(user=license.brand.user).order_by("id")
    return list(rows.filter(title=title) if title else rows)


# --- aggregation --------------------------------------------------------------------------


def aggregates(license: License) -> dict[date, dict]:
    fields = [*usage.TYPE_COLUMNS.values(), "total_quantity", "total_revenue_cents", "unique_sessions"]
    return {
        row["date"]: {k: v for k, v in row.items() if k != "date" and v}
        for row in LicenseUsageDailyAggregate.objects.filter(license=license).values("date", *fields)
    }


def test_aggregation_of_yesterday_and_today_hand_computed(frozen):
    one, two = make_license(), make_license()
    event(one, at(2025, 3, 10, 23, 59, 59), "view", 100)  # the day before yesterday: outside the window
    event(one, at(2025, 3, 11, 0, 0, 0), "view", 3, session_id="A", revenue_cents=10)
    event(one, at(2025, 3, 11, 12, 0), "download", 2, session_id="B", revenue_cents=5)
    event(one, at(2025, 3, 11, 13, 0), "view", 1)  # no session: not a session
    event(one, datetime(2025, 3, 11, 23, 59, 59, 999999, tzinfo=UTC), "custom", 4, session_id="A")
    event(one, at(2025, 3, 12, 0, 0, 0), "click", 5, session_id="C")
    event(one, at(2025, 3, 12, 9, 0), "impression", 7, session_id="C", revenue_cents=100)
    event(one, at(2025, 3, 12, 9, 30), "play", 1, session_id="D")
    event(one, at(2025, 3, 12, 9, 45), "stream", 2, session_id="D")
    event(two, at(2025, 3, 12, 8, 0), "view", 10, session_id="X")

    assert aggregate_usage() == {"days": 2, "aggregates": 3, "aggregates_changed": 3, "licenses": 2}
    assert aggregates(one) == {
        date(2025, 3, 11): {
            "total_views": 4,
            "total_downloads": 2,
            "total_quantity": 10,  # custom included
            "total_revenue_cents": 15,
            "unique_sessions": 2,
        },
        date(2025, 3, 12): {
            "total_clicks": 5,
            "total_impressions": 7,
            "total_plays": 1,
            "total_streams": 2,
            "total_quantity": 15,
            "total_revenue_cents": 100,
            "unique_sessions": 2,
        },
    }
    assert aggregates(two) == {
        date(2025, 3, 12): {"total_views": 10, "total_quantity": 10, "unique_sessions": 1},
    }
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.total_usage_events, one.last_usage_at) == (8, at(2025, 3, 12, 9, 45))
    assert (two.total_usage_events, two.last_usage_at) == (1, at(2025, 3, 12, 8, 0))

    # A second run changes nothing (values replaced, unchanged rows not rewritten).
    stamps = list(LicenseUsageDailyAggregate.objects.order_by("id").values_list("updated_at", flat=True))
    frozen.shift(timedelta(minutes=5))
    assert aggregate_usage() == {"days": 2, "aggregates": 3, "aggregates_changed": 0, "licenses": 0}
    assert list(LicenseUsageDailyAggregate.objects.order_by("id").values_list("updated_at", flat=True)) == stamps
    one.refresh_from_db()
    assert one.total_usage_events == 8

    # A new event: its day is replaced (not added to) and the counters move by one.
    event(one, at(2025, 3, 12, 10, 1), "view", 6, session_id="C")
    assert aggregate_usage()["aggregates_changed"] == 1
    assert aggregates(one)[date(2025, 3, 12)]["total_views"] == 6
    assert aggregates(one)[date(2025, 3, 12)]["total_quantity"] == 21
    assert aggregates(one)[date(2025, 3, 12)]["unique_sessions"] == 2
    one.refresh_from_db()
    assert (one.total_usage_events, one.last_usage_at) == (9, at(2025, 3, 12, 10, 1))


def test_first_run_after_midnight_still_covers_the_day_before_yesterday(frozen):
    license = make_license()
    frozen.move_to(at(2025, 3, 13, 0, 30))
    event(license, at(2025, 3, 11, 23, 0), "view", 2)  # accepted late on the 12th
    assert usage.aggregation_window(at(2025, 3, 13, 0, 30)) == (date(2025, 3, 11), date(2025, 3, 14))
    assert aggregate_usage()["days"] == 3
    assert aggregates(license) == {date(2025, 3, 11): {"total_views": 2, "total_quantity": 2}}
    assert usage.aggregation_window(at(2025, 3, 13, 1, 0)) == (date(2025, 3, 12), date(2025, 3, 14))


# --- thresholds -----------------------------------------------------------------------------


def test_each_warning_level_is_notified_once(frozen):
    license = make_license(asset=make_asset((make_creator(), 10_000), title="Sunset"))
    limit = threshold(license, limit_quantity=200)
    expected = []
    for views, level in [(98, None), (100, 50), (120, None), (150, 75), (180, 90), (199, None), (200, 100)]:
        set_usage(license, TODAY, total_views=views)
        check_usage_thresholds()
        check_usage_thresholds()  # a second run in the same state sends nothing
        if level:
            expected.append(level)
        assert [n.metadata["level"] for n in notices(license)] == expected, views
    warnings = notices(license)
    assert [n.title for n in warnings] == [f"Usage Warning: {level}% Threshold" for level in (50, 75, 90, 100)]
    assert [n.priority for n in warnings] == ["MEDIUM", "MEDIUM", "HIGH", "HIGH"]
    assert warnings[0].message == "Usage for Sunset has reached 50% of the daily view limit (100/200)"
    assert {n.type for n in warnings} == {"LICENSE"}
    assert {n.action_url for n in warnings} == {f"/licenses/{license.pk}/usage"}
    limit.refresh_from_db()
    assert (limit.last_warning_level, limit.last_warning_period_start) == (100, TODAY)
    assert not LicenseUsageOverage.objects.exists()  # 200 is not over 200


@pytest.mark.parametrize(
    ("frequency", "route"),
    [(None, "PENDING"), ("IMMEDIATE", "PENDING"), ("DAILY", "DIGEST"), ("WEEKLY", "DIGEST"), ("OFF", "NONE")],
)
def test_warnings_and_overage_alerts_go_by_email_as_the_brand_prefers(frozen, frequency, route):
    """Issue 21 item 10: both go through the notification service, so the brand's email
    preference for LICENSE notifications decides (they used to be in-app only)."""
    license = make_license(asset=make_asset((make_creator(), 10_000), title="Sunset"))
    if frequency:
        NotificationPreference.objects.create(user=license.brand.user, type="LICENSE", email_frequency=frequency)
    threshold(license, limit_quantity=10)
    set_usage(license, TODAY, total_views=15)
    check_usage_thresholds()
    check_usage_thresholds()  # a second run: nothing new, nothing emailed twice
    rows = notices(license)
    assert [(n.title, n.priority, n.email_status) for n in rows] == [
        ("Usage Warning: 100% Threshold", "HIGH", route),
        ("Usage Overage Detected", "URGENT", route),
    ]
    deliver_pending(pending(), limit=100)
    deliver_pending(pending(), limit=100)
    if route == "PENDING":
        assert sorted(m.subject for m in mail.outbox) == sorted(n.title for n in rows)
        assert {tuple(m.to) for m in mail.outbox} == {(license.brand.user.email,)}
        overage = next(m for m in mail.outbox if m.subject == "Usage Overage Detected")
        assert f"/licenses/{license.pk}/usage/overages" in overage.body
        assert "5 views over limit" in overage.body
    else:
        assert mail.outbox == []


def test_a_jump_sends_only_the_highest_level_and_disabled_levels_are_skipped(frozen):
    license = make_license()
    threshold(license, warning_at_90=False, warning_at_100=False)
    set_usage(license, TODAY, total_views=95)
    check_usage_thresholds()
    set_usage(license, TODAY, total_views=150)  # 100 % reached but off; 90 % off; 75 % already sent
    check_usage_thresholds()
    assert [n.title for n in notices(license) if n.title.startswith("Usage Warning")] == [
        "Usage Warning: 75% Threshold"
    ]


def test_a_new_period_starts_from_no_warning(frozen):
    license = make_license()
    weekly = threshold(license, period_type="weekly", usage_type="download", limit_quantity=10)
    set_usage(license, date(2025, 3, 10), total_downloads=4)  # Monday
    set_usage(license, TODAY, total_downloads=4)  # Wednesday: 8/10
    check_usage_thresholds()
    weekly.refresh_from_db()
    assert (weekly.last_warning_level, weekly.last_warning_period_start) == (75, date(2025, 3, 10))

    frozen.move_to(at(2025, 3, 17, 10, 0))  # next Monday: a new week
    set_usage(license, date(2025, 3, 17), total_downloads=5)
    check_usage_thresholds()
    assert [n.metadata["level"] for n in notices(license)] == [75, 50]
    weekly.refresh_from_db()
    assert (weekly.last_warning_level, weekly.last_warning_period_start) == (50, date(2025, 3, 17))


def test_periods():
    start, end = date(2024, 6, 15), date(2025, 6, 14)
    assert usage_thresholds.period_bounds("daily", TODAY, start, end) == (TODAY, TODAY)
    assert usage_thresholds.period_bounds("weekly", TODAY, start, end) == (date(2025, 3, 10), date(2025, 3, 16))
    assert usage_thresholds.period_bounds("weekly", date(2025, 3, 16), start, end) == (
        date(2025, 3, 10),
        date(2025, 3, 16),
    )
    assert usage_thresholds.period_bounds("monthly", TODAY, start, end) == (date(2025, 3, 1), date(2025, 3, 31))
    assert usage_thresholds.period_bounds("monthly", date(2024, 2, 29), start, end) == (
        date(2024, 2, 1),
        date(2024, 2, 29),
    )
    assert usage_thresholds.period_bounds("monthly", date(2024, 12, 31), start, end) == (
        date(2024, 12, 1),
        date(2024, 12, 31),
    )
    assert usage_thresholds.period_bounds("total", TODAY, start, end) == (start, end)
    assert usage_thresholds.limit_with_grace(1000, 10) == 1100
    assert usage_thresholds.limit_with_grace(999, 15) == 1148  # floor(1148.85)


def test_usage_counts_the_period_and_the_type_only(frozen):
    license = make_license(start=at(2025, 1, 20), end=at(2025, 12, 31))
    monthly = threshold(license, period_type="monthly", limit_quantity=1000, warning_at_50=False)
    total = threshold(license, period_type="total", usage_type="custom", limit_quantity=10_000)
    set_usage(license, date(2025, 2, 28), total_views=500, total_quantity=900)  # last month
    set_usage(license, date(2025, 3, 1), total_views=300, total_clicks=50, total_quantity=450)
    set_usage(license, TODAY, total_views=400, total_quantity=400)
    states = {s.id: s for s in usage_thresholds.load_thresholds([license.pk], TODAY)}
    assert states[monthly.pk].usage == 700  # views of March only
    assert states[total.pk].usage == 1750  # custom -> total_quantity since the license started
    assert states[total.pk].period_start == date(2025, 1, 20)


def test_ineligible_licenses_are_not_checked(frozen):
    for fields in [
        {"status": LicenseStatus.SUSPENDED},
        {"usage_tracking_enabled": False},
        {"deleted_at": NOW},
        {"start": NOW + timedelta(days=1)},
    ]:
        license = make_license(**fields)
        threshold(license)
        set_usage(license, TODAY, total_views=100)
    inactive = make_license()
    threshold(inactive, is_active=False)
    set_usage(inactive, TODAY, total_views=100)
    assert check_usage_thresholds()["checked"] == 0
    assert not Notification.objects.exists()


def test_licenses_in_their_last_30_days_or_in_grace_are_still_watched(frozen):
    expiring = make_license(status=LicenseStatus.EXPIRING_SOON, end=NOW + timedelta(days=10))
    in_grace = make_license(
        status=LicenseStatus.EXPIRING_SOON, end=NOW - timedelta(days=2), grace_period_end_date=NOW + timedelta(days=5)
    )
    grace_over = make_license(
        status=LicenseStatus.EXPIRING_SOON, end=NOW - timedelta(days=9), grace_period_end_date=NOW - timedelta(days=2)
    )
    for license in (expiring, in_grace, grace_over):
        threshold(license, limit_quantity=200)
        set_usage(license, TODAY, total_views=150)
    assert check_usage_thresholds()["checked"] == 2
    assert [len(notices(lic)) for lic in (expiring, in_grace, grace_over)] == [1, 1, 0]


def test_queries_do_not_grow_with_the_number_of_licenses(frozen):
    def run(n: int) -> int:
        for _ in range(n):
            license = make_license()
            threshold(license, limit_quantity=10, allow_overage=True, overage_rate_cents=5)
            threshold(license, period_type="monthly", limit_quantity=100)
            set_usage(license, TODAY, total_views=20)
        with CaptureQueriesContext(connection) as queries:
            result = check_usage_thresholds()
        assert result["overage_notices"] == n
        return len(queries)

    assert run(2) == run(12)


# --- overages -----------------------------------------------------------------------------


def test_overage_is_recorded_once_per_period_and_updated_without_a_second_notice(frozen):
    license = make_license(asset=make_asset((make_creator(), 10_000), title="Sunset"))
    monthly = threshold(
        license,
        period_type="monthly",
        limit_quantity=1000,
        grace_percentage=10,
        allow_overage=True,
        overage_rate_cents=50,
    )
    set_usage(license, date(2025, 3, 2), total_views=600)
    set_usage(license, TODAY, total_views=500)  # 1100 = limit with grace: not over
    check_usage_thresholds()
    assert not LicenseUsageOverage.objects.exists()

    set_usage(license, TODAY, total_views=700)  # 1300: 200 over 1100
    assert check_usage_thresholds()["overages_created"] == 1
    overage = LicenseUsageOverage.objects.get()
    assert (overage.threshold_id, overage.period_start, overage.period_end) == (
        monthly.pk,
        date(2025, 3, 1),
        date(2025, 3, 31),
    )
    assert (overage.limit_quantity, overage.actual_quantity, overage.overage_quantity) == (1000, 1300, 200)
    assert (overage.overage_rate_cents, overage.calculated_fee_cents) == (50, 10_000)
    assert overage.approval_required is False  # $100 exactly does not need approval
    assert overage.status == "DETECTED" and overage.notified_at == NOW
    [notice] = notices(license, "Usage Overage Detected")
    assert notice.priority == "URGENT"
    assert notice.message == "Usage overage detected for Sunset: 200 views over limit"
    assert notice.action_url == f"/licenses/{license.pk}/usage/overages"

    frozen.move_to(at(2025, 3, 13, 10, 0))  # next day, same month
    set_usage(license, date(2025, 3, 13), total_views=100)
    result = check_usage_thresholds()
    assert (result["overages_created"], result["overages_updated"], result["overage_notices"]) == (0, 1, 0)
    overage.refresh_from_db()
    assert (overage.actual_quantity, overage.overage_quantity, overage.calculated_fee_cents) == (1400, 300, 15_000)
    assert overage.approval_required is True  # over $100 now
    assert LicenseUsageOverage.objects.count() == 1
    assert len(notices(license, "Usage Overage Detected")) == 1

    # Once billed, the row is left alone.
    LicenseUsageOverage.objects.update(status="BILLED")
    set_usage(license, date(2025, 3, 13), total_views=500)
    check_usage_thresholds()
    overage.refresh_from_db()
    assert overage.actual_quantity == 1400

    # A new month is a new overage row, with its own notice.
    frozen.move_to(at(2025, 4, 1, 10, 0))
    set_usage(license, date(2025, 4, 1), total_views=1200)
    check_usage_thresholds()
    assert LicenseUsageOverage.objects.count() == 2
    assert len(notices(license, "Usage Overage Detected")) == 2


@pytest.mark.parametrize(
    ("allow", "rate", "fee", "approval"),
    [(False, 50, None, True), (False, None, None, True), (True, None, None, False), (True, 200, 60_000, True)],
)
def test_overage_fee_and_approval_by_terms(frozen, allow, rate, fee, approval):
    license = make_license()
    threshold(license, limit_quantity=100, allow_overage=allow, overage_rate_cents=rate)
    set_usage(license, TODAY, total_views=400)
    check_usage_thresholds()
    overage = LicenseUsageOverage.objects.get()
    assert (overage.overage_quantity, overage.calculated_fee_cents, overage.approval_required) == (300, fee, approval)
    assert overage.metadata["allow_overage"] is allow
    assert len(notices(license, "Usage Overage Detected")) == 1


def test_a_run_working_from_stale_state_sends_nothing_twice(frozen):
    """Two runs read the same state; the second to write finds every claim taken."""
    license = make_license()
    threshold(license, limit_quantity=100)
    set_usage(license, TODAY, total_views=150)
    first = usage_thresholds.load_thresholds([license.pk], TODAY)
    second = usage_thresholds.load_thresholds([license.pk], TODAY)
    assert usage_thresholds.check_thresholds_batch(first, NOW) == {
        "warnings": 1,
        "overages_created": 1,
        "overages_updated": 0,
        "overage_notices": 1,
    }
    assert usage_thresholds.check_thresholds_batch(second, NOW) == {
        "warnings": 0,
        "overages_created": 0,
        "overages_updated": 0,
        "overage_notices": 0,
    }
    assert len(notices(license)) == 2


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_the_same_moment_send_each_notification_once():
    licenses = []
    for _ in range(40):
        license = make_license()
        threshold(license, limit_quantity=100)
        threshold(license, period_type="monthly", usage_type="click", limit_quantity=100, overage_rate_cents=1)
        licenses.append(license)
    today = usage.utc_today()
    expected = 0
    for views, clicks, new in [(50, 10, 1), (80, 95, 2), (120, 130, 4)]:
        for license in licenses:
            set_usage(license, today, total_views=views, total_clicks=clicks)
        run_twice_at_once(check_usage_thresholds)
        expected += new * len(licenses)
        assert Notification.objects.count() == expected
    # per license: view 50, 75, 100, overage; click 90, 100, overage
    assert LicenseUsageOverage.objects.count() == 2 * len(licenses)
    assert Notification.objects.filter(title="Usage Overage Detected").count() == 2 * len(licenses)


# --- forecasts ------------------------------------------------------------------------------


def test_least_squares_hand_computed():
    slope, intercept = usage_forecasts.least_squares([1, 3, 2, 5])
    assert slope == pytest.approx(1.1) and intercept == pytest.approx(1.1)
    assert usage_forecasts.least_squares([7]) == (0.0, 7.0)
    assert usage_forecasts.least_squares([]) == (0.0, 0.0)


def test_forecast_on_a_known_series(frozen):
    """Views on day i of the 30 days before today (Feb 10 + i) = i; day 0 has no row and
    is zero-filled. Least squares: slope 1, intercept 0, so today (index 30) is expected
    to reach 30 views and index 30 + k, 30 + k. Today already has 5. A monthly limit of
    1000 and a daily one of 40 on the same usage type: one row, the monthly (breaching) one.
    """
    license = make_license(start=at(2024, 6, 1), end=at(2025, 12, 31))
    monthly = threshold(license, period_type="monthly", limit_quantity=1000)
    daily = threshold(license, period_type="daily", limit_quantity=40)  # same type: one row
    first = TODAY - timedelta(days=30)
    for i in range(1, 30):
        set_usage(license, first + timedelta(days=i), total_views=i)
    set_usage(license, TODAY, total_views=5)
    # March 1 is index 19 (Feb 10 + 19 days); March 1..11 before today: indices 19..29.
    so_far = sum(range(19, 30)) + 5
    assert so_far == 269

    assert generate_usage_forecasts() == {"licenses": 1, "thresholds": 2, "generated": 1, "errors": 0}
    forecast = LicenseUsageForecast.objects.get()
    # Today (March 12) is index 30: 30 - 5 = 25 more; March 13..31 are indices 31..49 (19 days).
    remainder = 25 + sum(range(31, 50))
    assert remainder == 785
    assert forecast.threshold_id == monthly.pk and forecast.usage_type == "view"
    assert (forecast.forecast_date, forecast.period_start, forecast.period_end) == (
        TODAY,
        date(2025, 3, 1),
        date(2025, 3, 31),
    )
    assert forecast.predicted_quantity == 269 + 785 == 1054
    assert forecast.lower_bound == 269 + 628  # floor(0.8 * 785)
    assert forecast.upper_bound == 269 + 942  # ceil(1.2 * 785)
    # Cumulative: 294 tonight, then + 31, + 32, ...: 294 + (61 + k) k / 2 > 1000 first at k = 18.
    assert 294 + sum(range(31, 31 + 17)) <= 1000 < 294 + sum(range(31, 31 + 18))
    assert forecast.predicted_breach_date == TODAY + timedelta(days=18) == date(2025, 3, 30)
    assert forecast.breach_probability == Decimal("0.80")
    assert forecast.historical_days_used == 30
    assert forecast.forecasting_method == "LINEAR_REGRESSION"
    assert forecast.metadata["slope"] == 1.0 and forecast.metadata["intercept"] == 0.0

    # Re-running the same day replaces the row (upsert), keeping an alert marker.
    LicenseUsageForecast.objects.update(breach_alert_sent_at=NOW)
    set_usage(license, TODAY, total_views=20)
    generate_usage_forecasts()
    forecast = LicenseUsageForecast.objects.get()
    assert forecast.predicted_quantity == 269 - 5 + 20 + 10 + sum(range(31, 50))
    assert forecast.breach_alert_sent_at == NOW
    assert daily.pk != forecast.threshold_id


def test_projection_never_goes_below_the_usage_so_far_and_a_breach_today():
    falling = usage_forecasts.project_usage(
        [50, 40, 30, 20, 10], today_so_far=3, usage_so_far=100, today=TODAY, period_end=date(2025, 3, 31), limit=500
    )
    assert (falling.slope, falling.intercept) == (-10.0, 50.0)
    assert (falling.predicted, falling.lower, falling.upper) == (100, 100, 100)
    assert falling.breach_date is None and falling.breach_probability is None

    over = usage_forecasts.project_usage(
        [10, 10], today_so_far=0, usage_so_far=600, today=TODAY, period_end=date(2025, 3, 31), limit=500
    )
    assert over.breach_date == TODAY and over.breach_probability == Decimal("0.95")

    daily = usage_forecasts.project_usage(
        [10] * 30, today_so_far=4, usage_so_far=4, today=TODAY, period_end=TODAY, limit=9
    )
    assert (daily.predicted, daily.breach_date, daily.breach_probability) == (10, TODAY, Decimal("0.80"))

    young = usage_forecasts.project_usage([], today_so_far=0, usage_so_far=0, today=TODAY, period_end=TODAY, limit=9)
    assert (young.predicted, young.breach_date) == (0, None)


def test_a_young_license_uses_only_the_days_since_it_started(frozen):
    license = make_license(start=at(2025, 3, 8, 15, 0), end=at(2025, 12, 31))
    threshold(license, period_type="total", limit_quantity=10_000)
    for day in range(8, 12):
        set_usage(license, date(2025, 3, day), total_views=100)
    generate_usage_forecasts()
    forecast = LicenseUsageForecast.objects.get()
    assert forecast.historical_days_used == 4
    assert forecast.metadata["slope"] == 0.0 and forecast.metadata["intercept"] == 100.0
    assert forecast.period_start == date(2025, 3, 8) and forecast.period_end == date(2025, 12, 31)
    # 400 so far, 100 a day for today and the 294 days left: 500 tonight, 500 + 100 k after
    # k more days, first over 10,000 at k = 96.
    assert forecast.predicted_quantity == 400 + 100 * 295
    assert forecast.predicted_breach_date == TODAY + timedelta(days=96)


# --- breach alerts --------------------------------------------------------------------------


def forecast_row(license: License, day: date, breach: date | None, probability: str = "0.80", **fields):
    return LicenseUsageForecast.objects.create(
        license=license,
        usage_type=fields.pop("usage_type", "view"),
        forecast_date=day,
        period_start=day.replace(day=1),
        period_end=date(2025, 3, 31),
        predicted_quantity=1200,
        predicted_breach_date=breach,
        breach_probability=Decimal(probability) if probability else None,
        metadata={"limit": 1000, "period_type": "monthly"},
        **fields,
    )


def test_breach_alert_in_app_and_by_email_once_per_7_days(frozen, settings):
    settings.APP_URL = "https://app.example.test"
    license = make_license(asset=make_asset((make_creator(), 10_000), title="Sunset"))
    soon = forecast_row(license, TODAY, TODAY + timedelta(days=5))
    other = make_license()
    forecast_row(other, TODAY, TODAY + timedelta(days=9))  # too far
    forecast_row(other, TODAY, TODAY + timedelta(days=2), "0.30", usage_type="click")  # too unlikely
    forecast_row(other, TODAY - timedelta(days=1), TODAY, usage_type="play")  # not today's forecast

    assert send_forecast_breach_alerts() == {"candidates": 1, "alerts": 1, "emails_sent": 1, "emails_refused": 0}
    sentence = f"Usage for Sunset is projected to exceed its view limit around {TODAY + timedelta(days=5)}"
    [notice] = notices(license)
    assert notice.message == sentence and notice.type == "LICENSE"
    assert notice.action_url == f"/licenses/{license.pk}/usage"
    [message] = mail.outbox
    assert message.to == [license.brand.user.email]
    assert message.subject == sentence
    assert sentence in message.body and f"https://app.example.test/licenses/{license.pk}/usage" in message.body
    soon.refresh_from_db()
    assert soon.breach_alert_sent_at == NOW

    assert send_forecast_breach_alerts()["alerts"] == 0  # same day again
    frozen.shift(timedelta(days=3))
    forecast_row(license, TODAY + timedelta(days=3), TODAY + timedelta(days=5))  # tomorrow's forecast
    assert send_forecast_breach_alerts() == {"candidates": 1, "alerts": 0, "emails_sent": 0, "emails_refused": 0}
    frozen.shift(timedelta(days=5))  # 8 days after the first alert
    forecast_row(license, TODAY + timedelta(days=8), TODAY + timedelta(days=10))
    assert send_forecast_breach_alerts()["alerts"] == 1
    assert len(notices(license)) == 2 and len(mail.outbox) == 2


class RefusingBackend(EmailBackend):
    """Django's test backend, except that the server refuses addresses at refused.test."""

    def send_messages(self, messages):
        for message in messages:
            if any(address.endswith("@refused.test") for address in message.to):
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"no such user")})
        return super().send_messages(messages)


def test_a_refused_email_is_not_marked_and_is_tried_again(frozen, settings):
    settings.EMAIL_BACKEND = "tests.test_license_usage.RefusingBackend"
    good = make_license()
    bad = make_license(brand=make_brand(user=make_user(email="brand@refused.test")))
    forecast_row(good, TODAY, TODAY + timedelta(days=1))
    refused = forecast_row(bad, TODAY, TODAY + timedelta(days=1))
    assert send_forecast_breach_alerts() == {"candidates": 2, "alerts": 1, "emails_sent": 1, "emails_refused": 1}
    refused.refresh_from_db()
    assert refused.breach_alert_sent_at is None and not notices(bad)
    assert len(notices(good)) == 1
    assert send_forecast_breach_alerts()["emails_refused"] == 1  # tried again, still refused


def test_a_crash_mid_batch_alerts_nobody_twice_and_the_retry_alerts_the_rest(frozen, settings):
    licenses = [make_license(brand=make_brand(user=make_user(email=f"brand{i}@example.com"))) for i in range(4)]
    forecasts = [forecast_row(lic, TODAY, TODAY + timedelta(days=3)) for lic in licenses]
    backend = DroppingBackend.install(settings, drop_after=2)  # breaks while sending the third
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send_forecast_breach_alerts()
    assert [m.to for m in mail.outbox] == [["brand0@example.com"], ["brand1@example.com"]]
    markers = [LicenseUsageForecast.objects.get(pk=f.pk).breach_alert_sent_at for f in forecasts]
    assert markers == [NOW, NOW, NOW, None]  # sent, sent, in doubt (kept), never attempted (released)
    assert [len(notices(lic)) for lic in licenses] == [1, 1, 0, 0]  # in-app follows a sent email

    backend.drop_after = None  # RQ's retry, the server back
    frozen.shift(timedelta(minutes=5))
    assert send_forecast_breach_alerts() == {"candidates": 1, "alerts": 1, "emails_sent": 1, "emails_refused": 0}
    recipients = [a for m in mail.outbox for a in m.to]
    assert recipients == ["brand0@example.com", "brand1@example.com", "brand3@example.com"]
    assert [len(notices(lic)) for lic in licenses] == [1, 1, 0, 1]


def test_breach_email_renders_with_its_variables():
    context = {
        "asset_title": "Sun & Sea",
        "brand_name": "Acme",
        "usage_type": "view",
        "period_type": "monthly",
        "breach_date": date(2025, 3, 30),
        "predicted_quantity": 1054,
        "limit": 1000,
        "period_end": date(2025, 3, 31),
        "url": "https://app.example.test/licenses/7/usage",
    }
    subject, text, html = render_email("license_usage_breach_forecast", context)
    assert subject == "Usage for Sun & Sea is projected to exceed its view limit around 2025-03-30"
    assert "Sun & Sea" in text and "1054" in text and "https://app.example.test/licenses/7/usage" in text
    assert "{{" not in text + html and "{%" not in text + html
    assert html.startswith("<!doctype html>") and "Sun &amp; Sea" in html and "1000" in html


# --- purge --------------------------------------------------------------------------------


def test_purge_keeps_events_exactly_90_days_old(frozen, settings):
    settings.USAGE_EVENT_RETENTION_DAYS = 90
    license = make_license(start=NOW - timedelta(days=200))
    cutoff = NOW - timedelta(days=90)
    for when in [cutoff - timedelta(days=1), cutoff - timedelta(microseconds=1), cutoff, NOW - timedelta(hours=1)]:
        event(license, when)
    set_usage(license, (cutoff - timedelta(days=1)).date(), total_views=1)
    result = purge_usage_events()
    assert result["deleted"] == 2
    assert sorted(LicenseUsageEvent.objects.values_list("occurred_at", flat=True)) == [cutoff, NOW - timedelta(hours=1)]
    assert LicenseUsageDailyAggregate.objects.count() == 1  # aggregates are kept
    assert purge_usage_events()["deleted"] == 0


# --- the API ------------------------------------------------------------------------------


def bearer(user) -> dict[str, str]:
    _, raw = ApiToken.objects.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post_usage(license_id: int, body, user=None, headers=None):
    raw = body if isinstance(body, str) else json.dumps(body)
    return Client().post(
        f"/api/licenses/{license_id}/usage", raw, content_type="application/json", **(headers or bearer(user))
    )


def test_recording_an_event_is_one_insert_and_no_license_update(frozen):
    license = make_license()
    user = license.brand.user
    headers = bearer(user)
    body = {
        "usage_type": "download",
        "quantity": 3,
        "occurred_at": "2025-03-11T08:30:00Z",
        "revenue_cents": 250,
        "session_id": "s-1",
        "platform": "web",
        "device_type": "desktop",
        "geographic_location": "FR",
        "referrer": "https://example.test/a",
        "metadata": {"campaign": "spring"},
    }
    with CaptureQueriesContext(connection) as queries:
        response = post_usage(license.pk, body, headers=headers)
    assert response.status_code == 201, response.content
    row = LicenseUsageEvent.objects.get()
    assert response.json() == {
        "id": row.pk,
        "license_id": license.pk,
        "usage_type": "download",
        "quantity": 3,
        "occurred_at": "2025-03-11T08:30:00+00:00",
        "duplicate": False,
    }
    assert (row.occurred_at, row.revenue_cents, row.session_id, row.platform, row.geographic_location) == (
        at(2025, 3, 11, 8, 30),
        250,
        "s-1",
        "web",
        "FR",
    )
    assert row.metadata == {"campaign": "spring"} and row.created_at == NOW
    sqls = [q["sql"].strip() for q in queries.captured_queries]
    inserts = [sql for sql in sqls if sql.upper().startswith("INSERT")]
    assert len(inserts) == 1 and inserts[0].startswith("INSERT INTO license_usage_events"), inserts
    # (the only other write is the API token's last_used_at)
    assert [sql for sql in sqls if sql.upper().startswith("UPDATE")] == [
        sql for sql in sqls if sql.startswith('UPDATE "api_tokens"')
    ]
    license.refresh_from_db()
    assert license.total_usage_events == 0  # the aggregation moves it, within the hour


def test_defaults_and_staff_access(frozen):
    license = make_license()
    staff = make_user(is_staff=True)
    response = post_usage(license.pk, {"usage_type": "view"}, staff)
    assert response.status_code == 201
    row = LicenseUsageEvent.objects.get()
    assert (row.quantity, row.revenue_cents, row.occurred_at, row.session_id) == (1, 0, NOW, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "usage_type must be one of"),
        ({"usage_type": "listen"}, "usage_type must be one of"),
        ({"usage_type": "view", "quantity": 0}, "quantity must be between 1"),
        ({"usage_type": "view", "quantity": -2}, "quantity must be between 1"),
        ({"usage_type": "view", "quantity": "3"}, "quantity must be an integer"),
        ({"usage_type": "view", "quantity": 1.5}, "quantity must be an integer"),
        ({"usage_type": "view", "quantity": True}, "quantity must be an integer"),
        ({"usage_type": "view", "quantity": 2**31}, "quantity must be between 1"),
        ({"usage_type": "view", "revenue_cents": -1}, "revenue_cents must be between 0"),
        ({"usage_type": "view", "occurred_at": "yesterday"}, "occurred_at must be an ISO 8601"),
        ({"usage_type": "view", "occurred_at": 12}, "occurred_at must be an ISO 8601"),
        ({"usage_type": "view", "occurred_at": "2025-03-12T10:00:01Z"}, "occurred_at is in the future"),
        ({"usage_type": "view", "occurred_at": "2025-03-10T23:59:59Z"}, "occurred_at is too old"),
        ({"usage_type": "view", "platform": "fax"}, "platform must be one of"),
        ({"usage_type": "view", "session_id": ""}, "session_id must be a non-empty string"),
        ({"usage_type": "view", "session_id": "x" * 129}, "session_id is longer than 128"),
        ({"usage_type": "view", "metadata": [1]}, "metadata must be a JSON object"),
        ({"usage_type": "view", "quantitiy": 2}, "Unknown field(s): quantitiy"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_input_is_a_400_with_a_clear_error(frozen, body, message):
    license = make_license()
    response = post_usage(license.pk, body, license.brand.user)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not LicenseUsageEvent.objects.exists()


def test_oldest_accepted_time_is_the_start_of_yesterday_and_the_license_start(frozen):
    license = make_license()
    user = license.brand.user
    assert post_usage(license.pk, {"usage_type": "view", "occurred_at": "2025-03-11T00:00:00"}, user).status_code == 201
    young = make_license(brand=license.brand, start=at(2025, 3, 12, 9, 0))
    response = post_usage(young.pk, {"usage_type": "view", "occurred_at": "2025-03-12T08:59:00Z"}, user)
    assert response.status_code == 400 and "before the license started" in response.json()["error"]


def test_only_the_brand_user_or_staff_may_record(frozen):
    license = make_license()
    assert post_usage(license.pk, {"usage_type": "view"}, make_user()).status_code == 404
    assert post_usage(999_999, {"usage_type": "view"}, license.brand.user).status_code == 404
    anonymous = Client().post(f"/api/licenses/{license.pk}/usage", "{}", content_type="application/json")
    assert anonymous.status_code == 401
    # GET on the same path is the usage page (issue 21: the warnings link to it); PUT is not a method here.
    assert Client().put(f"/api/licenses/{license.pk}/usage", **bearer(license.brand.user)).status_code == 405
    assert Client().get(f"/api/licenses/{license.pk}/usage", **bearer(make_user())).status_code == 404
    License.objects.filter(pk=license.pk).update(deleted_at=NOW)
    assert post_usage(license.pk, {"usage_type": "view"}, license.brand.user).status_code == 404
    assert not LicenseUsageEvent.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"status": LicenseStatus.EXPIRED}, "not in force (status EXPIRED)"),
        ({"status": LicenseStatus.DRAFT}, "not in force (status DRAFT)"),
        ({"usage_tracking_enabled": False}, "Usage tracking is disabled"),
    ],
)
def test_a_license_not_in_force_or_not_tracked_is_a_409(frozen, fields, error):
    license = make_license(**fields)
    response = post_usage(license.pk, {"usage_type": "view"}, license.brand.user)
    assert response.status_code == 409 and error in response.json()["error"]


def test_expiring_soon_licenses_still_record(frozen):
    license = make_license(status=LicenseStatus.EXPIRING_SOON)
    assert post_usage(license.pk, {"usage_type": "view"}, license.brand.user).status_code == 201


def test_a_repeated_idempotency_key_returns_the_first_event(frozen):
    license = make_license()
    headers = bearer(license.brand.user)
    body = {"usage_type": "play", "quantity": 2, "idempotency_key": "evt-1"}
    first = post_usage(license.pk, body, headers=headers)
    frozen.shift(timedelta(seconds=30))
    again = post_usage(license.pk, body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["duplicate"] is True
    assert again.json()["occurred_at"] == NOW.isoformat()
    assert LicenseUsageEvent.objects.count() == 1

    changed = post_usage(license.pk, {**body, "quantity": 3}, headers=headers)
    assert changed.status_code == 422 and "different usage event" in changed.json()["error"]
    other = make_license(brand=license.brand)
    assert post_usage(other.pk, body, headers=headers).status_code == 422
    assert LicenseUsageEvent.objects.count() == 1


def test_the_idempotency_key_header_replays_the_response(frozen):
    license = make_license()
    headers = {**bearer(license.brand.user), "HTTP_IDEMPOTENCY_KEY": "k-1"}
    first = post_usage(license.pk, {"usage_type": "view"}, headers=headers)
    again = post_usage(license.pk, {"usage_type": "view"}, headers=headers)
    assert first.status_code == again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert LicenseUsageEvent.objects.count() == 1


# --- through a real worker ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_warning_is_emailed_by_the_delivery_job_a_real_worker_runs(run_worker):
    license = make_license()
    threshold(license, limit_quantity=4)
    set_usage(license, usage.utc_today(), total_views=3)
    enqueue("license-usage-tracking.thresholds")
    run_worker("scheduled", "critical")  # the thresholds job queues the notification-delivery flush
    [warning] = notices(license)
    assert (warning.title, warning.email_status) == ("Usage Warning: 75% Threshold", "SENT")


@pytest.mark.django_db(transaction=True)
def test_the_jobs_run_through_a_real_worker(run_worker):
    license = make_license()
    threshold(license, limit_quantity=4)
    event(license, usage.day_start(usage.utc_today()), "view", 3, session_id="a")
    event(license, usage.day_start(usage.utc_today()), "view", 1, session_id="b")
    enqueue("license-usage-tracking.aggregate")
    run_worker("scheduled")
    assert LicenseUsageDailyAggregate.objects.get(license=license).total_views == 4
    enqueue("license-usage-tracking.thresholds")
    enqueue("license-usage-tracking.forecasts")
    enqueue("license-usage-tracking.cleanup")
    run_worker("scheduled")
    assert [n.title for n in notices(license)] == ["Usage Warning: 100% Threshold"]
    assert LicenseUsageForecast.objects.filter(license=license).count() == 1
    license.refresh_from_db()
    assert license.total_usage_events == 2
