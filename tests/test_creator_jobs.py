"""Creator jobs: onboarding reminders (7-day boundary, one a week, four in all) and the
monthly report (previous calendar month across a year end, real figures from a constant
number of queries, once per creator and month, crash-safe fan-out)."""

from __future__ import annotations

import smtplib
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.api import enqueue
from jobs.handlers.creators import remind_creator_onboarding, send_monthly_reports
from jobs.handlers.royalties import calculate_royalties
from yesgoddess.analytics.models import Event
from yesgoddess.core.errors import InvalidInput
from yesgoddess.creators.models import Creator, CreatorMonthlyReport, ReportedEarning
from yesgoddess.creators.onboarding import onboarding_context
from yesgoddess.creators.reports import monthly_reports, next_month, previous_month, report_context, report_month
from yesgoddess.notifications.services import render_email
from yesgoddess.royalties.models import RoyaltyRun, RoyaltyStatement
from yesgoddess.royalties.services import create_run, lock_run

from .concurrency import run_twice_at_once
from .email_backends import FlakyBackend, use_flaky_backend
from .license_factories import make_asset, make_creator, make_license, make_user

pytestmark = pytest.mark.django_db

MONDAY = datetime(2027, 3, 8, 10, 0, tzinfo=UTC)
NEW_YEAR = datetime(2027, 1, 1, 9, 0, tzinfo=UTC)  # the cron run that reports on December 2026
DAY = timedelta(days=1)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def creator(name: str = "Ana", email: str | None = None, **fields) -> Creator:
    c = make_creator(name)
    fields.setdefault("verification_status", "approved")
    Creator.objects.filter(pk=c.pk).update(**fields)
    if email is not None:
        c.user.email = email
        c.user.save(update_fields=["email"])
    c.refresh_from_db()
    return c


# --- creator-onboarding-reminder ---------------------------------------------------------


def onboarding(name: str = "Ana", **fields) -> Creator:
    fields.setdefault("created_at", MONDAY - 30 * DAY)
    return creator(name, **fields)


@pytest.mark.parametrize(
    ("fields", "reminded"),
    [
        ({"created_at": MONDAY - 7 * DAY}, False),  # exactly 7 days: not yet
        ({"created_at": MONDAY - 7 * DAY - timedelta(seconds=1)}, True),
        ({"onboarding_status": "in_progress"}, True),
        ({"onboarding_status": "completed"}, False),
        ({"onboarding_status": "failed"}, False),
        ({"verification_status": "pending"}, False),
        ({"verification_status": "rejected"}, False),
        ({"deleted_at": MONDAY - DAY}, False),
        ({"onboarding_reminders_sent": 4, "onboarding_reminder_sent_at": MONDAY - 60 * DAY}, False),
    ],
)
def test_onboarding_reminder_boundaries(fields, reminded):
    onboarding(**fields)
    with at(MONDAY):
        assert remind_creator_onboarding()["sent"] == int(reminded)


def test_onboarding_reminders_weekly_at_most_four():
    ana = onboarding("Ana", email="ana@example.com")
    sent_on = []
    for week in range(8):
        moment = MONDAY + timedelta(weeks=week, seconds=-week)  # each run a little earlier
        with at(moment):
            if remind_creator_onboarding()["sent"]:
                sent_on.append(week)
        with at(moment + 6 * DAY):  # a second run within the week sends nothing
            assert remind_creator_onboarding()["sent"] == 0
    assert sent_on == [0, 1, 2, 3]
    ana.refresh_from_db()
    assert ana.onboarding_reminders_sent == 4
    assert ana.onboarding_reminder_sent_at == MONDAY + timedelta(weeks=3, seconds=-3)
    assert [m.subject for m in mail.outbox] == ["ANA - Complete Your Payout Setup"] * 4
    assert "This is our last reminder" in mail.outbox[-1].body
    assert "last reminder" not in mail.outbox[0].body


def test_onboarding_stops_once_completed():
    ana = onboarding("Ana")
    with at(MONDAY):
        remind_creator_onboarding()
    Creator.objects.filter(pk=ana.pk).update(onboarding_status="completed")
    with at(MONDAY + 7 * DAY):
        assert remind_creator_onboarding()["sent"] == 0
    assert len(mail.outbox) == 1


