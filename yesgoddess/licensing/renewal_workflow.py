"""license-renewal-workflow (spec B §5.3, DECISIONS "Licenses"), daily at 02:00 UTC, and
the renewal emails (spec D1-D3). `run_workflow` runs the phases in order:

1. `expire_stale_offers`: expire PENDING offers past their expiry (so a license can be
   offered again);
2. `create_due_offers`: an offer for every eligible license in force within 90 days of
   its end;
3. `send_offer_emails`: the standalone offer email only where the 90-day expiry notice
   (license-expiry-monitor) will not carry the offer; otherwise that notice does, so the
   brand gets one email at the milestone;
4. `send_final_notices`: the final notice at 7 days (+/- 1), once;
5. `send_renewal_confirmations`: renewal confirmations that could not be sent at
   acceptance (catch-up);
6. `record_renewal_snapshot`: the renewal snapshot of the 30 days ending yesterday
   (upserted).

Auto-renewals are not run here: they belong to license-management (DECISIONS,
`management.py`). Each phase runs even when an earlier one failed; a failed phase then
fails the run (`RenewalWorkflowError`) so that the job is retried (every phase is
idempotent: nothing is created or sent twice). `send_renewal_confirmation` is the
confirmation of one accepted renewal, enqueued at acceptance.

The emails go out through `yesgoddess.notifications.fanout`: a batch of license rows is
locked FOR UPDATE SKIP LOCKED, the markers are set and committed, then the batch is sent;
the markers of the emails never attempted or refused are released for the next run, and
one interrupted mid-send keeps its marker. Two workers never send one message twice, nor
does a retry after a crash. Logs and events carry ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Count, Exists, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from yesgoddess.analytics.models import Event, system_event
from yesgoddess.core.app_links import app_url
from yesgoddess.core.batches import locked_batches
from yesgoddess.core.dates import start_of_day
from yesgoddess.core.errors import InvalidInput
from yesgoddess.notifications.fanout import RowDelivery, claim_setting, claimed_batches, deliver_rows, release
from yesgoddess.notifications.services import build_email

from .eligibility import DAY, RELATED, WINDOW_DAYS, check_eligibility_many, whole_days
from .metadata import merge_metadata
from .models import IN_FORCE, License, LicensePerformanceSnapshot, LicenseStatus, RenewalOffer
from .renewals import live_child, offers_for_locked, short_date

log = logging.getLogger(__name__)

S = LicenseStatus

FINAL_NOTICE_DAYS = 7  # the final notice goes out at 7 days (+/- 1)
NINETY_DAY_NOTICE_DAYS = 89  # the expiry monitor's 90-day notice covers ends from start of day (now + 89 days)
# A renewal that happened: its child is one of these (analytics).
RENEWED_CHILD = (S.PENDING_APPROVAL, S.PENDING_SIGNATURE, S.ACTIVE, S.EXPIRING_SOON)
CONFIRMATION_MARKER = "renewalConfirmationSentAt"  # in the renewal license's metadata
CONFIRMATION_CATCH_UP = timedelta(days=7)


# --- email context ------------------------------------------------------------------------------------


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
        "license_url": app_url("license", license_id=license.pk),
        "auto_renew": license.auto_renew,
    }


def renewal_url(license: License, offer: RenewalOffer) -> str:
    return app_url("license-renewal-offer", license_id=license.pk, offer_id=offer.pk)


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
    """Locked batches for work without email (offers: idempotent, done while locked)."""
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
        counts["offers_created"] += offers_for_locked(batch, results, now)[1]
    return counts


def _events(
    event_type: str, delivery: RowDelivery[License], offers: dict[int, RenewalOffer], now: datetime, **props: Any
) -> None:
    """One event per license whose email was sent (success) or refused (failure)."""
    outcomes = [(lic, True) for lic in delivery.sent] + [(lic, False) for lic in delivery.refused]
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
                "offerId": offers[lic.pk].pk,
                "recipientRole": "brand",
                "success": ok,
                "sentAt": now.isoformat() if ok else None,
                "daysUntilExpiry": whole_days(now, lic.end_date),
                **props,
            },
        )
        for lic, ok in outcomes
    )


def send_offer_emails(now: datetime) -> dict[str, int]:
    """The standalone offer email (D1), for a pending offer the 90-day expiry notice will
    not carry: that notice already went out without it, or the license is past the
    notice's window. Otherwise the next 90-day notice carries the offer (one email).
    A license due for the final notice (6-8 days left) gets the offer in that notice
    instead, the same day. Marker: `renewal_notified_at` (the 90-day notice and the
    final notice set it too when they carry an offer), claimed before the send."""
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
    offers: dict[int, RenewalOffer] = {}

    def claim(rows: list[License]) -> list[License]:
        results = check_eligibility_many(rows, now)
        pending = RenewalOffer.objects.filter(license__in=rows, status=RenewalOffer.Status.PENDING, expires_at__gt=now)
        found = {offer.license_id: offer for offer in pending}
        told = [lic for lic in rows if lic.pk in found and results[lic.pk].eligible and lic.brand.user.email]
        offers.clear()
        offers.update((lic.pk, found[lic.pk]) for lic in told)
        return claim_setting("renewal_notified_at", now)(told)

    for batch in claimed_batches(due.select_related(*RELATED), claim):
        delivery = deliver_rows(
            batch,
            lambda lic: [
                build_email(
                    "license_renewal_offer", lic.brand.user.email, offer_email_context(lic, offers[lic.pk], now)
                )
            ],
        )
        with transaction.atomic():
            release(delivery.to_retry, "renewal_notified_at")
            _events("license.renewal_offer", delivery, offers, now)
        counts["offer_emails_sent"] += len(delivery.sent)
        counts["offer_emails_failed"] += len(delivery.refused)
        delivery.raise_error()
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
    for a license never told of an offer it is also the offer (`renewal_notified_at`).

    Marker: `renewal_final_notice_sent_at`, claimed before the send. The claim also sets
    a null `renewal_notified_at` (so a concurrent workflow does not email the offer
    alone meanwhile); it is given back only where the notice surely did not go (refused
    or never attempted): one cut off mid-send may have carried the offer, and the offer
    is never emailed twice."""
    due = License.objects.filter(
        status__in=IN_FORCE,
        deleted_at__isnull=True,
        renewal_final_notice_sent_at__isnull=True,
        **_final_notice_window(now),
    )
    counts = {"final_notices_sent": 0, "final_notices_failed": 0, "final_offers_created": 0}
    offers: dict[int, RenewalOffer] = {}
    held: set[int] = set()  # licenses whose renewal_notified_at the claim set

    def claim(rows: list[License]) -> list[License]:
        found, created = offers_for_locked(rows, check_eligibility_many(rows, now), now)
        counts["final_offers_created"] += created
        told = [lic for lic in rows if lic.pk in found and lic.brand.user.email]
        offers.clear()
        offers.update((lic.pk, found[lic.pk]) for lic in told)
        held.clear()
        held.update(lic.pk for lic in told if lic.renewal_notified_at is None)
        License.objects.filter(pk__in=held).update(renewal_notified_at=now)
        return claim_setting("renewal_final_notice_sent_at", now)(told)

    for batch in claimed_batches(due.select_related(*RELATED), claim):
        delivery = deliver_rows(
            batch,
            lambda lic: [
                build_email(
                    "license_renewal_final_notice", lic.brand.user.email, final_notice_context(lic, offers[lic.pk], now)
                )
            ],
        )
        with transaction.atomic():
            release(delivery.to_retry, "renewal_final_notice_sent_at")
            License.objects.filter(pk__in=held & {lic.pk for lic in delivery.to_retry}).update(renewal_notified_at=None)
            _events("license.renewal_reminder_final_notice", delivery, offers, now, urgency="final")
        counts["final_notices_sent"] += len(delivery.sent)
        counts["final_notices_failed"] += len(delivery.refused)
        delivery.raise_error()
    return counts


