"""Renewal pricing (spec B §5.C, C2's strategy AUTOMATIC): `price_renewal` is the one pricing
function. The fee stored in an offer, the fee in every email and the fee of the renewal
license are all its result, read back from the stored `RenewalOffer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .eligibility import DAY, Eligibility, whole_days
from .models import License

INFLATION_PERCENT = Decimal(5)
LOYALTY_TIERS = ((5, Decimal(15)), (3, Decimal(10)), (2, Decimal(5)))  # renewals >= n: discount %
EARLY_RENEWAL_DAYS = 60
EARLY_RENEWAL_PERCENT = Decimal(5)
MAX_INCREASE = Decimal("1.25")
MAX_DECREASE = Decimal("0.80")
MIN_FEE_CENTS = 10_000


@dataclass(frozen=True)
class RenewalTerms:
    original_fee_cents: int
    fee_cents: int
    rev_share_bps: int
    start_date: datetime
    end_date: datetime
    duration_days: int
    adjustments: list[dict[str, Any]]  # [{"label", "percent"}] in the order applied
    fee_change_percent: float  # versus the original fee, 2 decimals


def loyalty_percent(renewal_count: int) -> Decimal:
    for at_least, percent in LOYALTY_TIERS:
        if renewal_count >= at_least:
            return percent
    return Decimal(0)


def _percent(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def price_renewal(
    *,
    fee_cents: int,
    rev_share_bps: int,
    start_date: datetime,
    end_date: datetime,
    renewal_count: int,
    days_until_expiry: int,
) -> RenewalTerms:
    """The renewal terms: fee, rev share and dates (the one pricing function).

    Steps on the running amount, in exact decimal arithmetic, rounded once at the end to
    whole cents with banker's rounding (half to even):
    1. +5 % inflation (strategy AUTOMATIC);
    2. loyalty discount by renewal count: >= 5: -15 %, >= 3: -10 %, >= 2: -5 %;
    3. early renewal: -5 % when more than 60 days remain;
    4. caps: at most +25 %, at least -20 % of the original fee;
    5. minimum fee of 10,000 cents ($100), applied only when the original fee is at
       least that much (a cheaper license is not raised past the +25 % cap);
    A fee of 0 renews at 0 with no adjustments (nothing to divide, nothing to adjust).
    The rev share is unchanged, clamped to 0..10000 bps. Dates: the day after the end
    date, for the same length in whole days.
    """
    days = max(1, whole_days(start_date, end_date))
    start = end_date + DAY
    rev_share = min(10_000, max(0, int(rev_share_bps)))
    original = Decimal(max(0, int(fee_cents)))
    adjustments: list[dict[str, Any]] = []
    amount = original
    if original > 0:

        def apply(label: str, percent: Decimal) -> None:
            nonlocal amount
            amount = amount * (100 + percent) / 100
            adjustments.append({"label": label, "percent": _percent(percent)})

        def set_to(label: str, target: Decimal) -> None:
            nonlocal amount
            adjustments.append({"label": label, "percent": _percent((target - amount) * 100 / amount)})
            amount = target

        apply("Inflation adjustment", INFLATION_PERCENT)
        loyalty = loyalty_percent(renewal_count)
        if loyalty:
            apply(f"Loyalty discount ({renewal_count} renewals)", -loyalty)
        if days_until_expiry > EARLY_RENEWAL_DAYS:
            apply("Early renewal discount", -EARLY_RENEWAL_PERCENT)
        if amount > original * MAX_INCREASE:
            set_to("Cap: at most +25%", original * MAX_INCREASE)
        elif amount < original * MAX_DECREASE:
            set_to("Cap: at most -20%", original * MAX_DECREASE)
        if original >= MIN_FEE_CENTS and amount < MIN_FEE_CENTS:
            set_to("Minimum fee ($100.00)", Decimal(MIN_FEE_CENTS))
    fee = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    change = (Decimal(fee) - original) * 100 / original if original else Decimal(0)
    return RenewalTerms(
        original_fee_cents=int(original),
        fee_cents=fee,
        rev_share_bps=rev_share,
        start_date=start,
        end_date=start + timedelta(days=days),
        duration_days=days,
        adjustments=adjustments,
        fee_change_percent=_percent(change),
    )


def terms_for(license: License, eligibility: Eligibility) -> RenewalTerms:
    return price_renewal(
        fee_cents=license.fee_cents,
        rev_share_bps=license.rev_share_bps,
        start_date=license.start_date,
        end_date=license.end_date,
        renewal_count=eligibility.facts["renewal_count"],
        days_until_expiry=eligibility.facts["days_until_expiry"],
    )
