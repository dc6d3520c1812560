"""Creators' monthly reports (spec B §3 as settled by DECISIONS.md and issue 21), sent on the
1st of the month 09:00 by creator-monthly-report (`jobs/handlers/creators.py`).

Each approved creator's figures for the previous calendar month (UTC) are computed for all
creators at once, in one transaction of three statements, into `CreatorMonthlyReport`
(one row per creator and month, the once-only marker), then emailed in batches over one
connection each. A past month can be given again ("YYYY-MM"): only creators without its
report get one.

New licences and profile views are the month's. Earnings are not "the runs whose period
ends in the month": a month's royalty run can only be created once the month is over, so
at 09:00 on the 1st it never exists yet, and the frozen report would say $0 for ever.
Instead a report counts the royalty runs LOCKED (final) since the creator's previous
report, that is, locked before its month ended and counted by no earlier report, each
labelled with the period it covers: every locked run reaches exactly one report
(`ReportedEarning`, unique per statement), typically the report of the month after the
run's own period (December's run, locked in early January, is in January's report, sent
on February 1st). Each statement counts what its run earned the creator (a HELD balance
counts in its own run, not again in the run that carries it).

Sent through `yesgoddess.notifications.fanout`: the report rows are marked before a batch is
sent, so a retry after a crash sends nothing twice.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Prefetch
from django.utils import timezone

from yesgoddess.analytics.models import Event
from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.money import dollars
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.licensing.models import IN_FORCE, License
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.services import build_email
from yesgoddess.royalties.models import RoyaltyRun, RoyaltyStatement

from .contact import can_email, stage_name
from .models import Creator, CreatorMonthlyReport, CreatorVerificationStatus, ReportedEarning, ReportStatus

PROFILE_VIEW_EVENT = "creator_profile_viewed"


class InvalidReportMonth(InvalidInput):
    """A month argument that is not "YYYY-MM", or a month that is not over yet."""


def month_start(moment: datetime | date) -> date:
    return date(moment.year, moment.month, 1)


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def previous_month(first: date) -> date:
    return date(first.year - (first.month == 1), (first.month - 2) % 12 + 1, 1)


def report_month(month: str | None, now: datetime) -> date:
    """The month to report on: the given "YYYY-MM" (must be over), else the previous one."""
    current = month_start(now.astimezone(UTC))
    if month is None:
        return previous_month(current)
    match = re.fullmatch(r"(\d{4})-(\d{2})", month) if isinstance(month, str) else None
    if match is None or not 1 <= int(match[2]) <= 12:
        raise InvalidReportMonth(f"month must be YYYY-MM, got {month!r}.")
    first = date(int(match[1]), int(match[2]), 1)
    if first >= current:
        raise InvalidReportMonth(f"Month {month} is not over yet; a report covers a past month.")
    return first


def as_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# All creators' figures for the month, one GROUP BY per figure, in one statement. The
# earnings are filled in by the two statements that follow (COUNT_EARNINGS_SQL).
PREPARE_SQL = """
INSERT INTO {reports} (creator_id, month, earnings_cents, new_licenses, active_licenses, profile_views,
                       status, created_at)
SELECT c.id, %(month)s, 0, COALESCE(n.licenses, 0), COALESCE(a.licenses, 0),
       COALESCE(v.views, 0), %(pending)s, %(now)s