FORGET_CONFIRMATION_SQL = "UPDATE licenses SET metadata = metadata - %s, updated_at = now() WHERE id = ANY(%s)"


def send_renewal_confirmations(now: datetime | None = None, *, renewal_ids: Sequence[int] | None = None) -> int:
    """The brand's `license_renewal_complete` email for renewals made from an offer, once
    each (marker `renewalConfirmationSentAt` in the renewal's metadata, claimed before
    the send; a renewal whose brand user has no address is marked and never retried).
    Called right after an acceptance commits, and by the workflow to catch up on any that
    failed (renewals of the last 7 days)."""
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
    by_system: dict[int, bool] = {}  # renewal id: accepted by the system (auto-renew)

    def claim(rows: list[License]) -> list[License]:
        offers = RenewalOffer.objects.filter(renewal_license__in=rows).only("renewal_license", "accepted_by")
        by_system.clear()
        by_system.update((offer.renewal_license_id, offer.accepted_by_id is None) for offer in offers)
        merge_metadata({lic.pk: {CONFIRMATION_MARKER: now.isoformat()} for lic in rows})
        return [lic for lic in rows if lic.brand.user.email]

    sent = 0
    for batch in claimed_batches(due.select_related(*RELATED), claim):
        delivery = deliver_rows(
            batch,
            lambda lic: [
                build_email(
                    "license_renewal_complete",
                    lic.brand.user.email,
                    confirmation_context(lic, auto_renewed=by_system.get(lic.pk, False)),
                )
            ],
        )
        if delivery.to_retry:
            with connection.cursor() as cursor:
                cursor.execute(FORGET_CONFIRMATION_SQL, [CONFIRMATION_MARKER, [lic.pk for lic in delivery.to_retry]])
        sent += len(delivery.sent)
        delivery.raise_error()
    return sent


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
        .exclude(Exists(live_child()))
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


