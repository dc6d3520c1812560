"""License renewals (spec B §5.B-5.D, §5.3 phase 4, DECISIONS "Licenses"), defects fixed:
offers, their acceptance, and auto-renewal.

- `create_offer` makes (or returns) the license's one PENDING offer, priced by
  `pricing.price_renewal` for an eligible license (`eligibility`); `accept_offer` turns
  it into the renewal license (PENDING_APPROVAL: the creators must approve).
- `auto_renew_due_licenses` is license-management's auto-renewal step (DECISIONS: it
  belongs there, not in the workflow); the system accepts on behalf of the brand.
- `renewal_workflow` (the job `license-renewal-workflow`) runs the phases: stale
  offers, due offers, the renewal emails, the snapshot.

Logs and events carry ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import notify

from .eligibility import REASONS, RELATED, Eligibility, check_eligibility, check_eligibility_many
from .models import IN_FORCE, License, LicenseStatus, RenewalOffer
from .pricing import terms_for

log = logging.getLogger(__name__)

S = LicenseStatus

OFFER_VALID_DAYS = 30  # an offer can be accepted for 30 days
AUTO_RENEW_DAYS = 60  # auto-renewal happens within 60 days of the end date
CONFIRMATION_JOB = "license-renewal-workflow.confirmation"


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


# --- offers -----------------------------------------------------------------------------------


def new_offer(license: License, eligibility: Eligibility, now: datetime) -> RenewalOffer:
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


def audit_offers(offers: Iterable[RenewalOffer], now: datetime) -> None:
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


def offers_for_locked(
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
    new = [new_offer(lic, results[lic.pk], now) for lic in licenses if lic.pk in ids and lic.pk not in offers]
    if new:
        RenewalOffer.objects.bulk_create(new)
        audit_offers(new, now)
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
        offer = new_offer(locked, result, now)
        try:
            with transaction.atomic():
                offer.save()
        except IntegrityError:
            return RenewalOffer.objects.get(license=locked, status=RenewalOffer.Status.PENDING)
        audit_offers([offer], now)
        return offer


def live_offer(license: License, now: datetime) -> RenewalOffer | None:
    """The license's PENDING offer that has not expired, if any."""
    return RenewalOffer.objects.filter(license=license, status=RenewalOffer.Status.PENDING, expires_at__gt=now).first()


def accepted_offer(license: License) -> RenewalOffer | None:
    """The accepted offer whose renewal license is still live (not deleted or canceled)."""
    return (
        RenewalOffer.objects.filter(
            license=license, status=RenewalOffer.Status.ACCEPTED, renewal_license__deleted_at__isnull=True
        )
        .exclude(renewal_license__status=S.CANCELED)
        .exclude(renewal_license__isnull=True)
        .order_by("-accepted_at", "-pk")
        .first()
    )


def current_offer(license: License, now: datetime | None = None) -> RenewalOffer:
    """What the brand sees when it opens a renewal link, at any time in the renewal window:
    the live PENDING offer; else the accepted one (the license is renewed); else a new
    offer made now (`create_offer`, priced by the one function, valid OFFER_VALID_DAYS).

    A license that cannot be renewed raises RenewalBlocked with its reason codes. An
    offer made here counts as told (`renewal_notified_at`): the renewal workflow does not
    email the brand an offer it has just been shown.
    """
    now = now or timezone.now()
    offer = live_offer(license, now) or accepted_offer(license)
    if offer is not None:
        return offer
    offer = create_offer(license, now)
    License.objects.filter(pk=license.pk, renewal_notified_at__isnull=True).update(renewal_notified_at=now)
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


def live_child() -> QuerySet:
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
    ).exclude(Exists(live_child()))
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


def short_date(value: datetime | date) -> str:
    """ "Mar 5, 2027" (the spec's "MMM d, yyyy")."""
    return f"{value:%b} {value.day}, {value.year}"