FROM {creators} c
LEFT JOIN (
    SELECT o.creator_id, COUNT(DISTINCT l.id) AS licenses
    FROM {licenses} l JOIN {ownerships} o ON o.ip_asset_id = l.ip_asset_id
    WHERE l.created_at >= %(start)s AND l.created_at < %(end)s AND l.deleted_at IS NULL
      AND o.start_date <= l.created_at AND (o.end_date IS NULL OR o.end_date > l.created_at)
    GROUP BY o.creator_id
) n ON n.creator_id = c.id
LEFT JOIN (
    SELECT o.creator_id, COUNT(DISTINCT l.id) AS licenses
    FROM {licenses} l JOIN {ownerships} o ON o.ip_asset_id = l.ip_asset_id
    WHERE l.status = ANY(%(in_force)s) AND l.deleted_at IS NULL
      AND o.start_date <= %(now)s AND (o.end_date IS NULL OR o.end_date > %(now)s)
    GROUP BY o.creator_id
) a ON a.creator_id = c.id
LEFT JOIN (
    SELECT creator_id, COUNT(*) AS views
    FROM {events}
    WHERE event_type = %(view_event)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
      AND creator_id IS NOT NULL
    GROUP BY creator_id
) v ON v.creator_id = c.id
WHERE c.verification_status = %(approved)s AND c.deleted_at IS NULL AND c.created_at < %(end)s
ON CONFLICT (creator_id, month) DO NOTHING
RETURNING id
"""

# Earnings (see the module doc): every statement of a run LOCKED before the month ended
# that no report has counted yet goes to the creator's new report, at what that run
# earned (its total less the balances it carried in, counted in their own runs). The
# unique statement_id makes each statement reach one report, even with two months being
# prepared at once. Then each new report's total is the sum of what it counted.
CLAIM_EARNINGS_SQL = """
INSERT INTO {earnings} (report_id, statement_id, earnings_cents)
SELECT rep.id, s.id, s.total_earnings_cents - COALESCE((s.metadata ->> 'carriedCents')::bigint, 0)
FROM {reports} rep
JOIN {statements} s ON s.creator_id = rep.creator_id
JOIN {runs} r ON r.id = s.royalty_run_id
WHERE rep.id = ANY(%(reports)s) AND r.status = %(locked)s AND COALESCE(r.locked_at, r.updated_at) < %(end)s
  AND NOT EXISTS (SELECT 1 FROM {earnings} x WHERE x.statement_id = s.id)
ON CONFLICT (statement_id) DO NOTHING
"""
COUNT_EARNINGS_SQL = """
UPDATE {reports} rep SET earnings_cents = e.cents
FROM (SELECT report_id, SUM(earnings_cents) AS cents FROM {earnings} WHERE report_id = ANY(%(reports)s)
      GROUP BY report_id) e
WHERE rep.id = e.report_id
"""


def _tables() -> dict[str, str]:
    return {
        "reports": CreatorMonthlyReport._meta.db_table,
        "earnings": ReportedEarning._meta.db_table,
        "creators": Creator._meta.db_table,
        "statements": RoyaltyStatement._meta.db_table,
        "runs": RoyaltyRun._meta.db_table,
        "licenses": License._meta.db_table,
        "ownerships": IpOwnership._meta.db_table,
        "events": Event._meta.db_table,
    }


def prepare_reports(month: date, now: datetime) -> int:
    """Store the figures of every approved creator without a report for `month` (three
    statements in one transaction, whatever the number of creators); return how many
    reports were added."""
    tables = _tables()
    params = {
        "month": month,
        "start": as_utc(month),
        "end": as_utc(next_month(month)),
        "now": now,
        "pending": ReportStatus.PENDING,
        "approved": CreatorVerificationStatus.APPROVED,
        "locked": RoyaltyRun.Status.LOCKED,
        "in_force": list(IN_FORCE),
        "view_event": PROFILE_VIEW_EVENT,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(PREPARE_SQL.format(**tables), params)
        params["reports"] = [row[0] for row in cursor.fetchall()]
        if params["reports"]:
            cursor.execute(CLAIM_EARNINGS_SQL.format(**tables), params)
            cursor.execute(COUNT_EARNINGS_SQL.format(**tables), params)
    return len(params["reports"])


def period_label(start: datetime, end: datetime) -> str:
    """A run's period as a creator reads it: "Dec 1 - Dec 31, 2026" (UTC days)."""
    first, last = timezone.localdate(start, UTC), timezone.localdate(end, UTC)
    if first.year != last.year:
        return f"{first:%b %-d, %Y} - {last:%b %-d, %Y}"
    return f"{first:%b %-d} - {last:%b %-d, %Y}"


