"""Renewal eligibility (spec B §5.B: B1 + B2 merged) and conflicts (B3).

- `check_eligibility_many` merges the spec's two eligibility checks (B1 and B2) into one:
  blocking reasons, warnings and facts, for a batch of licenses in a constant number of
  queries. Conflicts in the proposed period (B3, `find_conflicts`) BLOCK, as in B2: an
  offer is never made, and never accepted, for terms that conflict with another license.
- `proposed_period`: the renewal's dates (the day after the end, for the same length).

The offers and their acceptance are in `renewals`, the price in `pricing`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from yesgoddess.assets.models import AssetStatus, IpOwnership

from .models import License, LicenseStatus, LicenseType

S = LicenseStatus
DAY = timedelta(days=1)

# --- rules (spec B §5.B) ---------------------------------------------------------------
WINDOW_DAYS = 90  # the renewal window opens 90 days before the end date
LATE_DAYS = 30  # ... and closes 30 days after it
RENEWABLE = (S.ACTIVE, S.EXPIRING_SOON, S.EXPIRED)
# Licenses that hold rights on the asset, or are about to: the conflict check looks at these.
# Drafts are not commitments (a stale draft of another brand must not block a renewal);
# the spec's B3 included them, we do not.
CONFLICTING = (S.ACTIVE, S.EXPIRING_SOON, S.PENDING_APPROVAL, S.PENDING_SIGNATURE)
# Licenses that count towards a brand's renewal history on an asset (loyalty).
HISTORY = (S.ACTIVE, S.EXPIRING_SOON, S.EXPIRED, S.RENEWED)
MEDIA = ("digital", "print", "broadcast", "ooh")
PLACEMENTS = ("social", "website", "email", "paid_ads", "packaging")
MAX_REV_SHARE_BPS = 8000  # cumulative rev share above this is a conflict
GLOBAL = "GLOBAL"

# Related rows the rules read: load licenses with `.select_related(*RELATED)`.
RELATED = ("ip_asset", "brand__user")

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


# --- time ----------------------------------------------------------------------------------


def whole_days(start: datetime, end: datetime) -> int:
    """Complete 24-hour periods from `start` to `end`, truncated toward zero (spec §0.6)."""
    delta = end - start
    days = abs(delta) // DAY
    return days if delta >= timedelta(0) else -days


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