# --- the run ------------------------------------------------------------------------------------------


class RenewalWorkflowError(RuntimeError):
    """One or more phases failed (each is logged); the others ran."""


def phases() -> list[tuple[str, Callable[[datetime], Any]]]:
    """(count name, phase) in the order they run; a phase returning a dict names its own counts."""
    return [
        ("offers_expired", expire_stale_offers),
        ("offers", create_due_offers),
        ("offer_emails", send_offer_emails),
        ("final_notices", send_final_notices),
        ("confirmations_sent", send_renewal_confirmations),
        ("snapshot", record_renewal_snapshot),
    ]


def run_workflow(now: datetime | None = None) -> dict[str, int]:
    """Run every phase in order; return their counts. A failed phase is logged and the
    next ones still run; RenewalWorkflowError is raised at the end (phases are idempotent,
    so the retry repeats nothing)."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    failed: list[str] = []
    for name, phase in phases():
        try:
            result = phase(now)
        except Exception:
            log.exception("license-renewal-workflow phase=%s failed", name)
            failed.append(name)
            continue
        if isinstance(result, dict):
            counts.update(result)
        else:
            counts[name] = result
    if failed:
        raise RenewalWorkflowError(f"phases failed: {', '.join(failed)} (counts so far: {counts})")
    return counts


def send_renewal_confirmation(renewal_id: int) -> int:
    """The brand's confirmation of one accepted renewal (enqueued at acceptance), once;
    how many were sent (0 or 1). Raises License.DoesNotExist when no renewal license has
    this id."""
    if not License.objects.filter(pk=renewal_id, parent_license__isnull=False).exists():
        raise InvalidInput(f"Renewal license {renewal_id} does not exist.")
    return send_renewal_confirmations(renewal_ids=[renewal_id])