def test_onboarding_email_renders_with_the_job_context(settings):
    settings.APP_URL = "https://app.example.com"
    ana = onboarding("Ana Lima", onboarding_status="in_progress", onboarding_reminders_sent=1)
    subject, text, html = render_email("creator_onboarding_reminder", onboarding_context(ana))
    assert subject == "ANA LIMA - Complete Your Payout Setup"
    assert text.startswith("Hello Ana Lima,") and "not finished yet" in text
    assert "Takes under 5 minutes" in text and "Direct deposit" in text
    assert "Complete Payout Setup: https://app.example.com/dashboard/settings/payouts" in text
    assert 'href="https://app.example.com/dashboard/settings/payouts"' in html and "Complete Payout Setup" in html


# --- creator-monthly-report: the period ---------------------------------------------------


def test_previous_calendar_month_across_a_year_end():
    assert report_month(None, NEW_YEAR) == date(2026, 12, 1)
    assert report_month(None, utc(2027, 1, 31, 23, 59)) == date(2026, 12, 1)
    assert report_month(None, utc(2027, 3, 1, 0, 0)) == date(2027, 2, 1)
    assert previous_month(date(2027, 1, 1)) == date(2026, 12, 1)
    assert next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert next_month(date(2027, 1, 1)) == date(2027, 2, 1)
    assert report_month("2026-11", NEW_YEAR) == date(2026, 11, 1)


@pytest.mark.parametrize("month", ["2027-01", "2027-02", "2026-13", "2026-1", "December", ""])
def test_month_argument_must_be_a_past_month(month):
    with pytest.raises(InvalidInput):
        report_month(month, NEW_YEAR)


# --- creator-monthly-report: the figures ---------------------------------------------------


@pytest.fixture
def december():
    """Ana owns `solo` and half of `shared` (with Ben); licenses, locked royalty runs and
    views around December 2026, each on or just across a boundary."""
    ana = creator("Ana", email="ana@example.com", created_at=utc(2025, 1, 1))
    ben = creator("Ben", email="ben@example.com", created_at=utc(2025, 1, 1))
    solo = make_asset((ana, 10_000), title="Solo")
    shared = make_asset((ana, 5_000), (ben, 5_000), title="Shared")
    far = utc(2028, 1, 1)
    for created, asset, status in (
        (utc(2026, 12, 1, 0, 0), solo, "ACTIVE"),  # new in December (first instant)
        (utc(2026, 12, 31, 23, 59, 59), shared, "ACTIVE"),  # new in December (last second)
        (utc(2026, 11, 30, 23, 59, 59), solo, "EXPIRING_SOON"),  # November: not new, in force
        (utc(2027, 1, 1, 0, 0), shared, "ACTIVE"),  # January: not new, in force
        (utc(2026, 12, 10), solo, "EXPIRED"),  # new in December, not in force
    ):
        make_license(asset=asset, created_at=created, status=status, end=far)
    make_license(asset=solo, created_at=utc(2026, 12, 15), deleted_at=utc(2026, 12, 20), end=far)  # deleted
    admin = make_user(is_staff=True)

    def run(start, end, status, locked_at, statements):
        r = RoyaltyRun.objects.create(
            period_start=start, period_end=end, status=status, locked_at=locked_at, created_by=admin
        )
        for who, total, carried in statements:
            RoyaltyStatement.objects.create(
                royalty_run=r, creator=who, total_earnings_cents=total, metadata={"carriedCents": carried}
            )

    # Locked in December: in the report sent on January 1st, whatever period they cover.
    run(
        utc(2026, 11, 1), utc(2026, 11, 30, 23, 59, 59), "LOCKED", utc(2026, 12, 2), [(ana, 12_345, 345), (ben, 500, 0)]
    )
    run(utc(2026, 9, 1), utc(2026, 9, 30), "LOCKED", utc(2026, 12, 31, 23, 59, 59), [(ana, 1_000, 0)])
    # Locked in November: November's report. Locked in January: January's report.
    run(utc(2026, 7, 1), utc(2026, 7, 31), "LOCKED", utc(2026, 11, 15), [(ana, 2_500, 0)])
    run(utc(2026, 8, 1), utc(2026, 8, 31), "LOCKED", utc(2027, 1, 1, 0, 0), [(ana, 55_555, 0)])
    # December's own run, calculated but not final; a failed run.
    run(utc(2026, 12, 1), utc(2026, 12, 31, 23, 59, 59, 999999), "CALCULATED", None, [(ana, 99_999, 0)])
    run(utc(2026, 12, 1), utc(2026, 12, 31), "FAILED", None, [(ana, 77_777, 0)])
    for moment, who, kind in (
        (utc(2026, 12, 1, 0, 0), ana, "creator_profile_viewed"),
        (utc(2026, 12, 31, 23, 59, 59), ana, "creator_profile_viewed"),
        (utc(2026, 12, 15), ana, "creator_profile_viewed"),
        (utc(2026, 11, 30, 23, 59, 59), ana, "creator_profile_viewed"),
        (utc(2027, 1, 1, 0, 0), ana, "creator_profile_viewed"),
        (utc(2026, 12, 15), ana, "asset_viewed"),
        (utc(2026, 12, 15), ben, "creator_profile_viewed"),
    ):
        Event.objects.create(source="web", event_type=kind, creator_id=who.pk, occurred_at=moment)
    return ana, ben