def earnings_by_period(report: CreatorMonthlyReport) -> list[dict[str, str]]:
    """What the report counted, one line per royalty run, oldest period first (read from
    `report.earnings`, prefetched with the statement's run by `send_reports`)."""
    counted = sorted(report.earnings.all(), key=lambda e: (e.statement.royalty_run.period_start, e.statement_id))
    return [
        {
            "period": period_label(e.statement.royalty_run.period_start, e.statement.royalty_run.period_end),
            "earnings": dollars(e.earnings_cents),
        }
        for e in counted
    ]


def report_context(report: CreatorMonthlyReport) -> dict[str, Any]:
    return {
        "stage_name": stage_name(report.creator),
        "month_label": f"{report.month:%B %Y}",
        "earnings": dollars(report.earnings_cents),
        "earnings_periods": earnings_by_period(report),
        "new_licenses": report.new_licenses,
        "active_licenses": report.active_licenses,
        "profile_views": report.profile_views,
        "analytics_url": f"{settings.APP_URL}/dashboard/analytics",
        "earnings_url": f"{settings.APP_URL}/dashboard/earnings",
    }


def send_reports(month: date, now: datetime, *, progress: Progress = no_progress) -> dict[str, int]:
    """Email every pending report of `month`, batch by batch (status PENDING -> SENDING ->
    SENT / REFUSED, or back to PENDING when never attempted)."""
    counts = {"sent": 0, "refused": 0, "unsent": 0, "in_doubt": 0, "no_address": 0}
    counted = Prefetch("earnings", queryset=ReportedEarning.objects.select_related("statement__royalty_run"))
    due = (
        CreatorMonthlyReport.objects.filter(month=month, status=ReportStatus.PENDING)
        .select_related("creator__user")
        .prefetch_related(counted)
    )
    total = due.count()
    processed = 0

    def claim(rows: list[CreatorMonthlyReport]) -> list[CreatorMonthlyReport]:
        nonlocal processed
        sending = [r for r in rows if can_email(r.creator)]
        silent = [r.pk for r in rows if not can_email(r.creator)]
        CreatorMonthlyReport.objects.filter(pk__in=[r.pk for r in sending]).update(status=ReportStatus.SENDING)
        if silent:
            CreatorMonthlyReport.objects.filter(pk__in=silent).update(status=ReportStatus.NO_ADDRESS)
        counts["no_address"] += len(silent)
        processed += len(rows)
        return sending

    for batch in claimed_batches(due, claim):
        result = deliver(
            [build_email("creator_monthly_report", r.creator.user.email, report_context(r)) for r in batch]
        )
        if result.sent:
            CreatorMonthlyReport.objects.filter(pk__in=[batch[i].pk for i in result.sent]).update(
                status=ReportStatus.SENT, sent_at=now
            )
        if result.refused:
            CreatorMonthlyReport.objects.filter(pk__in=[batch[i].pk for i in result.refused]).update(
                status=ReportStatus.REFUSED
            )
        if result.unsent:  # never attempted: the retry sends them
            CreatorMonthlyReport.objects.filter(pk__in=[batch[i].pk for i in result.unsent]).update(
                status=ReportStatus.PENDING
            )
        result.tally(counts)
        progress(processed, total, "reports")
        result.raise_error()
    return counts


def monthly_reports(
    month: str | None = None, now: datetime | None = None, *, progress: Progress = no_progress
) -> dict[str, Any]:
    """Last month's figures (or `month`'s, "YYYY-MM", a past month) to every approved
    creator, once each. Raises InvalidReportMonth for a bad or unfinished month."""
    now = now or timezone.now()
    first = report_month(month, now)
    prepared = prepare_reports(first, now)
    return {"month": f"{first:%Y-%m}", "prepared": prepared, **send_reports(first, now, progress=progress)}
