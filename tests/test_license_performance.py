"""license-performance-metrics: per-license ROI / utilisation / approval / conflicts,
daily-weekly-monthly snapshots, idempotency, bad input and constant queries per batch."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rq.registry import FailedJobRegistry, ScheduledJobRegistry

from jobs.api import enqueue
from jobs.handlers.licenses import calculate_performance_metrics
from jobs.rq_classes import JSONJob
from yesgoddess.analytics.models import DailyMetric
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.redis import redis_connection
from yesgoddess.licensing import performance
from yesgoddess.licensing.models import (
    License,
    LicensePerformanceSnapshot,
    LicenseStatus,
    LicenseType,
    LicenseUsageDailyAggregate,
    LicenseUsageThreshold,
)
from yesgoddess.licensing.performance import target_date
from yesgoddess.royalties.models import RoyaltyLine, RoyaltyRun, RoyaltyStatement

from .license_factories import make_asset, make_creator, make_license, make_user

# Monday 02:00 UTC: the default target is Sunday 2025-03-09 (daily + weekly snapshots).
NOW = datetime(2025, 3, 10, 2, 0, tzinfo=UTC)
TARGET = date(2025, 3, 9)
S = LicenseStatus
T = LicenseType


def at(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def lic(**fields) -> License:
    """A license running through 2025, created and signed long before the target day."""
    fields.setdefault("start", at(2025, 1, 1))
    fields.setdefault("end", at(2025, 12, 31))
    fields.setdefault("created_at", at(2024, 12, 1))
    fields.setdefault("signed_at", at(2024, 12, 1, 1))
    fields.setdefault("fee_cents", 0)
    return make_license(**fields)


def revenue(license: License, day: date, cents: int) -> None:
    DailyMetric.objects.create(date=day, license=license, revenue_cents=cents)


def usage(license: License, day: date, quantity: int) -> None:
    LicenseUsageDailyAggregate.objects.create(license=license, date=day, total_quantity=quantity)


def royalty(license: License, cents: int, *, line_type: str = RoyaltyLine.LineType.LICENSE) -> None:
    run = RoyaltyRun.objects.create(period_start=at(2025, 1, 1), period_end=at(2025, 2, 1), created_by=make_user())
    statement = RoyaltyStatement.objects.create(royalty_run=run, creator=make_creator())
    RoyaltyLine.objects.create(
        royalty_statement=statement,
        line_type=line_type,
        license=license if line_type == RoyaltyLine.LineType.LICENSE else None,
        ip_asset=license.ip_asset if line_type == RoyaltyLine.LineType.LICENSE else None,
        calculated_royalty_cents=cents,
        period_start=at(2025, 1, 1),
        period_end=at(2025, 2, 1),
    )


def metrics(license: License) -> dict:
    license.refresh_from_db()
    return license.metadata["performanceMetrics"]


def snapshot(granularity: str, day: date = TARGET) -> LicensePerformanceSnapshot:
    return LicensePerformanceSnapshot.objects.get(date=day, granularity=granularity)


def territory(*codes: str) -> dict:
    return {"geographic": {"territories": list(codes)}}


# --- per-license metrics ----------------------------------------------------------------------


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_roi_by_hand():
    a = lic(fee_cents=100_000)
    royalty(a, 20_000)  # cost 120,000
    royalty(a, 7_777, line_type=RoyaltyLine.LineType.CARRYOVER)  # not a license line: ignored
    revenue(a, date(2025, 1, 10), 50_000)
    revenue(a, date(2025, 2, 20), 40_000)
    revenue(a, date(2025, 3, 1), 60_000)  # cumulative 150,000 >= 120,000: break-even
    revenue(a, date(2025, 3, 9), 10_000)
    revenue(a, date(2025, 3, 10), 999_999)  # after the target day: not counted
    free = lic(fee_cents=0)
    revenue(free, date(2025, 3, 1), 5_000)

    assert calculate_performance_metrics() == {"licenses": 2, "snapshots": 2}

    roi = metrics(a)["roi"]
    assert roi["totalRevenueCents"] == 160_000
    assert roi["totalCostCents"] == 120_000 and roi["royaltiesCents"] == 20_000
    assert roi["percentage"] == 33.33  # (160,000 - 120,000) / 120,000
    assert roi["breakEvenDate"] == "2025-03-01" and roi["daysToBreakEven"] == 59
    # 68 active days (Jan 1 - Mar 9): 160,000 / 68 x 365 = 858,823.53 -> (858,823.53 - 120,000) / 1,200
    assert roi["projectedAnnualROI"] == 615.69
    # Last 30 days (Feb 8 - Mar 9) 110,000 against the 30 before (Jan 9 - Feb 7) 50,000.
    assert (roi["revenueLast30DaysCents"], roi["revenuePrevious30DaysCents"]) == (110_000, 50_000)
    assert roi["revenueGrowthRate"] == 120.0

    free_roi = metrics(free)["roi"]
    assert free_roi["totalCostCents"] == 0
    assert free_roi["percentage"] is None and free_roi["projectedAnnualROI"] is None
    assert free_roi["breakEvenDate"] is None and free_roi["daysToBreakEven"] is None
    assert free_roi["revenueGrowthRate"] is None  # nothing in the previous 30 days


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_utilisation_by_hand_including_over_utilised():
    over = lic(metadata={"usageLimits": {"maxUsageCount": 1000}})
    usage(over, date(2024, 12, 31), 5_000)  # before the term: not counted
    usage(over, date(2025, 1, 5), 500)
    usage(over, date(2025, 3, 1), 700)
    capped = lic()
    LicenseUsageThreshold.objects.create(license=capped, usage_type="view", limit_quantity=10_000, period_type="total")
    LicenseUsageThreshold.objects.create(
        license=capped, usage_type="view", limit_quantity=10, period_type="total", is_active=False
    )
    LicenseUsageThreshold.objects.create(license=capped, usage_type="view", limit_quantity=5, period_type="daily")
    usage(capped, date(2025, 1, 20), 500)
    usage(capped, date(2025, 3, 1), 500)
    idle = lic()

    calculate_performance_metrics()

    u = metrics(over)["utilization"]
    assert (u["actualUsage"], u["limit"], u["limitSource"]) == (1200, 1000, "metadata")
    assert u["percentage"] == 120.0  # not capped at 100
    assert u["isOverUtilized"] is True and u["isUnderUtilized"] is False
    assert u["trend"] == "increasing"  # 700 in the last 30 days, nothing before

    u = metrics(capped)["utilization"]
    assert (u["actualUsage"], u["limit"], u["limitSource"]) == (1000, 10_000, "threshold")
    assert u["percentage"] == 10.0
    assert u["isOverUtilized"] is False and u["isUnderUtilized"] is True
    assert u["trend"] == "stable"  # 500 against 500

    u = metrics(idle)["utilization"]
    assert u["percentage"] is None and u["limit"] is None and u["actualUsage"] == 0
    assert u["isUnderUtilized"] is True and u["isOverUtilized"] is False  # no limit and usage < 10
    assert u["trend"] == "insufficient_data"


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_approval_time_and_the_unsigned_bottleneck():
    signed = lic(created_at=at(2024, 12, 1), signed_at=at(2024, 12, 3, 12))
    stuck = lic(created_at=at(2025, 2, 20), signed_at=None)
    recent = lic(created_at=at(2025, 3, 5), signed_at=None)

    calculate_performance_metrics()

    assert metrics(signed)["approval"] == {
        "signed": True,
        "durationHours": 60.0,
        "pendingHours": None,
        "stage": "approved",
        "bottlenecks": [],
    }
    # Measured to the end of the target day (2025-03-10 00:00): 18 days.
    approval = metrics(stuck)["approval"]
    assert approval["pendingHours"] == 432.0 and approval["durationHours"] is None
    assert approval["stage"] == "pending_signature"
    assert approval["bottlenecks"] == ["pending 18 days"]
    approval = metrics(recent)["approval"]
    assert approval["pendingHours"] == 120.0 and approval["bottlenecks"] == []


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_conflicts_exclusive_overlap_and_territories():
    x = make_asset((make_creator(), 10_000))
    exclusive = lic(asset=x, license_type=T.EXCLUSIVE)
    pending = lic(
        asset=x, license_type=T.NON_EXCLUSIVE, status=S.PENDING_SIGNATURE, start=at(2025, 6, 1), end=at(2026, 5, 31)
    )
    lic(asset=x, license_type=T.NON_EXCLUSIVE, deleted_at=at(2025, 2, 1))  # deleted: ignored
    lic(asset=x, license_type=T.EXCLUSIVE, status=S.DRAFT)  # not live: ignored
    before = lic(asset=x, license_type=T.NON_EXCLUSIVE, start=at(2024, 1, 1), end=at(2024, 6, 30))  # no overlap

    y = make_asset((make_creator(), 10_000))
    us_ca = lic(asset=y, license_type=T.EXCLUSIVE_TERRITORY, scope_json=territory("US", "CA"))
    ca = lic(asset=y, license_type=T.EXCLUSIVE_TERRITORY, scope_json=territory("ca"))
    fr = lic(asset=y, license_type=T.EXCLUSIVE_TERRITORY, scope_json=territory("FR"))
    shared = lic(asset=y, license_type=T.NON_EXCLUSIVE, scope_json=territory("US"))

    z = make_asset((make_creator(), 10_000))
    world = lic(asset=z, license_type=T.EXCLUSIVE_TERRITORY, scope_json=territory("GLOBAL"))
    japan = lic(asset=z, license_type=T.EXCLUSIVE_TERRITORY, scope_json=territory("JP"))

    calculate_performance_metrics()

    assert metrics(exclusive)["conflicts"] == {"count": 1, "licenseIds": [pending.pk]}
    assert metrics(before)["conflicts"] == {"count": 0, "licenseIds": []}
    assert metrics(us_ca)["conflicts"] == {"count": 1, "licenseIds": [ca.pk]}
    assert metrics(ca)["conflicts"] == {"count": 1, "licenseIds": [us_ca.pk]}
    assert metrics(fr)["conflicts"]["count"] == 0  # no shared territory
    assert metrics(shared)["conflicts"]["count"] == 0  # neither side exclusive
    assert metrics(world)["conflicts"] == {"count": 1, "licenseIds": [japan.pk]}  # GLOBAL matches all
    assert metrics(japan)["conflicts"] == {"count": 1, "licenseIds": [world.pk]}
    pending.refresh_from_db()
    assert "performanceMetrics" not in pending.metadata  # not in force: no per-license metrics


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_every_license_in_force_gets_metrics_whatever_its_fee():
    cheap = [lic(fee_cents=fee) for fee in (0, 1, 99_999)]
    soon = lic(status=S.EXPIRING_SOON)
    others = [lic(status=S.EXPIRED), lic(status=S.DRAFT), lic(deleted_at=at(2025, 3, 1))]

    assert calculate_performance_metrics()["licenses"] == 4

    for license in [*cheap, soon]:
        assert metrics(license)["asOf"] == "2025-03-09"
    for license in others:
        license.refresh_from_db()
        assert "performanceMetrics" not in license.metadata


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_the_merge_keeps_other_metadata_keys():
    offer = {"id": "offer-1", "status": "PENDING"}
    a = lic(metadata={"renewalOffer": offer, "x": 1})

    calculate_performance_metrics()

    a.refresh_from_db()
    assert a.metadata["renewalOffer"] == offer and a.metadata["x"] == 1
    assert a.metadata["performanceMetrics"]["lastCalculated"] == NOW.isoformat()


def test_trend_and_percent_helpers():
    assert performance.trend(111, 100) == "increasing" and performance.trend(110, 100) == "stable"
    assert performance.trend(89, 100) == "decreasing" and performance.trend(90, 100) == "stable"
    assert performance.trend(5, 0) == "increasing" and performance.trend(0, 0) == "insufficient_data"
    assert performance.trend(0.0, 0.0, zero_is_stable=True) == "stable"
    assert performance.trend(None, 10.0) == "insufficient_data"
    assert performance.percent(1, 3) == 33.33 and performance.percent(5, 0) is None
    assert performance.growth(150, 100) == 50.0 and performance.growth(150, 0) is None


# --- snapshots -------------------------------------------------------------------------------


def test_periods_weekly_on_sundays_and_monthly_on_the_last_day():
    G = LicensePerformanceSnapshot.Granularity

    def shape(day: date) -> dict:
        return {p.granularity: (p.start, p.end, p.previous_start, p.previous_end) for p in performance.periods_for(day)}

    assert shape(date(2025, 3, 8)) == {G.DAILY: (date(2025, 3, 8),) * 2 + (date(2025, 3, 7),) * 2}  # Saturday
    assert shape(date(2025, 3, 9)) == {
        G.DAILY: (date(2025, 3, 9), date(2025, 3, 9), date(2025, 3, 8), date(2025, 3, 8)),
        G.WEEKLY: (date(2025, 3, 3), date(2025, 3, 9), date(2025, 2, 24), date(2025, 3, 2)),
    }
    assert set(shape(date(2025, 3, 3))) == {G.DAILY}  # Monday: the original's weekly day
    assert set(shape(date(2025, 3, 1))) == {G.DAILY}  # the 1st: the original's monthly day
    february = (date(2025, 2, 1), date(2025, 2, 28), date(2025, 1, 1), date(2025, 1, 31))
    assert shape(date(2025, 2, 28))[G.MONTHLY] == february
    assert shape(date(2024, 2, 29))[G.MONTHLY][:2] == (date(2024, 2, 1), date(2024, 2, 29))  # leap year
    assert set(shape(date(2024, 2, 28))) == {G.DAILY}
    # 2025-08-31 is a Sunday and the last day of August: all three.
    assert shape(date(2025, 8, 31)) == {
        G.DAILY: (date(2025, 8, 31), date(2025, 8, 31), date(2025, 8, 30), date(2025, 8, 30)),
        G.WEEKLY: (date(2025, 8, 25), date(2025, 8, 31), date(2025, 8, 18), date(2025, 8, 24)),
        G.MONTHLY: (date(2025, 8, 1), date(2025, 8, 31), date(2025, 7, 1), date(2025, 7, 31)),
    }


@pytest.mark.django_db
def test_snapshot_rows_only_for_the_periods_that_end_on_the_date():
    with time_machine.travel(at(2025, 4, 2), tick=False):
        assert calculate_performance_metrics(date="2025-03-08")["snapshots"] == 1
        assert calculate_performance_metrics(date="2025-03-09")["snapshots"] == 2
        assert calculate_performance_metrics(date="2025-03-31")["snapshots"] == 2
    rows = {(s.date, s.granularity): (s.period_start, s.period_end) for s in LicensePerformanceSnapshot.objects.all()}
    assert rows == {
        (date(2025, 3, 8), "daily"): (date(2025, 3, 8), date(2025, 3, 8)),
        (date(2025, 3, 9), "daily"): (date(2025, 3, 9), date(2025, 3, 9)),
        (date(2025, 3, 9), "weekly"): (date(2025, 3, 3), date(2025, 3, 9)),
        (date(2025, 3, 31), "daily"): (date(2025, 3, 31), date(2025, 3, 31)),
        (date(2025, 3, 31), "monthly"): (date(2025, 3, 1), date(2025, 3, 31)),
    }


@pytest.fixture
def snapshot_world():
    """Seven licenses in scope of 2025-03-09 (five running, two created that day), one
    created the day before (in the week only)."""
    s1 = lic(fee_cents=1000, start=at(2025, 3, 1))  # no revenue, 9 days old: ROI -100
    s2 = lic(fee_cents=1000, created_at=at(2025, 3, 5), signed_at=at(2025, 3, 9, 12))  # ROI 0, signed in 108 h
    s3 = lic(  # ROI 100, signed in 30 h
        fee_cents=1000,
        created_at=at(2025, 3, 8),
        signed_at=at(2025, 3, 9, 6),
        metadata={"usageLimits": {"maxUsageCount": 1000}},
    )
    s4 = lic(fee_cents=1000, metadata={"usageLimits": {"maxUsageCount": 100}})  # ROI 300
    s5 = lic(fee_cents=0, signed_at=None, created_at=at(2025, 2, 1))  # no ROI; unsigned 36 days: bottleneck
    revenue(s2, date(2025, 3, 8), 1000)
    revenue(s3, date(2025, 3, 9), 2000)
    revenue(s4, date(2025, 3, 9), 4000)
    usage(s3, date(2025, 3, 1), 500)  # 50 %
    usage(s4, date(2025, 3, 1), 150)  # 150 %
    later = {"start": at(2025, 4, 1), "signed_at": None}
    s6 = lic(  # created on the day, conflicts with s4 (exclusive, same asset, overlapping)
        asset=s4.ip_asset,
        license_type=T.EXCLUSIVE,
        status=S.PENDING_APPROVAL,
        created_at=at(2025, 3, 9, 10),
        **later,
    )
    s7 = lic(status=S.DRAFT, created_at=at(2025, 3, 9, 11), **later)  # created on the day, no conflict
    s8 = lic(status=S.DRAFT, created_at=at(2025, 3, 8, 11), **later)  # created the day before, no conflict
    return s1, s2, s3, s4, s5, s6, s7, s8


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_daily_snapshot_by_hand(snapshot_world):
    s1, _, s3, s4, s5, *_ = snapshot_world

    calculate_performance_metrics()

    daily = snapshot("daily")
    m = daily.metrics
    assert (daily.period_start, daily.period_end) == (TARGET, TARGET)
    assert daily.total_revenue_cents == 6000 and m["licenses"] == 7
    assert m["revenue"] == {
        "total": 6000,
        "average_per_license": 857,  # 6000 / 7
        "previous_total": 1000,  # the previous day, not the same day again
        "growth_percent": 500.0,
        "top": [{"license_id": s4.pk, "revenue": 4000}, {"license_id": s3.pk, "revenue": 2000}],
    }
    roi = m["roi"]
    assert roi["licenses_with_roi"] == 4
    assert roi["average"] == 75.0  # (-100 + 0 + 100 + 300) / 4
    assert roi["median"] == 50.0  # a true median: (0 + 100) / 2
    assert [(t["license_id"], t["roi_percent"]) for t in roi["top"]] == [(s4.pk, 300.0), (s3.pk, 100.0)]
    assert roi["underperforming_count"] == 1
    assert roi["underperforming"] == [
        {"license_id": s1.pk, "roi_percent": -100.0, "reasons": ["No revenue generated", "License is still new"]}
    ]
    assert m["utilization"] == {
        "licenses_with_limit": 2,
        "average": 100.0,  # (150 + 50) / 2
        "over_utilized": 1,
        "under_utilized": 5,  # no limit and (almost) no usage
        "well_utilized": 1,
    }
    conflicts = m["conflicts"]
    assert (conflicts["licenses_created"], conflicts["with_conflicts"], conflicts["conflict_rate"]) == (2, 1, 50.0)
    assert conflicts["previous_conflict_rate"] == 0.0 and conflicts["trend"] == "increasing"
    assert conflicts["top_assets"] == [{"ip_asset_id": s4.ip_asset_id, "licenses_with_conflicts": 1}]
    assert conflicts["average_resolution_hours"] is None
    approvals = m["approvals"]
    assert approvals["signed_in_period"] == 2
    assert approvals["average_hours"] == 69.0 and approvals["median_hours"] == 69.0  # 108 h and 30 h
    assert approvals["stages"] == {
        "approved": 4,
        "pending_approval": 1,
        "pending_signature": 1,
        "expired": 0,
        "created": 1,
    }
    assert approvals["bottleneck_count"] == 1 and approvals["bottlenecks"] == [s5.pk]
    assert m["renewals"] == {"expiring": 0, "renewed": 0, "renewal_rate": None, "revenue_retention": None}


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_weekly_snapshot_covers_monday_to_sunday(snapshot_world):
    calculate_performance_metrics()

    weekly = snapshot("weekly")
    m = weekly.metrics
    assert (weekly.period_start, weekly.period_end) == (date(2025, 3, 3), TARGET)
    assert weekly.total_revenue_cents == 7000 and m["licenses"] == 8
    assert m["revenue"]["previous_total"] == 0 and m["revenue"]["growth_percent"] is None
    assert (m["conflicts"]["licenses_created"], m["conflicts"]["with_conflicts"]) == (5, 1)  # s2, s3, s6, s7, s8
    assert m["approvals"]["signed_in_period"] == 2
    assert m["period"]["previous_start"] == "2025-02-24" and m["period"]["previous_end"] == "2025-03-02"


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_renewal_rate_and_revenue_retention():
    ends = {"end": at(2025, 3, 9, 12), "start": at(2024, 3, 10)}
    renewed = lic(fee_cents=10_000, **ends)
    lost = lic(fee_cents=10_000, **ends)
    lic(parent_license=renewed, fee_cents=12_000, start=at(2025, 3, 10), end=at(2026, 3, 9))
    lic(parent_license=lost, fee_cents=50_000, status=S.CANCELED, start=at(2025, 3, 10), end=at(2026, 3, 9))

    calculate_performance_metrics()

    assert snapshot("daily").metrics["renewals"] == {
        "expiring": 2,
        "renewed": 1,
        "renewal_rate": 50.0,
        "revenue_retention": 60.0,  # 12,000 / 20,000
    }


@pytest.mark.django_db
def test_a_second_run_changes_nothing(snapshot_world):
    with time_machine.travel(NOW, tick=False):
        first = calculate_performance_metrics()
        rows = list(LicensePerformanceSnapshot.objects.order_by("pk").values())
        meta = {pk: m for pk, m in License.objects.values_list("pk", "metadata")}
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        assert calculate_performance_metrics(date=TARGET.isoformat()) == first
        again = list(LicensePerformanceSnapshot.objects.order_by("pk").values())
        meta_again = {pk: m for pk, m in License.objects.values_list("pk", "metadata")}

    assert len(again) == len(rows) == 2

    def strip(row: dict) -> dict:
        return {k: v for k, v in row.items() if k != "calculated_at"}

    assert [strip(r) for r in again] == [strip(r) for r in rows]  # same rows, same ids, same figures
    for pk, m in meta.items():
        if "performanceMetrics" in m:
            m["performanceMetrics"].pop("lastCalculated")
            meta_again[pk]["performanceMetrics"].pop("lastCalculated")
    assert meta_again == meta


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nope", r"date must be an ISO date \(YYYY-MM-DD\), got 'nope'"),
        ("2025-3-9", "date must be an ISO date"),
        ("20250309", "date must be an ISO date"),
        ("2025-02-30", "is not a valid date"),
        ("2025-03-11", r"date 2025-03-11 is in the future \(today is 2025-03-10 UTC\)"),
        (20250309, "date must be an ISO date"),
    ],
)
def test_bad_dates_are_rejected(value, message):
    with time_machine.travel(NOW, tick=False), pytest.raises(InvalidInput, match=message):
        target_date(value)


def test_default_and_given_dates():
    assert target_date(None, now=NOW) == TARGET
    assert target_date("2025-03-10", now=NOW) == date(2025, 3, 10)  # today is allowed
    assert target_date(None, now=at(2025, 3, 1, 0)) == date(2025, 2, 28)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_bad_date_fails_once_through_a_real_worker(run_worker):
    job_id = enqueue("license-performance-metrics", date="nope")
    run_worker("scheduled")

    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.get_status() == "failed"
    assert job.retries_left == 0  # bad input: no retries
    assert job_id in FailedJobRegistry("scheduled", connection=redis_connection()).get_job_ids()
    assert job_id not in ScheduledJobRegistry("scheduled", connection=redis_connection()).get_job_ids()
    assert "JobInputError: date must be an ISO date (YYYY-MM-DD), got 'nope'" in job.latest_result().exc_string
    assert LicensePerformanceSnapshot.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_run_through_a_real_worker(run_worker):
    a = lic(fee_cents=1000, metadata={"x": 1})
    revenue(a, date(2025, 3, 9), 3000)
    job_id = enqueue("license-performance-metrics", date="2025-03-09")
    run_worker("scheduled")

    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.get_status() == "finished"
    assert job.return_value() == {"licenses": 1, "snapshots": 2}
    assert job.meta["progress"]["done"] == 100
    assert metrics(a)["roi"]["percentage"] == 200.0
    assert snapshot("daily").total_revenue_cents == 3000


# --- queries ---------------------------------------------------------------------------------


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def _busy_license() -> License:
    a = lic(fee_cents=1000, license_type=T.EXCLUSIVE, metadata={"usageLimits": {"maxUsageCount": 10}})
    revenue(a, date(2025, 3, 9), 500)
    usage(a, date(2025, 3, 9), 5)
    royalty(a, 100)
    return a


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_queries_do_not_grow_with_the_number_of_licenses():
    for _ in range(5):
        _busy_license()
    per_license_5 = _queries(lambda: performance.update_license_metrics(TARGET))
    whole_run_5 = _queries(calculate_performance_metrics)
    for _ in range(45):
        _busy_license()
    per_license_50 = _queries(lambda: performance.update_license_metrics(TARGET))
    whole_run_50 = _queries(calculate_performance_metrics)

    assert per_license_5 == per_license_50 == 3  # count, figures, merge
    assert whole_run_5 == whole_run_50
    assert all("performanceMetrics" in m for m in License.objects.values_list("metadata", flat=True))


@pytest.mark.django_db
@time_machine.travel(NOW, tick=False)
def test_queries_per_batch_are_constant(monkeypatch):
    monkeypatch.setattr(performance, "BATCH_SIZE", 10)
    for _ in range(25):
        _busy_license()

    assert _queries(lambda: performance.update_license_metrics(TARGET)) == 1 + 2 * 3  # 10 + 10 + 5
    for _ in range(5):
        _busy_license()
    # 30 licenses: three full batches, and one more read that finds nothing.
    assert _queries(lambda: performance.update_license_metrics(TARGET)) == 1 + 2 * 3 + 1
    assert License.objects.filter(metadata__has_key="performanceMetrics").count() == 30
