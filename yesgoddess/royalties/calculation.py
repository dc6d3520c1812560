"""Royalty calculation (spec C §2.1 as settled by DECISIONS.md "Royalties").

All money is integer cents. For each license in force during the run's period:

- flat part: the license fee spread over its term, day by day. The part of a period is
  round(fee x days up to the period's end / term) - round(fee x days before its start /
  term), so the parts of consecutive runs add up to the fee exactly (the original
  counted the whole fee again in every period a license covered);
- usage part: usage revenue of the period (daily aggregates) x revShareBps / 10,000
  (the original used revShareBps only as an on/off switch);
- split between the period's ownership rows by largest remainder, per row (two rows of
  one creator are two lines), shares summing to exactly 10,000 bps or the run fails
  naming the assets, with nothing written.

Per creator: one statement = this run's lines + every HELD statement of theirs carried
forward as one CARRYOVER line each (those statements become CARRIED in the same
transaction, so a balance is carried exactly once); below the payout threshold
(custom, else VIP, else default) the statement is HELD with a THRESHOLD_NOTE line.

The work is a constant number of queries whatever the number of licenses.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.models import AuditEvent
from yesgoddess.core.money import dollars
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.creators.models import Creator
from yesgoddess.licensing.models import License, LicenseStatus, LicenseUsageDailyAggregate

from .models import RoyaltyLine, RoyaltyRun, RoyaltyStatement

log = logging.getLogger(__name__)

FULL_SHARE_BPS = 10_000
# Licenses that were in force at some point of a past period: one that has since expired
# or been renewed still earned its days (the original took ACTIVE only, so a license that
# expired before the run was calculated paid nothing for the days it was in force).
EARNING_STATUSES = (LicenseStatus.ACTIVE, LicenseStatus.EXPIRING_SOON, LicenseStatus.EXPIRED, LicenseStatus.RENEWED)


class OwnershipSplitError(InvalidInput):
    """Ownership shares of an asset with revenue do not sum to 10,000 bps."""


def round_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, ties to even (banker's)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def split_largest_remainder(amount: int, shares_bps: Sequence[int]) -> list[int]:
    """Split `amount` cents by shares summing to 10,000: floors, then one cent each to the
    largest remainders (ties: the earlier share). The parts always sum to `amount`."""
    if sum(shares_bps) != FULL_SHARE_BPS:
        raise ValueError(f"shares sum to {sum(shares_bps)} bps, not {FULL_SHARE_BPS}")
    exact = [amount * share for share in shares_bps]  # in 1/10,000 cents
    parts = [value // FULL_SHARE_BPS for value in exact]
    leftover = amount - sum(parts)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(exact[i] % FULL_SHARE_BPS), i))
    for index in by_remainder[:leftover]:
        parts[index] += 1
    return parts


def flat_fee_part(fee_cents: int, term_start: date, term_end: date, period_start: date, period_end: date) -> int:
    """The fee's share of the period: the license's days inside it, out of its term."""
    term_days = (term_end - term_start).days + 1
    if term_days <= 0 or fee_cents <= 0:
        return 0
    through_end = min(max((period_end - term_start).days + 1, 0), term_days)
    before_start = min(max((period_start - term_start).days, 0), term_days)
    if through_end <= before_start:
        return 0
    return round_half_even(fee_cents * through_end, term_days) - round_half_even(fee_cents * before_start, term_days)


def days_in_period(term_start: date, term_end: date, period_start: date, period_end: date) -> int:
    return max((min(term_end, period_end) - max(term_start, period_start)).days + 1, 0)


def payout_threshold(creator: Creator) -> int:
    if creator.custom_minimum_payout_cents is not None:
        return creator.custom_minimum_payout_cents
    if creator.vip_status:
        return settings.VIP_MINIMUM_PAYOUT_THRESHOLD_CENTS
    return settings.MINIMUM_PAYOUT_THRESHOLD_CENTS


@dataclass
class CreatorTotals:
    lines: list[RoyaltyLine] = field(default_factory=list)
    earned_cents: int = 0


@dataclass
class Calculation:
    run: RoyaltyRun
    licenses: int = 0
    revenue_cents: int = 0
    royalties_cents: int = 0
    per_creator: dict[int, CreatorTotals] = field(default_factory=lambda: defaultdict(CreatorTotals))


def _dates(run: RoyaltyRun) -> tuple[date, date]:
    return timezone.localdate(run.period_start), timezone.localdate(run.period_end)


def earning_licenses(run: RoyaltyRun) -> list[dict[str, Any]]:
    return list(
        License.objects.filter(
            start_date__lte=run.period_end,
            end_date__gte=run.period_start,
            status__in=EARNING_STATUSES,
            deleted_at__isnull=True,
        )
        .order_by("pk")
        .values("pk", "ip_asset_id", "fee_cents", "rev_share_bps", "start_date", "end_date", "license_type")
    )


def usage_revenue(run: RoyaltyRun, license_ids: Sequence[int]) -> dict[int, int]:
    """Usage revenue of the period per license with a revenue share (one GROUP BY)."""
    if not settings.ROYALTY_USAGE_REVENUE or not license_ids:
        return {}
    start, end = _dates(run)
    rows = (
        LicenseUsageDailyAggregate.objects.filter(license_id__in=license_ids, date__gte=start, date__lte=end)
        .values("license_id")
        .annotate(total=Sum("total_revenue_cents"))
    )
    return {row["license_id"]: int(row["total"] or 0) for row in rows}


def period_ownerships(run: RoyaltyRun, asset_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    rows = (
        IpOwnership.objects.filter(ip_asset_id__in=asset_ids, start_date__lte=run.period_end)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=run.period_start))
        .order_by("ip_asset_id", "pk")
        .values("pk", "ip_asset_id", "creator_id", "share_bps")
    )
    by_asset: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_asset[row["ip_asset_id"]].append(row)
    return by_asset


def compute_lines(run: RoyaltyRun) -> Calculation:
    """Every LICENSE line of the run, in memory (nothing written)."""
    calc = Calculation(run)
    period_start, period_end = _dates(run)
    licenses = earning_licenses(run)
    calc.licenses = len(licenses)
    usage = usage_revenue(run, [lic["pk"] for lic in licenses if lic["rev_share_bps"] > 0])
    earning: list[tuple[dict[str, Any], int, int, int]] = []
    for lic in licenses:
        term_start, term_end = timezone.localdate(lic["start_date"]), timezone.localdate(lic["end_date"])
        flat = flat_fee_part(lic["fee_cents"], term_start, term_end, period_start, period_end)
        gross_usage = usage.get(lic["pk"], 0)
        usage_share = round_half_even(gross_usage * lic["rev_share_bps"], FULL_SHARE_BPS)
        if flat + usage_share > 0:
            earning.append((lic, flat, gross_usage, usage_share))
    owners = period_ownerships(run, {lic["ip_asset_id"] for lic, *_ in earning})
    bad = sorted(
        {
            lic["ip_asset_id"]: sum(o["share_bps"] for o in owners.get(lic["ip_asset_id"], []))
            for lic, *_ in earning
            if sum(o["share_bps"] for o in owners.get(lic["ip_asset_id"], [])) != FULL_SHARE_BPS
        }.items()
    )
    if bad:
        listed = "; ".join(f"asset {asset_id} sums to {total} bps" for asset_id, total in bad)
        raise OwnershipSplitError(f"Ownership shares must sum to 10000 bps for every asset with revenue: {listed}.")
    for lic, flat, gross_usage, usage_share in earning:
        revenue = flat + usage_share
        rows = owners[lic["ip_asset_id"]]
        parts = split_largest_remainder(revenue, [row["share_bps"] for row in rows])
        calc.revenue_cents += revenue
        term_start, term_end = timezone.localdate(lic["start_date"]), timezone.localdate(lic["end_date"])
        for row, cents in zip(rows, parts, strict=True):
            totals = calc.per_creator[row["creator_id"]]
            totals.earned_cents += cents
            calc.royalties_cents += cents
            totals.lines.append(
                RoyaltyLine(
                    line_type=RoyaltyLine.LineType.LICENSE,
                    license_id=lic["pk"],
                    ip_asset_id=lic["ip_asset_id"],
                    revenue_cents=revenue,
                    share_bps=row["share_bps"],
                    calculated_royalty_cents=cents,
                    period_start=run.period_start,
                    period_end=run.period_end,
                    metadata={
                        "ownershipId": row["pk"],
                        "flatFeeCents": flat,
                        "usageRevenueCents": gross_usage,
                        "usageShareCents": usage_share,
                        "revShareBps": lic["rev_share_bps"],
                        "daysActive": days_in_period(term_start, term_end, period_start, period_end),
                        "termDays": (term_end - term_start).days + 1,
                        "licenseType": lic["license_type"],
                    },
                )
            )
    return calc


def write_statements(calc: Calculation) -> int:
    """Statements, carry-overs and threshold notes; returns the number of statements."""
    run = calc.run
    creator_ids = list(calc.per_creator)
    creators = Creator.objects.in_bulk(creator_ids)
    held = defaultdict(list)
    # Locked: a balance is carried by one run only, even with two runs calculating at once.
    for statement in (
        RoyaltyStatement.objects.select_for_update()
        .filter(creator_id__in=creator_ids, status=RoyaltyStatement.Status.HELD)
        .exclude(royalty_run=run)
        .order_by("pk")
    ):
        held[statement.creator_id].append(statement)
    statements, lines_of = [], []
    for creator_id in creator_ids:
        totals = calc.per_creator[creator_id]
        carried = sum(s.total_earnings_cents for s in held[creator_id])
        total = totals.earned_cents + carried
        threshold = payout_threshold(creators[creator_id])
        payable = total >= threshold
        statement = RoyaltyStatement(
            royalty_run=run,
            creator_id=creator_id,
            total_earnings_cents=total,
            net_payable_cents=total if payable else 0,
            status=RoyaltyStatement.Status.PENDING if payable else RoyaltyStatement.Status.HELD,
            metadata={"earnedThisRunCents": totals.earned_cents, "carriedCents": carried, "thresholdCents": threshold},
        )
        lines = list(totals.lines)
        for old in held[creator_id]:
            lines.append(
                RoyaltyLine(
                    line_type=RoyaltyLine.LineType.CARRYOVER,
                    calculated_royalty_cents=old.total_earnings_cents,
                    period_start=run.period_start,
                    period_end=run.period_start,
                    metadata={"carriedStatementId": old.pk, "fromRunId": old.royalty_run_id},
                )
            )
        if not payable:
            lines.append(
                RoyaltyLine(
                    line_type=RoyaltyLine.LineType.THRESHOLD_NOTE,
                    period_start=run.period_start,
                    period_end=run.period_end,
                    metadata={
                        "description": f"Total earnings below the minimum payout of {dollars(threshold)}. "
                        "The balance carries forward to the next period.",
                        "minimumThresholdCents": threshold,
                        "accumulatedBalanceCents": total,
                    },
                )
            )
        statements.append(statement)
        lines_of.append(lines)
    RoyaltyStatement.objects.bulk_create(statements)
    for statement, lines in zip(statements, lines_of, strict=True):
        for line in lines:
            line.royalty_statement = statement
    RoyaltyLine.objects.bulk_create([line for lines in lines_of for line in lines], batch_size=5000)
    carried_ids = [s.pk for group in held.values() for s in group]
    RoyaltyStatement.objects.filter(pk__in=carried_ids).update(status=RoyaltyStatement.Status.CARRIED)
    return len(statements)


def append_note(run: RoyaltyRun, text: str) -> str:
    return f"{run.notes}\n\n{text}" if run.notes else text


def finish(calc: Calculation, statements: int, actor_id: int | None, now: datetime) -> None:
    run = calc.run
    run.status = RoyaltyRun.Status.CALCULATED
    run.total_revenue_cents = calc.revenue_cents
    run.total_royalties_cents = calc.royalties_cents
    run.processed_at = now
    run.notes = append_note(
        run,
        f"Calculation completed: {statements} creators, {calc.licenses} licenses, "
        f"{dollars(calc.revenue_cents)} revenue, {dollars(calc.royalties_cents)} royalties",
    )
    run.save(
        update_fields=["status", "total_revenue_cents", "total_royalties_cents", "processed_at", "notes", "updated_at"]
    )
    AuditEvent.objects.create(
        action="royalty.run.calculated",
        entity_type="royalty_run",
        entity_id=str(run.pk),
        actor_id=actor_id,
        before={"status": RoyaltyRun.Status.CALCULATING},
        after={"status": run.status, "totalRevenueCents": calc.revenue_cents, "statements": statements},
    )


def calculate(run_id: int, actor_id: int | None, progress: Progress = no_progress) -> dict[str, int]:
    """Calculate one run in one transaction (the caller holds the run's Redis lock:
    `services.calculate_once`)."""
    with transaction.atomic():
        run = RoyaltyRun.objects.select_for_update().get(pk=run_id)
        progress(1, 4, "licenses and usage")
        calc = compute_lines(run)
        progress(2, 4, "statements")
        statements = write_statements(calc)
        progress(3, 4, "totals")
        finish(calc, statements, actor_id, timezone.now())
    progress(4, 4, "done")
    return {
        "run_id": run_id,
        "licenses": calc.licenses,
        "statements": statements,
        "revenue_cents": calc.revenue_cents,
        "royalties_cents": calc.royalties_cents,
    }