def test_december_report_on_new_years_day_has_the_real_figures(december, settings):
    settings.APP_URL = "https://app.example.com"
    ana, ben = december
    creator("Pending", verification_status="pending", created_at=utc(2025, 1, 1))
    creator("Deleted", deleted_at=utc(2026, 12, 5), created_at=utc(2025, 1, 1))
    creator("Newcomer", created_at=utc(2027, 1, 1, 0, 0))  # joined after December
    with at(utc(2026, 12, 1, 9, 0)):  # November's report, the month before
        send_monthly_reports()
    mail.outbox.clear()

    with at(NEW_YEAR):
        result = send_monthly_reports()

    assert result == {
        "month": "2026-12",
        "prepared": 2,
        "sent": 2,
        "refused": 0,
        "unsent": 0,
        "in_doubt": 0,
        "no_address": 0,
    }
    reports = {r.creator_id: r for r in CreatorMonthlyReport.objects.filter(month=date(2026, 12, 1))}
    assert set(reports) == {ana.pk, ben.pk}
    figures = {
        who: (r.month, r.earnings_cents, r.new_licenses, r.active_licenses, r.profile_views, r.status)
        for who, r in reports.items()
    }
    assert figures[ana.pk] == (date(2026, 12, 1), 12_000 + 1_000, 3, 4, 3, "SENT")
    assert figures[ben.pk] == (date(2026, 12, 1), 500, 1, 2, 1, "SENT")
    [ana_mail] = [m for m in mail.outbox if "ana@example.com" in m.to]
    assert ana_mail.subject == "ANA - December 2026 Performance Report"
    assert "Earnings:          $130.00" in ana_mail.body
    assert "Sep 1 - Sep 30, 2026: $10.00" in ana_mail.body and "Nov 1 - Nov 30, 2026: $120.00" in ana_mail.body
    assert "New licenses:      3" in ana_mail.body and "Profile views:     3" in ana_mail.body
    assert "https://app.example.com/dashboard/analytics" in ana_mail.body

    with at(NEW_YEAR + timedelta(hours=1)):  # a second run sends nothing
        assert send_monthly_reports()["sent"] == 0
    assert len(mail.outbox) == 2


def test_figures_come_from_a_constant_number_of_queries(settings):
    settings.EMAIL_BATCH_SIZE = 100
    staff = make_user(is_staff=True)
    locked = RoyaltyRun.objects.create(
        period_start=utc(2026, 11, 1), period_end=utc(2026, 11, 30), status="LOCKED", locked_at=utc(2026, 12, 2),
        created_by=staff,
    )  # fmt: skip

    def queries_for(count: int) -> int:
        CreatorMonthlyReport.objects.all().delete()
        for i in range(count - Creator.objects.count()):
            c = creator(f"C{i}", created_at=utc(2025, 1, 1))
            make_license(asset=make_asset((c, 10_000)), created_at=utc(2026, 12, 2), end=utc(2028, 1, 1))
            RoyaltyStatement.objects.create(royalty_run=locked, creator=c, total_earnings_cents=700)
            Event.objects.create(
                source="web", event_type="creator_profile_viewed", creator_id=c.pk, occurred_at=utc(2026, 12, 3)
            )
        with at(NEW_YEAR), CaptureQueriesContext(connection) as captured:
            assert monthly_reports()["sent"] == count
        figures = {(r.new_licenses, r.profile_views, r.earnings_cents) for r in CreatorMonthlyReport.objects.all()}
        assert figures == {(1, 1, 700)}
        assert all("Nov 1 - Nov 30, 2026: $7.00" in m.body for m in mail.outbox)
        mail.outbox.clear()
        return len(captured)

    assert queries_for(3) == queries_for(40)


