"""License renewals (spec B §5.B-5.D, §5.3 phase 4, DECISIONS "Licenses"), defects fixed.

- `check_eligibility_many` merges the spec's two eligibility checks (B1 and B2) into one:
  blocking reasons, warnings and facts, for a batch of licenses in a constant number of
  queries. Conflicts in the proposed period (B3, `find_conflicts`) BLOCK, as in B2: an
  offer is never made, and never accepted, for terms that conflict with another license.
- `price_renewal` is the one pricing function (C2's AUTOMATIC strategy): the fee stored
  in the offer, the fee in every email and the fee of the renewal license are all its
  result, read back from the stored `RenewalOffer`.
- `create_offer` makes (or returns) the license's one PENDING offer; `accept_offer`
  turns it into the renewal license (PENDING_APPROVAL: the creators must approve).
- `auto_renew_due_licenses` is license-management's auto-renewal step (DECISIONS: it
  belongs there, not in the workflow); the system accepts on behalf of the brand.
- The job `license-renewal-workflow` (`jobs.license_renewals`) runs the phases below:
  `expire_stale_offers`, `create_due_offers`, `send_offer_emails`, `send_final_notices`,
  `send_renewal_confirmations`, `record_renewal_snapshot`.

Once-only sends claim their license rows FOR UPDATE SKIP LOCKED in batches of
EMAIL_BATCH_SIZE and set the marker in the same transaction (two workers never send one
message twice). Logs and events carry ids only.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Exists, F, Min, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from jobs.api import enqueue
from jobs.sweeps import locked_batches
from yesgoddess.analytics.models import Event, system_event
from yesgoddess.assets.models import AssetStatus, IpOwnership
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email, notify, send_each

from .metadata import merge_metadata
from .models import IN_FORCE, License, LicensePerformanceSnapshot, LicenseStatus, LicenseType, RenewalOffer

log = logging.getLogger(__name__)

S = LicenseStatus
DAY = timedelta(days=1)

# --- rules (spec B §5.B, §5.C) ---------------------------------------------------------
WINDOW_DAYS = 90  # the renewal window opens 90 days before the end date
LATE_DAYS = 30  # ... and closes 30 days after it
OFFER_VALID_DAYS = 30  # an offer can be accepted for 30 days
AUTO_RENEW_DAYS = 60  # auto-renewal happens within 60 days of the end date
FINAL_NOTICE_DAYS = 7  # the final notice goes out at 7 days (+/- 1)
NINETY_DAY_NOTICE_DAYS = 89  # the expiry monitor's 90-day notice covers ends from start of day (now + 89 days)
RENEWABLE = (S.ACTIVE, S.EXPIRING_SOON, S.EXPIRED)
# Licenses that hold rights on the asset, or are about to: the conflict check looks at these.
# Drafts are not commitments (a stale draft of another brand must not block a renewal);
# the spec's B3 included them, we do not.
CONFLICTING = (S.ACTIVE, S.EXPIRING_SOON, S.PENDING_APPROVAL, S.PENDING_SIGNATURE)
# A renewal that happened: its child is one of these (analytics).
RENEWED_CHILD = (S.PENDING_APPROVAL, S.PENDING_SIGNATURE, S.ACTIVE, S.EXPIRING_SOON)
# Licenses that count towards a brand's renewal history on an asset (loyalty).
HISTORY = (S.ACTIVE, S.EXPIRING_SOON, S.EXPIRED, S.RENEWED)
MEDIA = ("digital", "print", "broadcast", "ooh")
PLACEMENTS = ("social", "website", "email", "paid_ads", "packaging")
MAX_REV_SHARE_BPS = 8000  # cumulative rev share above this is a conflict
GLOBAL = "GLOBAL"

# --- pricing (C2, strategy AUTOMATIC) ----------------------------------------------------
INFLATION_PERCENT = Decimal(5)
LOYALTY_TIERS = ((5, Decimal(15)), (3, Decimal(10)), (2, Decimal(5)))  # renewals >= n: discount %
EARLY_RENEWAL_DAYS = 60
EARLY_RENEWAL_PERCENT = Decimal(5)
MAX_INCREASE = Decimal("1.25")
MAX_DECREASE = Decimal("0.80")
MIN_FEE_CENTS = 10_000

# Related rows the rules read: load licenses with `.select_related(*RELATED)`.
RELATED = ("ip_asset", "brand__user")
CONFIRMATION_JOB = "license-renewal-workflow.confirmation"
CONFIRMATION_MARKER = "renewalConfirmationSentAt"  # in the renewal license's metadata
CONFIRMATION_CATCH_UP = timedelta(days=7)

# Blocking reasons and warnings: stable codes (logged, stored) and what they mean.
REASONS = {
    "OUTSIDE_WINDOW": "The renewal window opens 90 days before the license ends.",
    "ENDED_TOO_LONG_AGO": "The license ended more than 30 days ago.",
    "STATUS_NOT_RENEWABLE": "Only ACTIVE, EXPIRING_SOON or EXPIRED licenses can be renewed.",
    "RENEWAL_EXISTS": "The license already has a renewal.",
    "LICENSE_DELETED": "The license was deleted.",
    "ASSET_DELETED": "The licensed asset was deleted.",
    "BRAND_DELETED": "The brand was deleted.",
    "BRAND_USER_INACTIVE": "The brand's account is inactive.",
    "NO_CURRENT_OWNERSHIP": "The asset has no current owner.",
    "OWNERSHIP_DISPUTED": "The asset's ownership is disputed.",
    "CONFLICT": "The renewal period conflicts with another license on the asset.",
    "ASSET_NOT_PUBLISHED": "The asset is not published.",
    "OWNER_INACTIVE": "An owner's account is inactive.",
}


class RenewalError(Exception):
    """A renewal that cannot happen; `reasons` are codes of REASONS where they apply."""

    def __init__(self, message: str, reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


class RenewalBlocked(RenewalError):
    """The license is not eligible for renewal."""


class OfferNotAcceptable(RenewalError):
    """The offer is no longer pending, has expired, or its terms no longer hold (409)."""


class NotOfferRecipient(RenewalError):
    """The actor may not accept this offer (the API answers 404)."""


# --- time ----------------------------------------------------------------------------------


def whole_days(start: datetime, end: datetime) -> int:
    """Complete 24-hour periods from `start` to `end`, truncated toward zero (spec §0.6)."""
    delta = end - start
    days = abs(delta) // DAY
    return days if delta >= timedelta(0) else -days


def start_of_day(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, tzinfo=UTC)


def proposed_period(license: License) -> tuple[datetime, datetime, int]:
    """(start, end, days) of the renewal: the day after the end, for the same length
    in whole days (at least one)."""
    days = max(1, whole_days(license.start_date, license.end_date))
    start = license.end_date + DAY
    return start, start + timedelta(days=days), days


# --- conflicts (B3) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    license_id: int | None
    reason: str  # EXCLUSIVITY, TERRITORY, MEDIA_OVERLAP, PLACEMENT_OVERLAP, DATE_OVERLAP, HIGH_REV_SHARE
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"licenseId": self.license_id, "reason": self.reason, "detail": self.detail}


def _section(scope: dict, key: str, names: Sequence[str]) -> set[str]:
    value = scope.get(key) if isinstance(scope, dict) else None
    if isinstance(value, dict):
        return {name for name in names if value.get(name)}
    if isinstance(value, list):
        return {name for name in names if name in value}
    return set()


def _territories(scope: dict) -> set[str]:
    """ISO codes of the scope, or {GLOBAL} (no geographic limit means everywhere)."""
    geo = scope.get("geographic") if isinstance(scope, dict) else None
    found = geo.get("territories") if isinstance(geo, dict) else None
    codes = {str(code).upper() for code in found or () if code}
    return {GLOBAL} if not codes or GLOBAL in codes else codes


def _exclusivity(scope: dict) -> tuple[bool, str]:
    """(has an exclusivity clause, its category or "")."""
    clause = scope.get("exclusivity") if isinstance(scope, dict) else None
    if not isinstance(clause, dict) or not clause:
        return False, ""
    return True, str(clause.get("category") or "").strip().lower()


def _share_territory(a: set[str], b: set[str]) -> bool:
    return GLOBAL in a or GLOBAL in b or bool(a & b)


def find_conflicts(
    license: License, start: datetime, end: datetime, others: Iterable[License], *, rev_share_bps: int | None = None
) -> list[Conflict]:
    """Conflicts of `license` renewed over [start, end] with `others` (licenses on the same
    asset that hold or are about to hold rights), de-duplicated by (license, reason).

    - EXCLUSIVITY: either side is an EXCLUSIVE license.
    - TERRITORY: GLOBAL against any territory when either side is EXCLUSIVE; shared
      territories when either side is EXCLUSIVE_TERRITORY.
    - MEDIA_OVERLAP / PLACEMENT_OVERLAP: both enable the same media type / placement, at
      least one side has an exclusivity clause (`scope_json.exclusivity`), the categories
      are equal or one side has none, and the territories meet. Two plain non-exclusive
      grants of the same media are the ordinary case of a shared asset, not a conflict
      (the original flagged them, which would have made every shared asset unrenewable).
    - DATE_OVERLAP: reported for a license only alongside another conflict with it.
    - HIGH_REV_SHARE: the renewal's rev share plus that of the overlapping licenses
      exceeds 8000 bps; reported against each contributing license.
    Competitor blocking is left out: nothing in the data stores competitors.
    """
    own_scope = license.scope_json or {}
    own_type = license.license_type
    own_territories = _territories(own_scope)
    own_clause, own_category = _exclusivity(own_scope)
    own_media, own_places = _section(own_scope, "media", MEDIA), _section(own_scope, "placement", PLACEMENTS)
    found: dict[tuple[int | None, str], Conflict] = {}
    rev_share_total = license.rev_share_bps if rev_share_bps is None else rev_share_bps
    rev_share_sources: list[int] = []

    def add(other_id: int, reason: str, detail: str) -> None:
        found.setdefault((other_id, reason), Conflict(other_id, reason, detail))

    for other in others:
        if other.pk == license.pk or other.parent_license_id == license.pk:
            continue
        if not (other.start_date <= end and other.end_date >= start):
            continue
        scope = other.scope_json or {}
        territories = _territories(scope)
        clause, category = _exclusivity(scope)
        shared_territory = _share_territory(own_territories, territories)
        types = {own_type, other.license_type}
        if LicenseType.EXCLUSIVE in types:
            add(other.pk, "EXCLUSIVITY", "An exclusive license overlaps the renewal period.")
            if GLOBAL in own_territories or GLOBAL in territories:
                add(other.pk, "TERRITORY", "A global grant meets an exclusive license.")
        if LicenseType.EXCLUSIVE_TERRITORY in types and shared_territory:
            add(other.pk, "TERRITORY", "Territories overlap with an exclusive-territory license.")
        if (own_clause or clause) and shared_territory and (own_category == category or not own_clause or not clause):
            media = sorted(own_media & _section(scope, "media", MEDIA))
            if media:
                add(other.pk, "MEDIA_OVERLAP", f"Both grant media under exclusivity: {', '.join(media)}.")
            places = sorted(own_places & _section(scope, "placement", PLACEMENTS))
            if places:
                add(other.pk, "PLACEMENT_OVERLAP", f"Both grant placements under exclusivity: {', '.join(places)}.")
        if other.rev_share_bps > 0:
            rev_share_total += other.rev_share_bps
            rev_share_sources.append(other.pk)
    for other_id in {key[0] for key in found}:
        add(other_id, "DATE_OVERLAP", "The license overlaps the renewal period.")
    if rev_share_total > MAX_REV_SHARE_BPS:
        for other_id in rev_share_sources:
            add(other_id, "HIGH_REV_SHARE", f"Cumulative revenue share {rev_share_total} bps exceeds 8000 bps.")
    return list(found.values())


# --- eligibility (B1 + B2) ------------------------------------------------------------------


@dataclass
class Eligibility:
    license_id: int
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return not self.blocking

    @property
    def suggested_action(self) -> str:
        if not self.eligible:
            return "; ".join(REASONS[code] for code in self.blocking[:2])
        if self.facts.get("has_auto_renew"):
            return "will auto-renew within 60 days of the end date"
        return "generate offer and notify brand"


def _renewal_likelihood(renewals: int) -> str:
    return "HIGH" if renewals >= 2 else "LOW" if renewals == 0 else "MEDIUM"


def check_eligibility_many(
    licenses: Sequence[License],
    now: datetime,
    *,
    check_window: bool = True,
    periods: dict[int, tuple[datetime, datetime]] | None = None,
) -> dict[int, Eligibility]:
    """Eligibility of each license (loaded with `select_related(*RELATED)`), in four queries.

    `check_window=False` skips the 90-days-before / 30-days-after window (an accepted
    offer is bound by its own validity instead). `periods` overrides the proposed period
    (an offer's stored dates).
    """
    if not licenses:
        return {}
    ids = [lic.pk for lic in licenses]
    asset_ids = {lic.ip_asset_id for lic in licenses}
    brand_ids = {lic.brand_id for lic in licenses}
    with_child = set(
        License.objects.filter(parent_license_id__in=ids, deleted_at__isnull=True)
        .exclude(status=S.CANCELED)
        .values_list("parent_license_id", flat=True)
    )
    ownerships: dict[int, list[IpOwnership]] = defaultdict(list)
    for row in IpOwnership.objects.filter(ip_asset_id__in=asset_ids).select_related("creator__user").order_by("pk"):
        ownerships[row.ip_asset_id].append(row)
    history: dict[tuple[int, int], dict[str, Any]] = {}
    rows = (
        License.objects.filter(brand_id__in=brand_ids, ip_asset_id__in=asset_ids, deleted_at__isnull=True)
        .values("brand_id", "ip_asset_id")
        .annotate(
            renewals=Count("pk", filter=Q(parent_license__isnull=False, status__in=HISTORY)), first=Min("created_at")
        )
    )
    for row in rows:
        history[(row["brand_id"], row["ip_asset_id"])] = row
    proposed = {lic.pk: (periods or {}).get(lic.pk) or proposed_period(lic)[:2] for lic in licenses}
    neighbours: dict[int, list[License]] = defaultdict(list)
    others = License.objects.filter(
        ip_asset_id__in=asset_ids,
        deleted_at__isnull=True,
        status__in=CONFLICTING,
        end_date__gte=min(start for start, _ in proposed.values()),
        start_date__lte=max(end for _, end in proposed.values()),
    ).only(
        "pk",
        "ip_asset_id",
        "parent_license_id",
        "license_type",
        "start_date",
        "end_date",
        "scope_json",
        "rev_share_bps",
    )
    for other in others:
        neighbours[other.ip_asset_id].append(other)

    results: dict[int, Eligibility] = {}
    for lic in licenses:
        result = Eligibility(lic.pk)
        block, warn = result.blocking.append, result.warnings.append
        days = whole_days(now, lic.end_date)
        if check_window and days > WINDOW_DAYS:
            block("OUTSIDE_WINDOW")
        if check_window and days < -LATE_DAYS:
            block("ENDED_TOO_LONG_AGO")
        if lic.status not in RENEWABLE:
            block("STATUS_NOT_RENEWABLE")
        if lic.pk in with_child:
            block("RENEWAL_EXISTS")
        if lic.deleted_at is not None:
            block("LICENSE_DELETED")
        asset, brand = lic.ip_asset, lic.brand
        if asset.deleted_at is not None:
            block("ASSET_DELETED")
        if brand.deleted_at is not None:
            block("BRAND_DELETED")
        if not brand.user.is_active or brand.user.deleted_at is not None:
            block("BRAND_USER_INACTIVE")
        rows = ownerships.get(lic.ip_asset_id, [])
        current = [row for row in rows if row.end_date is None or row.end_date > now]
        if not current:
            block("NO_CURRENT_OWNERSHIP")
        disputed = any(row.disputed and row.resolved_at is None for row in rows)
        if disputed:
            block("OWNERSHIP_DISPUTED")
        start, end = proposed[lic.pk]
        result.conflicts = find_conflicts(lic, start, end, neighbours.get(lic.ip_asset_id, []))
        if result.conflicts:
            block("CONFLICT")
        if asset.status != AssetStatus.PUBLISHED:
            warn("ASSET_NOT_PUBLISHED")
        if any(not row.creator.user.is_active or row.creator.user.deleted_at is not None for row in current):
            warn("OWNER_INACTIVE")
        past = history.get((lic.brand_id, lic.ip_asset_id), {})
        renewal_count = past.get("renewals", 0)
        first = past.get("first")
        result.facts = {
            "days_until_expiry": days,
            "current_fee_cents": lic.fee_cents,
            "renewal_count": renewal_count,
            "brand_relationship_days": whole_days(first, now) if first else 0,
            "renewal_likelihood": _renewal_likelihood(renewal_count),
            "has_auto_renew": lic.auto_renew,
            "has_active_disputes": disputed,
            "conflict_count": len(result.conflicts),
        }
        results[lic.pk] = result
    return results


def check_eligibility(license: License, now: datetime | None = None, **options: Any) -> Eligibility:
    return check_eligibility_many([license], now or timezone.now(), **options)[license.pk]


# --- pricing (C2 AUTOMATIC, the one engine) ---------------------------------------------------


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


# --- offers -----------------------------------------------------------------------------------


def _new_offer(license: License, eligibility: Eligibility, now: datetime) -> RenewalOffer:
    terms = terms_for(license, eligibility)
    return RenewalOffer(
        license=license,
        status=RenewalOffer.Status.PENDING,
        original_fee_cents=terms.original_fee_cents,
        fee_cents=terms.fee_cents,
        rev_share_bps=terms.rev_share_bps,
        start_date=terms.start_date,
        end_date=terms.end_date,
        duration_days=terms.duration_days,
        adjustments=terms.adjustments,
        expires_at=now + timedelta(days=OFFER_VALID_DAYS),
        created_at=now,
    )


def _audit_offers(offers: Iterable[RenewalOffer], now: datetime) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            action="renewal_offer_generated",
            entity_type="license",
            entity_id=str(offer.license_id),
            after={
                "offerId": offer.pk,
                "feeCents": offer.fee_cents,
                "originalFeeCents": offer.original_fee_cents,
                "revShareBps": offer.rev_share_bps,
                "startDate": offer.start_date.isoformat(),
                "endDate": offer.end_date.isoformat(),
                "expiresAt": offer.expires_at.isoformat(),
                "adjustments": offer.adjustments,
            },
            created_at=now,
        )
        for offer in offers
    )


def _offers_for_locked(
    licenses: Sequence[License], results: dict[int, Eligibility], now: datetime
) -> tuple[dict[int, RenewalOffer], int]:
    """(the PENDING offer of each eligible license, how many were made): made where
    missing, in two statements. The licenses are locked by the caller (every offer maker
    locks the license first), so the inserts cannot race; a stale PENDING offer (past
    expires_at) is expired first."""
    ids = [lic.pk for lic in licenses if results[lic.pk].eligible]
    if not ids:
        return {}, 0
    RenewalOffer.objects.filter(license_id__in=ids, status=RenewalOffer.Status.PENDING, expires_at__lte=now).update(
        status=RenewalOffer.Status.EXPIRED
    )
    offers = {o.license_id: o for o in RenewalOffer.objects.filter(license_id__in=ids, status="PENDING")}
    new = [_new_offer(lic, results[lic.pk], now) for lic in licenses if lic.pk in ids and lic.pk not in offers]
    if new:
        RenewalOffer.objects.bulk_create(new)
        _audit_offers(new, now)
        offers.update({offer.license_id: offer for offer in new})
    return offers, len(new)


def create_offer(
    license: License, now: datetime | None = None, *, eligibility: Eligibility | None = None
) -> RenewalOffer:
    """The license's PENDING offer, made if it has none (idempotent: one per license).

    Raises RenewalBlocked when the license is not eligible. The license row is locked
    while the offer is made; an insert that still loses a race to the unique constraint
    returns the offer that won.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = License.objects.select_for_update(of=("self",)).select_related(*RELATED).get(pk=license.pk)
        pending = RenewalOffer.objects.filter(license=locked, status=RenewalOffer.Status.PENDING).first()
        if pending is not None and pending.expires_at > now:
            return pending
        result = eligibility or check_eligibility(locked, now)
        if not result.eligible:
            raise RenewalBlocked(f"License {locked.pk} cannot be renewed.", result.blocking)
        if pending is not None:
            RenewalOffer.objects.filter(pk=pending.pk, status="PENDING").update(status=RenewalOffer.Status.EXPIRED)
        offer = _new_offer(locked, result, now)
        try:
            with transaction.atomic():
                offer.save()
        except IntegrityError:
            return RenewalOffer.objects.get(license=locked, status=RenewalOffer.Status.PENDING)
        _audit_offers([offer], now)
        return offer


# --- acceptance ---------------------------------------------------------------------------------


def accept_offer(
    offer: RenewalOffer, actor_id: int | None, *, on_behalf_of_auto_renew: bool = False, now: datetime | None = None
) -> License:
    """Accept `offer`: create the renewal license (PENDING_APPROVAL) with the offer's terms.

    The actor is the brand's user, or the system (`actor_id` None) acting for a license
    with auto_renew (`on_behalf_of_auto_renew`); the renewal is then created by the brand
    user. The offer row is locked, so two acceptances at once make one renewal (the
    other sees the offer ACCEPTED); the one-live-renewal constraint backs it up.
    The creators are told in-app; the brand's confirmation email goes after commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            RenewalOffer.objects.select_for_update(of=("self",))
            .select_related(*(f"license__{name}" for name in RELATED))
            .get(pk=offer.pk)
        )
        lic = locked.license
        brand_user_id = lic.brand.user_id
        if on_behalf_of_auto_renew:
            if actor_id is not None or not lic.auto_renew:
                raise NotOfferRecipient("Only a license with auto-renew is accepted by the system.")
        elif actor_id is None or actor_id != brand_user_id:
            raise NotOfferRecipient("Only the brand's user may accept this offer.")
        if locked.status != RenewalOffer.Status.PENDING:
            raise OfferNotAcceptable(f"The offer is no longer pending (it is {locked.status}).")
        if locked.expires_at <= now:
            raise OfferNotAcceptable("The offer has expired.")
        result = check_eligibility(lic, now, check_window=False, periods={lic.pk: (locked.start_date, locked.end_date)})
        if not result.eligible:
            reasons = " ".join(REASONS[code] for code in result.blocking)
            raise OfferNotAcceptable(f"The license can no longer be renewed: {reasons}", result.blocking)
        renewal = License(
            status=S.PENDING_APPROVAL,
            auto_renew=lic.auto_renew,
            billing_frequency=lic.billing_frequency,
            brand_id=lic.brand_id,
            ip_asset_id=lic.ip_asset_id,
            project_id=lic.project_id,
            parent_license=lic,
            license_type=lic.license_type,
            start_date=locked.start_date,
            end_date=locked.end_date,
            fee_cents=locked.fee_cents,
            rev_share_bps=locked.rev_share_bps,
            payment_terms=lic.payment_terms,
            scope_json=lic.scope_json,
            grace_period_days=lic.grace_period_days,
            usage_tracking_enabled=lic.usage_tracking_enabled,
            metadata={"renewalFrom": lic.pk, "renewalOfferId": locked.pk, "renewalAdjustments": locked.adjustments},
            created_at=now,
            created_by_id=actor_id if actor_id is not None else brand_user_id,
        )
        try:
            with transaction.atomic():
                renewal.save()
        except IntegrityError:
            raise OfferNotAcceptable("The license already has a renewal.", ["RENEWAL_EXISTS"]) from None
        RenewalOffer.objects.filter(pk=locked.pk).update(
            status=RenewalOffer.Status.ACCEPTED, accepted_at=now, accepted_by_id=actor_id, renewal_license=renewal
        )
        AuditEvent.objects.create(
            action="renewal_accepted",
            entity_type="license",
            entity_id=str(lic.pk),
            actor_id=actor_id,
            before={"offerStatus": RenewalOffer.Status.PENDING},
            after={
                "renewalId": renewal.pk,
                "offerId": locked.pk,
                "feeCents": locked.fee_cents,
                "acceptedBy": "system (auto-renew)" if on_behalf_of_auto_renew else "brand",
            },
            created_at=now,
        )
        owners = IpOwnership.objects.filter(ip_asset_id=lic.ip_asset_id).filter(
            Q(end_date__isnull=True) | Q(end_date__gt=now)
        )
        notify(
            owners.values_list("creator__user_id", flat=True),
            type=Notification.Type.LICENSE,
            priority=Notification.Priority.HIGH,
            title="License renewal awaiting your approval",
            message=f'{lic.brand.name} renewed its license for "{lic.ip_asset.title}" '
            f"({short_date(locked.start_date)} - {short_date(locked.end_date)}). Please review and approve it.",
            action_url=f"/licenses/{renewal.pk}",
            metadata={"licenseId": renewal.pk, "parentLicenseId": lic.pk, "offerId": locked.pk},
        )
        # The brand's confirmation email is a job (after commit), never sent inside the
        # request; the workflow's catch-up phase covers a job that failed for good.
        enqueue(CONFIRMATION_JOB, dedup_key=f"renewal-{renewal.pk}", renewal_id=renewal.pk)
    return renewal


# --- auto-renewal (license-management) ------------------------------------------------------------


def _live_child() -> QuerySet:
    return License.objects.filter(parent_license=OuterRef("pk"), deleted_at__isnull=True).exclude(status=S.CANCELED)


def auto_renew_due_licenses(now: datetime | None = None) -> dict[str, int]:
    """Renew auto-renew licenses in force that end within 60 days and have no renewal.

    An eligible license gets its pending offer (made if missing) accepted by the system
    on behalf of the brand. An ineligible one is skipped, its reason codes logged with
    its id; it is not a failure (it is looked at again tomorrow, and renews once the
    obstacle is gone). Running twice renews nothing twice.
    """
    now = now or timezone.now()
    counts = {"processed": 0, "failed": 0, "skipped": 0}
    due = License.objects.filter(
        auto_renew=True,
        status__in=IN_FORCE,
        deleted_at__isnull=True,
        end_date__gte=now,
        end_date__lte=now + timedelta(days=AUTO_RENEW_DAYS),
    ).exclude(Exists(_live_child()))
    cursor = 0
    while batch := list(due.filter(pk__gt=cursor).select_related(*RELATED).order_by("pk")[:500]):
        cursor = batch[-1].pk
        results = check_eligibility_many(batch, now)
        for lic in batch:
            result = results[lic.pk]
            if not result.eligible:
                counts["skipped"] += 1
                log.info("auto-renew skipped license=%s reasons=%s", lic.pk, ",".join(result.blocking))
                continue
            try:
                offer = create_offer(lic, now, eligibility=result)
                accept_offer(offer, None, on_behalf_of_auto_renew=True, now=now)
            except RenewalError as exc:
                counts["skipped"] += 1
                log.info(
                    "auto-renew skipped license=%s reasons=%s", lic.pk, ",".join(exc.reasons) or type(exc).__name__
                )
            except Exception:
                counts["failed"] += 1
                log.exception("auto-renew failed license=%s", lic.pk)
            else:
                counts["processed"] += 1
    return counts


# --- email context ------------------------------------------------------------------------------------


def short_date(value: datetime | date) -> str:
    """ "Mar 5, 2027" (the spec's "MMM d, yyyy")."""
    return f"{value:%b} {value.day}, {value.year}"


def dollars(cents: int) -> str:
    """5,000.00 (the templates print the "$")."""
    return f"{cents // 100:,}.{cents % 100:02d}"


def fee_change(original_cents: int, fee_cents: int) -> str:
    """ "+x.x%", "-x.x%", or "+0%" when the fee is unchanged (or was 0)."""
    if not original_cents or fee_cents == original_cents:
        return "+0%"
    return f"{(fee_cents - original_cents) * 100 / original_cents:+.1f}%"


def _common_context(license: License) -> dict[str, Any]:
    user, brand = license.brand.user, license.brand
    return {
        "license_id": license.pk,
        "brand_name": brand.name,
        "contact_name": user.get_full_name() or brand.name,
        "license_name": f"{license.ip_asset.title} - {license.get_license_type_display()}",
        "ip_asset_title": license.ip_asset.title,
        "license_url": f"{settings.APP_URL}/licenses/{license.pk}",
        "auto_renew": license.auto_renew,
    }


def renewal_url(license: License, offer: RenewalOffer) -> str:
    return f"{settings.APP_URL}/licenses/{license.pk}/renewal/{offer.pk}"


def offer_email_context(license: License, offer: RenewalOffer, now: datetime) -> dict[str, Any]:
    """Variables of `license_renewal_offer` (spec D1): every figure is the stored offer's."""
    return _common_context(license) | {
        "current_end_date": short_date(license.end_date),
        "proposed_start_date": short_date(offer.start_date),
        "proposed_end_date": short_date(offer.end_date),
        "original_fee_dollars": dollars(offer.original_fee_cents),
        "renewal_fee_dollars": dollars(offer.fee_cents),
        "fee_change": fee_change(offer.original_fee_cents, offer.fee_cents),
        "rev_share_percent": f"{offer.rev_share_bps / 100:.2f}%",
        "days_until_expiration": whole_days(now, license.end_date),
        "renewal_url": renewal_url(license, offer),
        "adjustments_summary": [f"{a['label']}: {a['percent']:+.1f}%" for a in offer.adjustments],
        "offer_expires_date": short_date(offer.expires_at),
    }


def final_notice_context(license: License, offer: RenewalOffer, now: datetime) -> dict[str, Any]:
    """Variables of `license_renewal_final_notice` (spec D2, stage final_notice)."""
    return _common_context(license) | {
        "expiration_date": short_date(license.end_date),
        "days_remaining": whole_days(now, license.end_date),
        "urgency_level": "final",
        "renewal_fee_dollars": dollars(offer.fee_cents),
        "proposed_start_date": short_date(offer.start_date),
        "proposed_end_date": short_date(offer.end_date),
        "renewal_url": renewal_url(license, offer),
    }


def confirmation_context(renewal: License, *, auto_renewed: bool) -> dict[str, Any]:
    """Variables of `license_renewal_complete` (spec D3), for the renewal license."""
    metadata = renewal.metadata or {}
    adjustments = metadata.get("renewalAdjustments") or []
    return _common_context(renewal) | {
        "renewal_start_date": short_date(renewal.start_date),
        "renewal_end_date": short_date(renewal.end_date),
        "renewal_fee_dollars": dollars(renewal.fee_cents),
        "rev_share_percent": f"{renewal.rev_share_bps / 100:.2f}%",
        "adjustments_summary": [f"{a['label']}: {a['percent']:+.1f}%" for a in adjustments],
        "previous_license_id": renewal.parent_license_id,
        "auto_renewed": auto_renewed,
    }


# --- workflow phases -----------------------------------------------------------------------------------


def _batches(queryset: QuerySet) -> Iterable[list[License]]:
    return locked_batches(queryset.select_related(*RELATED), settings.EMAIL_BATCH_SIZE)


def expire_stale_offers(now: datetime) -> int:
    """PENDING offers past their expiry become EXPIRED (one statement)."""
    return RenewalOffer.objects.filter(status=RenewalOffer.Status.PENDING, expires_at__lte=now).update(
        status=RenewalOffer.Status.EXPIRED
    )


def create_due_offers(now: datetime) -> dict[str, int]:
    """An offer for every eligible license in force ending within the 90-day window that
    has no pending or accepted offer and was not yet told of one."""
    open_offer = RenewalOffer.objects.filter(
        license=OuterRef("pk"), status__in=(RenewalOffer.Status.PENDING, RenewalOffer.Status.ACCEPTED)
    )
    due = License.objects.filter(
        status__in=IN_FORCE,
        deleted_at__isnull=True,
        renewal_notified_at__isnull=True,
        end_date__gte=now,
        end_date__lt=now + timedelta(days=WINDOW_DAYS + 1),
    ).exclude(Exists(open_offer))
    counts = {"offers_created": 0, "offers_ineligible": 0}
    for batch in _batches(due):
        results = check_eligibility_many(batch, now)
        for lic in batch:
            if not results[lic.pk].eligible:
                counts["offers_ineligible"] += 1
                log.info("renewal offer withheld license=%s reasons=%s", lic.pk, ",".join(results[lic.pk].blocking))
        counts["offers_created"] += _offers_for_locked(batch, results, now)[1]
    return counts


def _events(event_type: str, sent: Iterable[tuple[License, RenewalOffer, bool]], now: datetime, **props: Any):
    Event.objects.bulk_create(
        system_event(
            event_type,
            actor_id="renewal-workflow",
            license_id=lic.pk,
            ip_asset_id=lic.ip_asset_id,
            brand_id=lic.brand_id,
            user_id=lic.brand.user_id,
            occurred_at=now,
            props_json={
                "licenseId": lic.pk,
                "offerId": offer.pk,
                "recipientRole": "brand",
                "success": ok,
                "sentAt": now.isoformat() if ok else None,
                "daysUntilExpiry": whole_days(now, lic.end_date),
                **props,
            },
        )
        for lic, offer, ok in sent
    )


def _send(plan: list[tuple[License, RenewalOffer, EmailMessage]]) -> list[tuple[License, RenewalOffer, bool]]:
    results = send_each([message for _, _, message in plan])
    return [(lic, offer, ok) for (lic, offer, _), ok in zip(plan, results, strict=True)]


def send_offer_emails(now: datetime) -> dict[str, int]:
    """The standalone offer email (D1), for a pending offer the 90-day expiry notice will
    not carry: that notice already went out without it, or the license is past the
    notice's window. Otherwise the next 90-day notice carries the offer (one email).
    A license due for the final notice (6-8 days left) gets the offer in that notice
    instead, the same day. Marker: `renewal_notified_at` (the 90-day notice and the
    final notice set it too when they carry an offer)."""
    pending = RenewalOffer.objects.filter(
        license=OuterRef("pk"), status=RenewalOffer.Status.PENDING, expires_at__gt=now
    )
    due = License.objects.filter(
        Q(ninety_day_notice_sent_at__isnull=False)
        | Q(end_date__lt=start_of_day(now + timedelta(days=NINETY_DAY_NOTICE_DAYS))),
        status__in=IN_FORCE,
        deleted_at__isnull=True,
        renewal_notified_at__isnull=True,
        end_date__gte=now,
    ).filter(Exists(pending))
    due = due.exclude(**_final_notice_window(now), renewal_final_notice_sent_at__isnull=True)
    counts = {"offer_emails_sent": 0, "offer_emails_failed": 0}
    for batch in _batches(due):
        results = check_eligibility_many(batch, now)
        offers = {
            o.license_id: o
            for o in RenewalOffer.objects.filter(
                license__in=batch, status=RenewalOffer.Status.PENDING, expires_at__gt=now
            )
        }
        plan = [
            (
                lic,
                offer,
                build_email("license_renewal_offer", lic.brand.user.email, offer_email_context(lic, offer, now)),
            )
            for lic in batch
            if (offer := offers.get(lic.pk)) and results[lic.pk].eligible and lic.brand.user.email
        ]
        if not plan:
            continue
        sent = _send(plan)
        License.objects.filter(pk__in=[lic.pk for lic, _, ok in sent if ok]).update(renewal_notified_at=now)
        _events("license.renewal_offer", sent, now)
        counts["offer_emails_sent"] += sum(ok for _, _, ok in sent)
        counts["offer_emails_failed"] += sum(not ok for _, _, ok in sent)
    return counts


def _final_notice_window(now: datetime) -> dict[str, datetime]:
    """End dates 6 to 8 whole days away (|days - 7| <= 1)."""
    return {
        "end_date__gte": now + timedelta(days=FINAL_NOTICE_DAYS - 1),
        "end_date__lt": now + timedelta(days=FINAL_NOTICE_DAYS + 2),
    }


def send_final_notices(now: datetime) -> dict[str, int]:
    """The final notice (D2 stage final_notice) at 7 days (+/- 1) before the end, once,
    to licenses in force, still eligible and not renewed. It quotes the pending offer,
    or a fresh one (the first offer has expired by then) so its link can be accepted;
    for a license never told of an offer it is also the offer (`renewal_notified_at`)."""
    due = License.objects.filter(
        status__in=IN_FORCE,
        deleted_at__isnull=True,
        renewal_final_notice_sent_at__isnull=True,
        **_final_notice_window(now),
    )
    counts = {"final_notices_sent": 0, "final_notices_failed": 0, "final_offers_created": 0}
    for batch in _batches(due):
        results = check_eligibility_many(batch, now)
        offers, created = _offers_for_locked(batch, results, now)
        counts["final_offers_created"] += created
        plan = [
            (
                lic,
                offer,
                build_email(
                    "license_renewal_final_notice", lic.brand.user.email, final_notice_context(lic, offer, now)
                ),
            )
            for lic in batch
            if (offer := offers.get(lic.pk)) and lic.brand.user.email
        ]
        if not plan:
            continue
        sent = _send(plan)
        told = [lic.pk for lic, _, ok in sent if ok]
        License.objects.filter(pk__in=told).update(renewal_final_notice_sent_at=now)
        License.objects.filter(pk__in=told, renewal_notified_at__isnull=True).update(renewal_notified_at=now)
        _events("license.renewal_reminder_final_notice", sent, now, urgency="final")
        counts["final_notices_sent"] += sum(ok for _, _, ok in sent)
        counts["final_notices_failed"] += sum(not ok for _, _, ok in sent)
    return counts


def send_renewal_confirmations(now: datetime | None = None, *, renewal_ids: Sequence[int] | None = None) -> int:
    """The brand's `license_renewal_complete` email for renewals made from an offer, once
    each (marker `renewalConfirmationSentAt` in the renewal's metadata). Called right
    after an acceptance commits, and by the workflow to catch up on any that failed
    (renewals of the last 7 days)."""
    now = now or timezone.now()
    due = (
        License.objects.filter(
            parent_license__isnull=False, deleted_at__isnull=True, metadata__has_key="renewalOfferId"
        )
        .exclude(metadata__has_key=CONFIRMATION_MARKER)
        .exclude(status=S.CANCELED)
    )
    if renewal_ids is not None:
        due = due.filter(pk__in=list(renewal_ids))
    else:
        due = due.filter(created_at__gte=now - CONFIRMATION_CATCH_UP)
    sent_count = 0
    for batch in _batches(due):
        by_system = {
            offer.renewal_license_id: offer.accepted_by_id is None
            for offer in RenewalOffer.objects.filter(renewal_license__in=batch).only("renewal_license", "accepted_by")
        }
        plan = [
            (
                lic,
                build_email(
                    "license_renewal_complete",
                    lic.brand.user.email,
                    confirmation_context(lic, auto_renewed=by_system.get(lic.pk, False)),
                ),
            )
            for lic in batch
            if lic.brand.user.email
        ]
        results = send_each([message for _, message in plan])
        done = {lic.pk for (lic, _), ok in zip(plan, results, strict=True) if ok}
        done |= {lic.pk for lic in batch if not lic.brand.user.email}  # nobody to write to: not retried
        merge_metadata({pk: {CONFIRMATION_MARKER: now.isoformat()} for pk in done})
        sent_count += sum(results)
    return sent_count


# --- analytics (phase 5, recommendation: one upserted snapshot per day) ---------------------------


def record_renewal_snapshot(now: datetime) -> dict[str, int]:
    """Renewal figures of the 30 days ending yesterday, upserted as the day's
    LicensePerformanceSnapshot(granularity "renewals_30d"): a second run updates the row.

    - expiring: licenses (not deleted, any status) whose end date falls in the period;
      renewed: those with a live renewal (PENDING_APPROVAL, PENDING_SIGNATURE, ACTIVE,
      EXPIRING_SOON); failed = expiring - renewed; renewal rate = renewed / expiring.
    - averageDaysToRenewal: mean days from offer to acceptance of those renewals.
    - revenueRetentionRate: renewal fees / fees of all expiring licenses.
    - topAssets: the 10 assets with the most renewals created in the period.
    - atRiskLicenses: up to 20 licenses in force ending within 30 days with no pending or
      accepted offer and no renewal.
    """
    yesterday = now.astimezone(UTC).date() - DAY
    first = yesterday - timedelta(days=29)
    low = datetime.combine(first, time.min, tzinfo=UTC)
    high = datetime.combine(yesterday + DAY, time.min, tzinfo=UTC)
    expiring = License.objects.filter(deleted_at__isnull=True, end_date__gte=low, end_date__lt=high)
    children = License.objects.filter(
        parent_license__in=expiring.values("pk"), deleted_at__isnull=True, status__in=RENEWED_CHILD
    )
    parents = expiring.aggregate(count=Count("pk"), fees=Sum("fee_cents"))
    renewed = children.aggregate(count=Count("parent_license_id", distinct=True), fees=Sum("fee_cents"))
    total, parent_fees = parents["count"], parents["fees"] or 0
    renewed_count, revenue = renewed["count"], renewed["fees"] or 0
    waited = RenewalOffer.objects.filter(status=RenewalOffer.Status.ACCEPTED, renewal_license__in=children).aggregate(
        average=Avg(F("accepted_at") - F("created_at"))
    )["average"]
    top = (
        License.objects.filter(
            parent_license__isnull=False, deleted_at__isnull=True, created_at__gte=low, created_at__lt=high
        )
        .exclude(status=S.CANCELED)
        .values("ip_asset_id")
        .annotate(renewals=Count("pk"), fees=Sum("fee_cents"))
        .order_by("-renewals", "-fees", "ip_asset_id")[:10]
    )
    open_offer = RenewalOffer.objects.filter(
        license=OuterRef("pk"), status__in=(RenewalOffer.Status.PENDING, RenewalOffer.Status.ACCEPTED)
    )
    at_risk = (
        License.objects.filter(
            status__in=IN_FORCE, deleted_at__isnull=True, end_date__gte=now, end_date__lte=now + timedelta(days=30)
        )
        .exclude(Exists(open_offer))
        .exclude(Exists(_live_child()))
        .order_by("end_date", "pk")
        .values("pk", "ip_asset_id", "brand_id", "end_date")[:20]
    )
    metrics = {
        "periodStart": first.isoformat(),
        "periodEnd": yesterday.isoformat(),
        "totalExpiring": total,
        "totalRenewalsSuccessful": renewed_count,
        "totalRenewalsFailed": total - renewed_count,
        "renewalRate": round(renewed_count * 100 / total, 2) if total else 0.0,
        "averageDaysToRenewal": round(waited / DAY, 2) if waited is not None else None,
        "revenueRetentionRate": round(revenue * 100 / parent_fees, 2) if parent_fees else 0.0,
        "totalRenewalRevenueCents": revenue,
        "byPricingStrategy": {"AUTOMATIC": {"renewals": renewed_count, "revenueCents": revenue}},
        "topAssets": [
            {"ipAssetId": row["ip_asset_id"], "renewals": row["renewals"], "feeCents": row["fees"] or 0} for row in top
        ],
        "atRiskLicenses": [
            {
                "licenseId": row["pk"],
                "ipAssetId": row["ip_asset_id"],
                "brandId": row["brand_id"],
                "endDate": row["end_date"].isoformat(),
                "daysUntilExpiry": whole_days(now, row["end_date"]),
            }
            for row in at_risk
        ],
    }
    LicensePerformanceSnapshot.objects.bulk_create(
        [
            LicensePerformanceSnapshot(
                date=yesterday,
                granularity=LicensePerformanceSnapshot.Granularity.RENEWALS_30D,
                period_start=first,
                period_end=yesterday,
                total_revenue_cents=revenue,
                metrics=metrics,
                calculated_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["date", "granularity"],
        update_fields=["period_start", "period_end", "total_revenue_cents", "metrics", "calculated_at"],
    )
    return {"snapshot_expiring": total, "snapshot_renewed": renewed_count}
