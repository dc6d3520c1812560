"""Daily, post daily, weekly and monthly metric roll-ups and backfill_metrics
(spec C §2.5.2, §2.5.3, §2.6; DECISIONS "Analytics, search, blog"), against figures
computed by hand."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict

from jobs.api import enqueue
from jobs.handlers.analytics import (
    aggregate_daily_metrics,
    aggregate_post_daily_metrics,
    rollup_monthly_metrics,
    rollup_weekly_metrics,
)
from yesgoddess.analytics import aggregation
from yesgoddess.analytics.models import (
    Attribution,
    DailyMetric,
    Event,
    MetricsAggregationLog,
    MonthlyMetric,
    PostDailyMetric,
    WeeklyMetric,
)
from yesgoddess.blog.models import Post, PostStatus
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.redis import redis_connection

from .conftest import SIMPLE
from .license_factories import make_asset, make_brand, make_license, make_project, make_user

pytestmark = pytest.mark.django_db

MICRO = timedelta(microseconds=1)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def event(when: datetime, event_type: str = "asset_viewed", *, actor: str | None = None, **fields) -> Event:
    return Event.objects.create(
        occurred_at=when,
        source="web",
        event_type=event_type,
        actor_id=actor,
        actor_type="user" if actor else None,
        **fields,
    )


@pytest.fixture
def dims():
    """Two assets: A1 in project P with license L1, A2 in no project."""
    brand = make_brand()
    project = make_project(brand)
    a1 = make_asset(title="A1", project=project)
    a2 = make_asset(title="A2")
    license = make_license(brand=brand, asset=a1, project=project)
    return {"project": project, "a1": a1, "a2": a2, "license": license}


def daily_rows() -> dict[tuple, dict]:
    return {
        (m.date, m.ip_asset_id, m.project_id, m.license_id): {c: getattr(m, c) for c in aggregation.DAILY_COLUMNS}
        for m in DailyMetric.objects.all()
    }


def snapshot(model) -> list[dict]:
    return sorted((model_to_dict(row) | {"updated_at": row.updated_at} for row in model.objects.all()), key=repr)


def comparable(model) -> list[dict]:
    skip = {"id", "created_at", "updated_at"}
    return sorted(
        ({k: v for k, v in model_to_dict(row).items() if k not in skip} for row in model.objects.all()), key=repr
    )


# --- daily -------------------------------------------------------------------------------------

DAY = date(2025, 3, 10)


def fill_day(dims) -> None:
    a1, a2, p, lic = dims["a1"], dims["a2"], dims["project"], dims["license"]
    noon = at(2025, 3, 10, 12)
    full = {"ip_asset": a1, "project": p, "license": lic}
    event(noon, actor="u1", props_json={"engagementTime": 30}, **full)
    event(noon, actor="u2", props_json={"engagementTime": 12}, **full)
    event(noon, actor="u1", **full)
    event(noon, "asset_downloaded", actor="u3", **full)
    event(noon, "license_clicked", session_id="s1", **full)  # anonymous: the session is the visitor
    event(noon, "license_created", actor="u1", props_json={"revenueCents": 5000}, **full)
    # the same asset and project without a license: its own group (NULL license)
    event(at(2025, 3, 10), actor="u1", ip_asset=a1, project=p)  # midnight belongs to this day
    event(noon, ip_asset=a1, project=p)  # no actor, no session: a view, not a visitor
    # no project, no license; the last microsecond of the day; props that are not numbers
    event(at(2025, 3, 11) - MICRO, actor="u5", ip_asset=a2, props_json={"revenueCents": "abc", "engagementTime": 7.9})
    # outside the day, or without an asset: not counted
    event(at(2025, 3, 11), actor="u9", ip_asset=a2)
    event(at(2025, 3, 10) - MICRO, actor="u9", ip_asset=a2)
    event(noon, actor="u9", project=p)


def test_daily_metrics_hand_computed_with_null_groups_and_midnight_boundaries(dims):
    fill_day(dims)
    result = aggregation.aggregate_daily(DAY)
    a1, a2, p, lic = dims["a1"].pk, dims["a2"].pk, dims["project"].pk, dims["license"].pk
    assert daily_rows() == {
        (DAY, a1, p, lic): {
            "views": 3,
            "clicks": 2,
            "conversions": 1,
            "revenue_cents": 5000,
            "unique_visitors": 4,  # u1, u2, u3 and session s1
            "engagement_time": 42,
        },
        (DAY, a1, p, None): {
            "views": 2,
            "clicks": 0,
            "conversions": 0,
            "revenue_cents": 0,
            "unique_visitors": 1,
            "engagement_time": 0,
        },
        (DAY, a2, None, None): {
            "views": 1,
            "clicks": 0,
            "conversions": 0,
            "revenue_cents": 0,
            "unique_visitors": 1,
            "engagement_time": 7,
        },
    }
    assert result.as_counts() == {
        "period": "2025-03-10",
        "groups": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
    }
    entry = MetricsAggregationLog.objects.get(pk=result.log_id)
    assert (entry.job_type, entry.status, entry.period_start_date, entry.period_end_date) == (
        "daily",
        "COMPLETED",
        DAY,
        DAY,
    )
    assert (entry.records_processed, entry.records_created) == (3, 3)
    assert entry.completed_at is not None and entry.duration_seconds is not None


def test_a_second_daily_run_changes_nothing(dims):
    fill_day(dims)
    aggregation.aggregate_daily(DAY)
    before = snapshot(DailyMetric)
    again = aggregation.aggregate_daily(DAY)
    assert snapshot(DailyMetric) == before  # same rows, same values, same updated_at
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert DailyMetric.objects.count() == 3


def test_a_rerun_updates_changed_groups_and_deletes_groups_without_data(dims):
    fill_day(dims)
    aggregation.aggregate_daily(DAY)
    Event.objects.filter(ip_asset=dims["a2"]).delete()
    event(at(2025, 3, 10, 13), actor="u7", ip_asset=dims["a1"], project=dims["project"])
    result = aggregation.aggregate_daily(DAY)
    assert (result.created, result.updated, result.deleted) == (0, 1, 1)
    rows = daily_rows()
    assert (DAY, dims["a2"].pk, None, None) not in rows
    assert rows[(DAY, dims["a1"].pk, dims["project"].pk, None)]["views"] == 3
    # another day's rows are never touched
    other = DailyMetric.objects.create(date=DAY - timedelta(days=1), ip_asset=dims["a2"], views=9)
    aggregation.aggregate_daily(DAY)
    assert DailyMetric.objects.filter(pk=other.pk).exists()


def test_the_daily_job_aggregates_yesterday_utc_and_clears_the_metric_caches(dims):
    fill_day(dims)
    conn = redis_connection()
    conn.set("metrics:dashboard:views", 1)
    conn.sadd("metrics:tag:dashboard:all", "metrics:dashboard:views")
    with time_machine.travel(at(2025, 3, 11, 2), tick=False):
        counts = aggregate_daily_metrics()
    assert counts["period"] == "2025-03-10" and counts["groups"] == 3
    assert not conn.exists("metrics:dashboard:views") and not conn.exists("metrics:tag:dashboard:all")


def test_an_explicit_day_is_aggregated_and_bad_or_future_ones_are_refused(dims):
    fill_day(dims)
    assert aggregate_daily_metrics(date="2025-03-10")["groups"] == 3
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        aggregate_daily_metrics(date="10/03/2025")
    with pytest.raises(InvalidInput, match="not started"):
        aggregate_daily_metrics(date="2999-01-01")
    with pytest.raises(InvalidInput, match="YYYY-MM"):
        rollup_monthly_metrics(month="March")


def test_a_failed_run_is_logged_and_raised(dims, monkeypatch):
    monkeypatch.setattr(aggregation, "DAILY_SQL", "SELECT 1/0, 0, 0, 0")
    with pytest.raises(Exception, match="division by zero"):
        aggregation.aggregate_daily(DAY)
    entry = MetricsAggregationLog.objects.get()
    assert entry.status == "FAILED" and entry.errors_count == 1 and "division by zero" in entry.error_message


# --- weekly and monthly -----------------------------------------------------------------------


def views(day: date, actors: list[str | None], dims, group: str = "full", hour: int = 12) -> None:
    fields = {
        "full": {"ip_asset": dims["a1"], "project": dims["project"], "license": dims["license"]},
        "a2": {"ip_asset": dims["a2"]},
    }[group]
    for actor in actors:
        event(at(day.year, day.month, day.day, hour), actor=actor, **fields)


def run_days(first: date, last: date) -> None:
    day = first
    while day <= last:
        aggregation.aggregate_daily(day)
        day += timedelta(days=1)


def weekly(week_start: date) -> dict[tuple, WeeklyMetric]:
    return {
        (w.ip_asset_id, w.project_id, w.license_id): w for w in WeeklyMetric.objects.filter(week_start_date=week_start)
    }


def test_a_week_spanning_a_month_end_counts_true_distinct_visitors_and_growth(dims):
    # previous week (Mon 24 March): 2 views by u3
    views(date(2025, 3, 25), ["u3", "u3"], dims)
    # this week, Mon 31 March - Sun 6 April
    views(date(2025, 3, 31), ["u1", "u2"], dims)
    views(date(2025, 4, 2), ["u1"], dims)
    views(date(2025, 4, 6), ["u1"], dims, hour=23)
    views(date(2025, 4, 1), ["u8", None], dims, group="a2")
    views(date(2025, 4, 7), ["u1"], dims)  # next week
    run_days(date(2025, 3, 24), date(2025, 4, 7))
    aggregation.rollup_week(date(2025, 3, 24))
    with time_machine.travel(at(2025, 4, 7, 4), tick=False):
        counts = rollup_weekly_metrics()
    assert counts["period"] == "2025-03-31..2025-04-06" and counts["groups"] == 2

    rows = weekly(date(2025, 3, 31))
    full = rows[(dims["a1"].pk, dims["project"].pk, dims["license"].pk)]
    assert full.week_end_date == date(2025, 4, 6)
    assert (full.total_views, full.total_clicks, full.total_conversions, full.total_revenue_cents) == (4, 0, 0, 0)
    assert full.unique_visitors == 2  # u1 and u2 over the week; the daily values add up to 4
    assert full.days_in_period == 3 and full.avg_daily_views == Decimal("1.33")
    assert full.views_growth_percent == Decimal("100.00")  # 2 -> 4
    assert full.clicks_growth_percent == Decimal("0.00")  # 0 -> 0
    other = rows[(dims["a2"].pk, None, None)]
    assert (other.total_views, other.unique_visitors, other.days_in_period) == (2, 1, 1)
    assert other.views_growth_percent is None and other.revenue_growth_percent is None  # no previous week

    # March: 24-25 March and 31 March; April's days are another month
    aggregation.rollup_month(date(2025, 3, 1))
    march = MonthlyMetric.objects.get(year=2025, month=3, ip_asset=dims["a1"])
    assert (march.month_start_date, march.month_end_date, march.days_in_period) == (
        date(2025, 3, 1),
        date(2025, 3, 31),
        2,
    )
    assert (march.total_views, march.unique_visitors) == (4, 3)  # u3, u1, u2
    assert march.views_growth_percent is None
    # the weeks overlapping March that had ended by 2 April (31 March's week ends on 6 April)
    assert march.weekly_breakdown == [
        {
            "weekStart": "2025-03-24",
            "weekEnd": "2025-03-30",
            "views": 2,
            "clicks": 0,
            "conversions": 0,
            "revenueCents": 0,
            "viewsGrowth": None,
        }
    ]
    assert march.weeks_in_month == 1
    with time_machine.travel(at(2025, 5, 2, 5), tick=False):
        assert rollup_monthly_metrics()["period"] == "2025-04-01..2025-04-30"
    april = MonthlyMetric.objects.get(year=2025, month=4, ip_asset=dims["a1"])
    assert (april.total_views, april.unique_visitors, april.days_in_period) == (3, 1, 3)
    assert april.views_growth_percent == Decimal("-25.00")  # 4 -> 3
    assert [w["weekStart"] for w in april.weekly_breakdown] == ["2025-03-31"]


def test_december_to_january_the_iso_week_across_the_year_end_and_the_january_month(dims):
    views(date(2024, 12, 10), ["u1"], dims)
    event(at(2025, 1, 1) - MICRO, actor="u1", ip_asset=dims["a1"], project=dims["project"], license=dims["license"])
    event(at(2025, 1, 1), actor="u2", ip_asset=dims["a1"], project=dims["project"], license=dims["license"])
    run_days(date(2024, 12, 1), date(2025, 1, 5))
    assert daily_rows()[(date(2024, 12, 31), dims["a1"].pk, dims["project"].pk, dims["license"].pk)]["views"] == 1
    assert daily_rows()[(date(2025, 1, 1), dims["a1"].pk, dims["project"].pk, dims["license"].pk)]["views"] == 1
    # in the order of the nights: December on 2 January, the year-end week on Monday 6 January
    with time_machine.travel(at(2025, 1, 2, 5), tick=False):
        assert rollup_monthly_metrics()["period"] == "2024-12-01..2024-12-31"
    with time_machine.travel(at(2025, 1, 6, 4), tick=False):
        assert rollup_weekly_metrics()["period"] == "2024-12-30..2025-01-05"
    (week,) = weekly(date(2024, 12, 30)).values()
    assert (week.week_end_date, week.total_views, week.unique_visitors) == (date(2025, 1, 5), 2, 2)
    with time_machine.travel(at(2025, 2, 2, 5), tick=False):
        assert rollup_monthly_metrics()["period"] == "2025-01-01..2025-01-31"
    december = MonthlyMetric.objects.get(year=2024, month=12)
    january = MonthlyMetric.objects.get(year=2025, month=1)
    assert (december.total_views, december.unique_visitors) == (2, 1)
    assert (january.total_views, january.unique_visitors, january.days_in_period) == (1, 1, 1)
    assert january.views_growth_percent == Decimal("-50.00")  # against December of the year before
    assert [w["weekStart"] for w in january.weekly_breakdown] == ["2024-12-30"]
    assert december.weekly_breakdown == []  # 30 December's week ends on 5 January


@pytest.mark.parametrize(
    ("previous", "current", "growth"),
    [
        (None, 5, None),  # no previous row
        (0, 5, Decimal("100.00")),
        (0, 0, Decimal("0.00")),
        (3, 1, Decimal("-66.67")),
        (2, 5, Decimal("150.00")),
        (1, 10**9, Decimal("99999999.99")),  # capped at what the column holds
    ],
)
def test_growth_rules(dims, previous, current, growth):
    week = date(2025, 6, 9)
    if previous is not None:
        DailyMetric.objects.create(date=week - timedelta(days=6), ip_asset=dims["a2"], views=previous)
        aggregation.rollup_week(week - timedelta(days=7))
    DailyMetric.objects.create(date=week, ip_asset=dims["a2"], views=current, clicks=current)
    aggregation.rollup_week(week)
    row = WeeklyMetric.objects.get(week_start_date=week)
    assert row.views_growth_percent == growth
    if previous is not None:
        assert row.clicks_growth_percent == (Decimal("100.00") if current else Decimal("0.00"))


def test_second_weekly_and_monthly_runs_change_nothing(dims):
    views(date(2025, 3, 31), ["u1", "u2"], dims)
    views(date(2025, 3, 5), ["u1"], dims, group="a2")
    run_days(date(2025, 3, 1), date(2025, 4, 6))
    for _ in range(2):
        aggregation.rollup_week(date(2025, 3, 31))
        aggregation.rollup_month(date(2025, 3, 1))
    before = (snapshot(WeeklyMetric), snapshot(MonthlyMetric))
    week = aggregation.rollup_week(date(2025, 3, 31))
    month = aggregation.rollup_month(date(2025, 3, 1))
    assert (snapshot(WeeklyMetric), snapshot(MonthlyMetric)) == before
    assert (week.created, week.updated, month.created, month.updated) == (0, 0, 0, 0)
    assert WeeklyMetric.objects.count() == 1 and MonthlyMetric.objects.count() == 2


# --- post daily metrics -------------------------------------------------------------------------


def make_post(slug: str, status: str = PostStatus.PUBLISHED, published: datetime | None = None, **fields) -> Post:
    return Post.objects.create(
        title=slug,
        slug=slug,
        author=fields.pop("author", None) or make_user(),
        status=status,
        published_at=published,
        **fields,
    )


def post_event(post, event_type, *, session=None, props=None, when=None, **attribution) -> Event:
    created = Event.objects.create(
        occurred_at=when or at(2025, 3, 10, 15),
        source="web",
        event_type=event_type,
        post=post,
        session_id=session,
        props_json=props or {},
    )
    if attribution:
        Attribution.objects.create(event=created, **attribution)
    return created


def test_post_daily_metrics_hand_computed():
    p1 = make_post("launched-today", published=at(2025, 3, 10, 10))  # published during the day: counted
    p2 = make_post("older", published=at(2025, 1, 1))
    draft = make_post("draft", status=PostStatus.DRAFT)
    deleted = make_post("deleted", published=at(2025, 1, 1), deleted_at=at(2025, 3, 1))
    tomorrow = make_post("tomorrow", published=at(2025, 3, 11, 1))

    post_event(p1, "post_viewed", session="s1", referrer="https://www.google.com/search?q=a", device_type="desktop")
    post_event(p1, "post_viewed", session="s1", referrer="https://news.ycombinator.com/item?id=1", device_type="mobile")
    post_event(
        p1,
        "post_viewed",
        session="s2",
        utm_source="facebook",
        utm_medium="cpc",
        referrer="https://m.facebook.com/",
        device_type="mobile",
    )
    post_event(p1, "post_viewed", session="s3", referrer="not a url", device_type="Tablet")
    post_event(p1, "post_viewed")  # no session, no attribution
    post_event(p1, "post_engagement_time", session="s1", props={"engagementTimeSeconds": 20})
    post_event(p1, "post_engagement_time", session="s2", props={"engagementTimeSeconds": 45})
    post_event(p1, "post_engagement_time", props={"engagementTimeSeconds": 10})  # missing session: one value
    post_event(p1, "post_scroll_depth", props={"scrollDepthPercentage": 50})
    post_event(p1, "post_scroll_depth", props={"scrollDepthPercentage": 100})
    post_event(p1, "post_scroll_depth")
    post_event(p1, "post_cta_clicked", props={"ctaType": "subscribe", "conversionValue": 10})
    post_event(p1, "post_cta_clicked", props={"ctaType": "subscribe", "conversionValue": 0})
    post_event(p1, "post_cta_clicked", props={"conversionValue": "yes"})
    post_event(p1, "post_cta_clicked", props={"ctaType": "download", "conversionValue": False})
    post_event(p1, "post_shared", utm_medium="Email", device_type="tv")
    post_event(p2, "post_viewed", session="s9")
    post_event(p2, "post_viewed", session="s9", when=at(2025, 3, 11))  # the next day
    for other in (draft, deleted, tomorrow):
        post_event(other, "post_viewed", session="x")

    result = aggregation.aggregate_post_daily(DAY)
    assert (result.groups, result.created) == (2, 2)
    row = PostDailyMetric.objects.get(post=p1, date=DAY)
    assert (row.views, row.unique_visitors, row.cta_clicks) == (5, 3, 4)
    assert row.total_engagement_time_seconds == 75
    assert row.avg_engagement_time_seconds == pytest.approx(25.0)
    assert row.avg_scroll_depth_percentage == pytest.approx(50.0)
    assert row.bounce_rate == pytest.approx(200 / 3)  # s1 and the session-less one, of 3 visitors
    assert row.conversion_rate == pytest.approx(80.0)  # 4 CTA clicks / 5 views
    assert row.top_referrers == [
        {"domain": "direct", "visits": 2},
        {"domain": "google.com", "visits": 1},
        {"domain": "m.facebook.com", "visits": 1},
        {"domain": "news.ycombinator.com", "visits": 1},
    ]
    assert row.top_cta_types == [
        {"type": "subscribe", "clicks": 2, "conversions": 1},
        {"type": "download", "clicks": 1, "conversions": 0},
        {"type": "unknown", "clicks": 1, "conversions": 1},
    ]
    assert row.device_breakdown == {"desktop": 1, "mobile": 2, "tablet": 1}
    assert row.source_breakdown == {"organic": 1, "social": 1, "direct": 11, "referral": 2, "email": 1}
    assert (row.shares, row.email_captures, row.social_share_breakdown) == (0, 0, {})
    older = PostDailyMetric.objects.get(post=p2, date=DAY)
    assert (older.views, older.unique_visitors, older.bounce_rate, older.conversion_rate) == (1, 1, 0, 0)
    assert older.top_referrers == [{"domain": "direct", "visits": 1}] and older.top_cta_types == []

    before = snapshot(PostDailyMetric)
    again = aggregation.aggregate_post_daily(DAY)
    assert snapshot(PostDailyMetric) == before and (again.created, again.updated) == (0, 0)

    # a post unpublished since: its row of the day goes on a re-run
    Post.objects.filter(pk=p2.pk).update(status=PostStatus.ARCHIVED)
    assert aggregation.aggregate_post_daily(DAY).deleted == 1
    assert not PostDailyMetric.objects.filter(post=p2).exists()


def test_the_post_daily_job_aggregates_yesterday():
    post = make_post("p", published=at(2025, 1, 1))
    post_event(post, "post_viewed", session="s")
    with time_machine.travel(at(2025, 3, 11, 3), tick=False):
        assert aggregate_post_daily_metrics()["groups"] == 1
    assert PostDailyMetric.objects.get().date == DAY


# --- backfill --------------------------------------------------------------------------------------


def random_events(dims, first: date, days: int) -> None:
    rng = random.Random(7)
    post = make_post("bf", published=at(2025, 1, 1))
    groups = [
        {"ip_asset": dims["a1"], "project": dims["project"], "license": dims["license"]},
        {"ip_asset": dims["a1"], "project": dims["project"]},
        {"ip_asset": dims["a2"]},
    ]
    types = ["asset_viewed", "asset_viewed", "asset_downloaded", "license_clicked", "license_created"]
    rows = []
    start = aggregation.day_start(first)
    for n in range(600):
        when = start + timedelta(seconds=rng.randrange(days * 86400))
        rows.append(
            Event(
                occurred_at=when,
                source="web",
                event_type=rng.choice(types),
                actor_id=f"u{rng.randrange(20)}",
                props_json={"revenueCents": rng.choice([0, 100, 250]), "engagementTime": rng.randrange(60)},
                **rng.choice(groups),
            )
        )
        if n % 5 == 0:
            rows.append(
                Event(occurred_at=when, source="web", event_type="post_viewed", post=post, session_id=f"s{n % 9}")
            )
    Event.objects.bulk_create(rows)


def nightly(first: date, last: date) -> None:
    """What the cron table does from the night after `first` to the night after `last`."""
    day = first
    while day <= last:
        night = aggregation.day_start(day + timedelta(days=1))
        with time_machine.travel(night + timedelta(hours=2), tick=False):
            aggregate_daily_metrics()
        with time_machine.travel(night + timedelta(hours=3), tick=False):
            aggregate_post_daily_metrics()
        if night.weekday() == 0:
            with time_machine.travel(night + timedelta(hours=4), tick=False):
                rollup_weekly_metrics()
        if night.day == 2:
            with time_machine.travel(night + timedelta(hours=5), tick=False):
                rollup_monthly_metrics()
        day += timedelta(days=1)


TABLES = (DailyMetric, PostDailyMetric, WeeklyMetric, MonthlyMetric)


def test_backfill_equals_the_nightly_result(dims):
    first, last = date(2025, 3, 17), date(2025, 4, 8)
    random_events(dims, first - timedelta(days=3), 26)
    nightly(first, last)
    expected = {model.__name__: comparable(model) for model in TABLES}
    assert all(expected.values()) and len(expected["MonthlyMetric"]) == 3  # March's three groups
    for model in TABLES:
        model.objects.all().delete()
    with time_machine.travel(at(2025, 4, 9, 6), tick=False):
        call_command("backfill_metrics", "--from", first.isoformat(), "--to", last.isoformat())
    assert {model.__name__: comparable(model) for model in TABLES} == expected
    # and once more: nothing changes
    before = {model.__name__: snapshot(model) for model in TABLES}
    with time_machine.travel(at(2025, 4, 9, 6), tick=False):
        call_command("backfill_metrics", "--from", first.isoformat(), "--to", last.isoformat())
    assert {model.__name__: snapshot(model) for model in TABLES} == before


def test_backfill_refuses_a_bad_range():
    with pytest.raises(CommandError, match="before --from"):
        call_command("backfill_metrics", "--from", "2025-03-10", "--to", "2025-03-01")
    with pytest.raises(CommandError, match="before today"):
        call_command("backfill_metrics", "--from", "2025-03-10", "--to", "2999-01-01")
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("backfill_metrics", "--from", "March", "--to", "2025-03-01")


@pytest.mark.django_db(transaction=True)
def test_the_roll_ups_run_through_a_real_worker(dims, run_worker):
    fill_day(dims)
    enqueue("analytics-jobs.daily-metrics", date="2025-03-10")
    enqueue("analytics-jobs.post-daily-metrics", date="2025-03-10")
    enqueue("metrics-aggregation.weekly", week_start="2025-03-10")
    enqueue("metrics-aggregation.monthly", month="2025-03")
    run_worker("scheduled", worker_class=SIMPLE)
    assert DailyMetric.objects.count() == 3 and WeeklyMetric.objects.count() == 3 and MonthlyMetric.objects.count() == 3
    assert set(MetricsAggregationLog.objects.values_list("job_type", "status")) == {
        ("daily", "COMPLETED"),
        ("post_daily", "COMPLETED"),
        ("weekly", "COMPLETED"),
        ("monthly", "COMPLETED"),
    }