def test_creator_without_an_address_gets_a_report_row_but_no_email():
    ana = creator("Ana", email="", created_at=utc(2025, 1, 1))
    with at(NEW_YEAR):
        assert send_monthly_reports()["no_address"] == 1
    assert CreatorMonthlyReport.objects.get(creator=ana).status == "NO_ADDRESS"
    assert mail.outbox == []


def test_an_earlier_month_can_be_reported_on_request(december):
    with at(NEW_YEAR):
        result = send_monthly_reports(month="2026-11")
    assert result["month"] == "2026-11" and result["sent"] == 2
    ana_report = CreatorMonthlyReport.objects.get(creator=december[0])
    # Only the run locked before November ended: December's locks wait for December's report.
    assert (ana_report.month, ana_report.earnings_cents, ana_report.new_licenses) == (date(2026, 11, 1), 2_500, 1)
    assert "November 2026" in mail.outbox[0].subject


def test_every_locked_run_reaches_exactly_one_report_across_month_ends(settings):
    """The real sequence over a year end: a month's run can only be created once the month
    is over, so it is never final by 09:00 on the 1st. Each locked run reaches the first
    report prepared after its lock, labelled by its period; nothing is counted twice, not
    even a HELD balance carried into the next run (Ben's)."""
    settings.APP_URL = "https://app.example.com"
    ana = creator("Ana", email="ana@example.com", created_at=utc(2025, 1, 1))
    ben = creator("Ben", email="ben@example.com", created_at=utc(2025, 1, 1))
    staff = make_user(is_staff=True)
    # 182 days (Oct 1 - Mar 31): Ana earns $10.00 a day, Ben 10 cents (below the $20 payout).
    term = {"start": utc(2026, 10, 1), "end": utc(2027, 3, 31)}
    make_license(asset=make_asset((ana, 10_000)), fee_cents=182_000, **term)
    make_license(asset=make_asset((ben, 10_000)), fee_cents=1_820, **term)

    def calculated(first: date, last: date, when: datetime) -> RoyaltyRun:
        with at(when):
            run = create_run(first, last, staff.pk)
            calculate_royalties(run_id=run.pk)
        return run

    def locked(run: RoyaltyRun, when: datetime) -> None:
        with at(when):
            lock_run(run.pk, staff.pk)

    def report_on(when: datetime, **kwargs) -> dict[int, CreatorMonthlyReport]:
        with at(when):
            send_monthly_reports(**kwargs)
        month = report_month(kwargs.get("month"), when)
        return {r.creator_id: r for r in CreatorMonthlyReport.objects.filter(month=month)}

    def body(who: Creator, month: str) -> str:
        [message] = [m for m in mail.outbox if who.user.email in m.to and month in m.subject]
        return message.body

    november = calculated(date(2026, 11, 1), date(2026, 11, 30), utc(2026, 12, 1, 8, 0))
    locked(november, utc(2026, 12, 3, 10, 0))
    december = calculated(date(2026, 12, 1), date(2026, 12, 31), utc(2027, 1, 1, 0, 30))
    locked(december, utc(2027, 1, 1, 8, 45))  # locked before the 09:00 report, but in January
    assert RoyaltyStatement.objects.get(royalty_run=november, creator=ben).status == "CARRIED"

    dec = report_on(utc(2027, 1, 1, 9, 0))
    assert (dec[ana.pk].earnings_cents, dec[ben.pk].earnings_cents) == (30_000, 300)
    assert "Nov 1 - Nov 30, 2026: $300.00" in body(ana, "December 2026")
    assert "Dec 1 - Dec 31" not in body(ana, "December 2026")

    january = calculated(date(2027, 1, 1), date(2027, 1, 31), utc(2027, 2, 1, 0, 30))
    jan = report_on(utc(2027, 2, 1, 9, 0))
    # December's run (locked January 1st); not January's own (calculated, not locked).
    assert (jan[ana.pk].earnings_cents, jan[ben.pk].earnings_cents) == (31_000, 310)  # Ben: not 300 + 310 again
    assert "Dec 1 - Dec 31, 2026: $310.00" in body(ana, "January 2027")
    assert "Dec 1 - Dec 31, 2026: $3.10" in body(ben, "January 2027")

    locked(january, utc(2027, 3, 1, 0, 0))  # the first instant of March
    feb = report_on(utc(2027, 3, 1, 9, 0))
    assert (feb[ana.pk].earnings_cents, feb[ben.pk].earnings_cents) == (0, 0)
    assert "No royalty period was finalised for you since your previous report" in body(ana, "February 2027")
    mar = report_on(utc(2027, 4, 1, 9, 0))
    assert (mar[ana.pk].earnings_cents, mar[ben.pk].earnings_cents) == (31_000, 310)
    assert "Jan 1 - Jan 31, 2027: $310.00" in body(ana, "March 2027")

    # Again, and a past month asked for by hand: nothing is counted twice.
    assert report_on(utc(2027, 4, 1, 10, 0)) == mar
    oct_reports = report_on(utc(2027, 4, 1, 10, 0), month="2026-10")
    assert {r.earnings_cents for r in oct_reports.values()} == {0}
    counted = list(ReportedEarning.objects.values_list("statement_id", flat=True))
    statements = RoyaltyStatement.objects.filter(royalty_run__in=[november, december, january])
    assert sorted(counted) == sorted(statements.values_list("pk", flat=True))  # each once
    for who, earned in ((ana, 92_000), (ben, 920)):
        reports = CreatorMonthlyReport.objects.filter(creator=who)
        assert sum(r.earnings_cents for r in reports) == earned


def test_monthly_report_renders_with_the_job_context(settings):
    settings.APP_URL = "https://app.example.com"
    ana = creator("Ana <3", created_at=utc(2025, 1, 1))
    report = CreatorMonthlyReport.objects.create(
        creator=ana,
        month=date(2026, 12, 1),
        earnings_cents=123_456,
        new_licenses=2,
        active_licenses=7,
        profile_views=41,
    )
    staff = make_user(is_staff=True)
    for start, end, cents in (
        (utc(2026, 11, 1), utc(2026, 11, 30), 100_000),
        (utc(2026, 10, 15), utc(2027, 1, 14), 23_456),
    ):
        run = RoyaltyRun.objects.create(period_start=start, period_end=end, status="LOCKED", created_by=staff)
        statement = RoyaltyStatement.objects.create(royalty_run=run, creator=ana, total_earnings_cents=cents)
        ReportedEarning.objects.create(report=report, statement=statement, earnings_cents=cents)
    subject, text, html = render_email("creator_monthly_report", report_context(report))
    assert subject == "ANA <3 - December 2026 Performance Report"
    assert text.startswith("Hello Ana <3,") and "in December 2026" in text
    assert "Earnings:          $1,234.56" in text and "Active licenses:   7" in text
    # One line per run, oldest period first; a period across a year end names both years.
    assert "  Oct 15, 2026 - Jan 14, 2027: $234.56\n  Nov 1 - Nov 30, 2026: $1,000.00\n" in text
    assert "Your analytics: https://app.example.com/dashboard/analytics" in text
    assert "Ana &lt;3" in html and "<strong>$1,234.56</strong>" in html and "<strong>41</strong>" in html
    assert "<td>Nov 1 - Nov 30, 2026</td>" in html and "$1,000.00" in html
    assert 'href="https://app.example.com/dashboard/analytics"' in html


def test_a_report_without_a_locked_run_says_so(settings):
    ana = creator("Ana", created_at=utc(2025, 1, 1))
    report = CreatorMonthlyReport.objects.create(creator=ana, month=date(2026, 12, 1))
    _, text, html = render_email("creator_monthly_report", report_context(report))
    assert "Earnings:          $0.00" in text
    assert "No royalty period was finalised for you since your previous report" in text
    assert "No royalty period was finalised" in html and "by period" not in text


# --- fan-out: batches, a crash, a race ---------------------------------------------------


@pytest.fixture
def flaky(settings):
    yield use_flaky_backend(settings, batch_size=3)
    FlakyBackend.reset()


def many_creators(count: int) -> list[Creator]:
    return [creator(f"C{i}", email=f"c{i}@example.com", created_at=utc(2025, 1, 1)) for i in range(count)]


def test_monthly_reports_one_connection_per_batch(flaky):
    many_creators(7)
    with at(NEW_YEAR):
        assert send_monthly_reports()["sent"] == 7
    assert flaky.opens == 3  # batches of 3, 3 and 1


def test_a_retry_after_the_mail_server_went_away_sends_nothing_twice(flaky):
    creators = many_creators(7)
    flaky.refuse_open_after = 1  # the first batch goes out, then the server is unreachable
    with at(NEW_YEAR), pytest.raises(ConnectionRefusedError):
        send_monthly_reports()
    assert len(mail.outbox) == 3
    counts = dict.fromkeys(("SENT", "PENDING"), 0)
    for status in CreatorMonthlyReport.objects.values_list("status", flat=True):
        counts[status] += 1
    assert counts == {"SENT": 3, "PENDING": 4}

    flaky.refuse_open_after = None  # RQ's retry, with the server back
    with at(NEW_YEAR + timedelta(minutes=5)):
        result = send_monthly_reports()
    assert result["prepared"] == 0 and result["sent"] == 4
    assert sorted(a for m in mail.outbox for a in m.to) == sorted(c.user.email for c in creators)


def test_a_report_interrupted_mid_send_is_never_sent_again(flaky):
    many_creators(5)
    flaky.drop_after = 2  # the connection breaks while sending the third message
    with at(NEW_YEAR), pytest.raises(smtplib.SMTPServerDisconnected):
        send_monthly_reports()
    flaky.drop_after = None
    with at(NEW_YEAR + timedelta(minutes=5)):
        assert send_monthly_reports()["sent"] == 2
    statuses = sorted(CreatorMonthlyReport.objects.values_list("status", flat=True))
    assert statuses == ["SENDING", "SENT", "SENT", "SENT", "SENT"]  # one left in doubt
    recipients = [a for m in mail.outbox for a in m.to]
    assert len(recipients) == len(set(recipients)) == 4


def test_refused_report_is_recorded_and_not_retried(settings):
    settings.EMAIL_BACKEND = "tests.email_backends.RefusingBackend"
    creator("Ana", email="refuse-ana@example.com", created_at=utc(2025, 1, 1))
    creator("Ben", email="ben@example.com", created_at=utc(2025, 1, 1))
    with at(NEW_YEAR):
        result = send_monthly_reports()
    assert (result["sent"], result["refused"]) == (1, 1)
    assert sorted(CreatorMonthlyReport.objects.values_list("status", flat=True)) == ["REFUSED", "SENT"]
    with at(NEW_YEAR):
        assert send_monthly_reports()["refused"] == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_reports_at_once_send_each_once(settings):
    settings.EMAIL_BATCH_SIZE = 4
    many_creators(25)
    run_twice_at_once(lambda: monthly_reports(now=NEW_YEAR))
    recipients = [a for m in mail.outbox for a in m.to]
    assert len(recipients) == len(set(recipients)) == 25
    assert CreatorMonthlyReport.objects.filter(status="SENT").count() == 25


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_creator_jobs_run_in_a_real_worker(run_worker):
    ana = creator("Ana", email="ana@example.com", created_at=utc(2020, 1, 1))
    Creator.objects.filter(pk=ana.pk).update(onboarding_status="pending")
    enqueue("creator-monthly-report")
    enqueue("creator-onboarding-reminder")
    run_worker("scheduled")
    report = CreatorMonthlyReport.objects.get(creator=ana)
    assert report.status == "SENT"
    assert report.month == previous_month(date.today().replace(day=1))
    ana.refresh_from_db()
    assert ana.onboarding_reminders_sent == 1
