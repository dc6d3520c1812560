"""The license expiry lifecycle (spec B §5.A as settled by DECISIONS.md, defects fixed).

Owners: `send_expiry_notices` (license-expiry-monitor, daily) sends the 90/60/30-day
notices and moves ACTIVE -> EXPIRING_SOON inside 30 days. The brand's notice carries the
license's live renewal offer, made at the notice if none is live (an offer lasts 30
days, so each notice has one the brand can accept); every link of every message leads
to a page that works for its recipient (`yesgoddess.core.app_links`), a renewal link only
while the license can be renewed. `expire_due_licenses`
(license-auto-expiry, hourly) owns end of term: past end date -> grace period, grace
over -> EXPIRED, and the messages that follow.

Every message has its own marker column, sent through `yesgoddess.notifications.fanout`:
a batch of rows is locked FOR UPDATE SKIP LOCKED, the markers are set and committed, and
only then is the batch sent. Two workers never send one message twice, and neither does
a retry after a crash: the licenses whose (brand's) message was never attempted, or was
refused, get their marker back for the next run; one interrupted mid-send keeps it (it
may be lost, never sent twice). What must follow a real send (events, audit rows, in-app
notifications) is written after the batch, for the licenses whose message went out.
Queries per batch are constant (the sends aside).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from yesgoddess.analytics.models import Event, system_event
from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.app_links import app_url
from yesgoddess.core.batches import locked_batches
from yesgoddess.core.dates import start_of_day
from yesgoddess.core.models import AuditEvent
from yesgoddess.core.money import dollars
from yesgoddess.notifications.fanout import claim_setting, claimed_batches, deliver_rows, release
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email
from yesgoddess.projects.models import Project, ProjectStatus
from yesgoddess.projects.services import transition_projects

from .eligibility import REASONS, Eligibility, check_eligibility_many
from .models import IN_FORCE, License, LicenseStatus, RenewalOffer
from .renewals import offers_for_locked
from .transitions import transition_many

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NoticeStage:
    days: int
    marker: str
    urgency: str


NOTICE_STAGES = (
    NoticeStage(90, "ninety_day_notice_sent_at", "informational"),
    NoticeStage(60, "sixty_day_notice_sent_at", "reminder"),
    NoticeStage(30, "thirty_day_notice_sent_at", "urgent"),
)
EXPIRING_SOON_DAYS = 30
# Re-engagement is offered this long after expiry, within a week (a late run still sends,
# a first deploy does not mail every license that ever expired).
RE_ENGAGEMENT_AFTER = timedelta(days=30)
RE_ENGAGEMENT_WINDOW = timedelta(days=7)
NOTICE_RELATED = ("brand__user", "ip_asset")  # what every message reads of a license


def long_date(value: datetime | date) -> str:
    """ "March 5, 2027" (en-US, as the spec's emails print dates)."""
    return f"{value:%B} {value.day}, {value.year}"


def live(queryset: QuerySet) -> QuerySet:
    return queryset.filter(deleted_at__isnull=True)


# --- people and context ----------------------------------------------------------------


def brand_contact_name(license: License) -> str:
    return license.brand.user.get_full_name() or license.brand.name


def current_owners(licenses: Sequence[License], now: datetime) -> dict[int, list[IpOwnership]]:
    """Current ownership rows (with creator and user) per asset id, in one query."""
    rows = IpOwnership.objects.filter(ip_asset_id__in={lic.ip_asset_id for lic in licenses}).filter(
        Q(end_date__isnull=True) | Q(end_date__gt=now), start_date__lte=now
    )
    owners: dict[int, list[IpOwnership]] = {}
    for row in rows.select_related("creator__user").order_by("pk"):
        owners.setdefault(row.ip_asset_id, []).append(row)
    return owners


def creator_name(ownership: IpOwnership) -> str:
    return ownership.creator.display_name or ownership.creator.user.get_full_name() or "Creator"


def offer_context(license: License, offer: RenewalOffer | None) -> dict[str, Any] | None:
    if offer is None:
        return None
    change = (
        (offer.fee_cents - offer.original_fee_cents) * 100 / offer.original_fee_cents if offer.original_fee_cents else 0
    )
    return {
        "id": offer.pk,
        "fee": dollars(offer.fee_cents),
        "original_fee": dollars(offer.original_fee_cents),
        "fee_change": f"{change:+.1f}%",
        "start_date": long_date(offer.start_date),
        "end_date": long_date(offer.end_date),
        "expires": long_date(offer.expires_at),
        "adjustments": [f"{a['label']}: {a['percent']:+.1f}%" for a in offer.adjustments],
        "url": app_url("license-renewal-offer", license_id=license.pk, offer_id=offer.pk),
    }


def base_context(license: License, *, renewable: bool = False) -> dict[str, Any]:
    """What every license message says. `renewal_url` (the brand's current renewal offer,
    made on demand) only when the license can be renewed: every link in a message works."""
    return {
        "license_id": license.pk,
        "asset_title": license.ip_asset.title,
        "brand_name": license.brand.name,
        "expiry_date": long_date(license.end_date),
        "auto_renew": license.auto_renew,
        "license_url": app_url("license", license_id=license.pk),
        "renewal_url": app_url("license-renewal", license_id=license.pk) if renewable else None,
    }


def renewable_ids(licenses: Sequence[License], now: datetime) -> set[int]:
    """The licenses that can be renewed now (constant queries per batch)."""
    return {pk for pk, check in check_eligibility_many(licenses, now).items() if check.eligible}


def blocked_reason(check: Eligibility | None) -> str | None:
    """Why the brand's notice carries no offer, in words (None: it is eligible)."""
    if check is None or check.eligible:
        return None
    reasons = [code for code in check.blocking if code != "OUTSIDE_WINDOW"]
    if not reasons:
        return "Your renewal offer follows when the renewal window opens, 90 days before the end date."
    if reasons[0] == "RENEWAL_EXISTS":
        return "This license already has a renewal."
    return f"This license cannot be renewed online: {REASONS[reasons[0]]}"


# --- 90/60/30-day notices ----------------------------------------------------------------


def notice_candidates(stage: NoticeStage, now: datetime) -> QuerySet:
    """In force, not yet told at this stage, ending within a 3-day window around the mark.

    No catch-up: a license created with 45 days left gets the 30-day notice only.
    """
    window_start = start_of_day(now + timedelta(days=stage.days - 1))
    window_end = start_of_day(now + timedelta(days=stage.days + 2))
    return live(License.objects).filter(
        status__in=IN_FORCE, end_date__gte=window_start, end_date__lt=window_end, **{f"{stage.marker}__isnull": True}
    )


def notice_messages(
    stage: NoticeStage,
    license: License,
    owners: list[IpOwnership],
    offer: RenewalOffer | None,
    blocked: str | None = None,
) -> tuple[EmailMessage, list[EmailMessage]]:
    """The brand's message (it carries the live renewal offer: the expiry notice and the
    renewal reminder are one email; without one, `blocked` says why) and one per
    current owner."""
    context = base_context(license) | {"stage": stage.days, "days_remaining": stage.days, "urgency": stage.urgency}
    brand_context = context | {
        "user_name": brand_contact_name(license),
        "recipient_role": "brand",
        "offer": offer_context(license, offer),
        "renewal_blocked": None if offer else blocked,
        # The renewal workflow's final notice (7 days before the end) follows for a
        # license that can be renewed; the 30-day notice is not the last word then.
        "final_notice_follows": offer is not None,
    }
    brand = build_email("license_expiry_notice", license.brand.user.email, brand_context)
    creators = [
        build_email(
            "license_expiry_notice",
            row.creator.user.email,
            context | {"user_name": creator_name(row), "recipient_role": "creator", "offer": None},
        )
        for row in owners
        if row.creator.user.email
    ]
    return brand, creators


@dataclass
class NoticeBatch:
    """A claimed batch of one stage's licenses (marker set and committed) and what their
    notices need, read while the batch was locked."""

    licenses: list[License]
    owners: dict[int, list[IpOwnership]]  # current owners per asset id
    offers: dict[int, RenewalOffer]  # live offer per renewable license id: the brand's notice carries it
    blocked: dict[int, str]  # why a license has no offer, per license id (in words)
    held: set[int] = field(default_factory=set)  # license ids whose renewal_notified_at the claim set


def notice_batches(stage: NoticeStage, now: datetime) -> Iterator[NoticeBatch]:
    """The stage's candidates in claimed batches of EMAIL_BATCH_SIZE.

    The claim gives every renewable license its live renewal offer (made where none is
    live: the one made at 90 days lasts 30, so the 60- and 30-day notices carry a fresh
    one the brand can accept), sets the stage's marker and, for a license told of an
    offer for the first time, `renewal_notified_at` (so the renewal workflow does not
    email the offer alone while the notice carrying it is being sent; given back only
    if the notice is known not to have gone: refused or never attempted).
    """
    claimed: list[NoticeBatch] = []

    def claim(rows: list[License]) -> list[License]:
        checks = check_eligibility_many(rows, now)
        offers, _ = offers_for_locked(rows, checks, now)  # the rows are locked by the claim
        blocked = {lic.pk: reason for lic in rows if (reason := blocked_reason(checks.get(lic.pk)))}
        batch = NoticeBatch(rows, current_owners(rows, now), offers, blocked)
        batch.held = {lic.pk for lic in rows if lic.pk in offers and lic.renewal_notified_at is None}
        License.objects.filter(pk__in=batch.held).update(renewal_notified_at=now)
        claimed.append(batch)
        return claim_setting(stage.marker, now)(rows)

    for _ in claimed_batches(notice_candidates(stage, now).select_related(*NOTICE_RELATED), claim):
        yield claimed.pop()


def send_notice_batch(stage: NoticeStage, batch: NoticeBatch, now: datetime) -> int:
    """Send a claimed batch's notices; return how many licenses were told.

    The brand's message decides (the brand must act); the owners' messages go after it
    and only when it was accepted (`deliver_rows`), so a brand retried next run does not
    mean a second copy for the owners. A refused owner is not retried.
    """

    def messages(lic: License) -> list[EmailMessage]:
        brand, creators = notice_messages(
            stage, lic, batch.owners.get(lic.ip_asset_id, []), batch.offers.get(lic.pk), batch.blocked.get(lic.pk)
        )
        return [brand, *creators]

    delivery = deliver_rows(batch.licenses, messages)
    for license, refused in Counter(delivery.also_refused).items():
        log.warning("license=%s stage=%s: %d creator notice(s) refused", license.pk, stage.days, refused)
    told = delivery.sent
    told_ids = {lic.pk for lic in told}
    with transaction.atomic():
        release(delivery.to_retry, stage.marker)
        # Given back only where the notice surely did not go (refused, never attempted).
        # One in doubt (cut off mid-send) may have carried the offer: it keeps the marker,
        # so the offer is never emailed twice.
        License.objects.filter(pk__in=batch.held & {lic.pk for lic in delivery.to_retry}).update(
            renewal_notified_at=None
        )
        License.objects.filter(pk__in=[pk for pk in told_ids if pk in batch.offers]).update(renewal_notified_at=now)
        Event.objects.bulk_create(
            system_event(
                "license.expiry_notification_sent",
                license_id=lic.pk,
                ip_asset_id=lic.ip_asset_id,
                brand_id=lic.brand_id,
                props_json={
                    "daysUntilExpiry": stage.days,
                    "expiryDate": lic.end_date.isoformat(),
                    "autoRenewEnabled": lic.auto_renew,
                    "renewalOfferId": batch.offers[lic.pk].pk if lic.pk in batch.offers else None,
                },
            )
            for lic in told
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(
                action="expiry_notification_sent",
                entity_type="license",
                entity_id=str(lic.pk),
                after={"notificationStage": f"{stage.days}_day_notice", "sentAt": now.isoformat()},
            )
            for lic in told
        )
        if stage.days == 30:
            notify_thirty_days(told, batch.owners)
    delivery.raise_error()
    return len(told)


def notify_thirty_days(licenses: Iterable[License], owners: dict[int, list[IpOwnership]]) -> None:
    rows = []
    for lic in licenses:
        when = long_date(lic.end_date)
        common = {
            "type": Notification.Type.LICENSE,
            "priority": Notification.Priority.HIGH,
            "title": "License Expiring in 30 Days",
            "action_url": f"/licenses/{lic.pk}",
            "metadata": {"licenseId": lic.pk, "daysUntilExpiry": 30, "notificationType": "expiry"},
        }
        asset = lic.ip_asset.title
        rows.append(
            Notification(
                user_id=lic.brand.user_id,
                message=f'Your license for "{asset}" expires on {when}. Review renewal options.',
                **common,
            )
        )
        for user_id in dict.fromkeys(row.creator.user_id for row in owners.get(lic.ip_asset_id, [])):
            rows.append(
                Notification(
                    user_id=user_id,
                    message=f'The license for "{asset}" with {lic.brand.name} expires on {when}.',
                    **common,
                )
            )
    Notification.objects.bulk_create(rows)


def marked_batches(queryset: QuerySet, marker: str, now: datetime) -> Iterator[list[License]]:
    """Claimed batches of `queryset` (with brand, brand user and asset), `marker` set to `now`."""
    return claimed_batches(queryset.select_related(*NOTICE_RELATED), claim_setting(marker, now))


def send_expiry_notices(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for stage in NOTICE_STAGES:
        counts[f"notices_{stage.days}d"] = sum(
            send_notice_batch(stage, batch, now) for batch in notice_batches(stage, now)
        )
    counts["marked_expiring_soon"] = mark_expiring_soon(now)
    return counts


def mark_expiring_soon(now: datetime) -> int:
    """ACTIVE licenses ending within 30 days become EXPIRING_SOON (one owner: this job)."""
    due = live(License.objects).filter(
        status=LicenseStatus.ACTIVE, end_date__lte=now + timedelta(days=EXPIRING_SOON_DAYS)
    )
    moved = 0
    for batch in locked_batches(due.only("pk"), 1000):
        moved += len(
            transition_many(
                [lic.pk for lic in batch],
                LicenseStatus.ACTIVE,
                LicenseStatus.EXPIRING_SOON,
                reason="License approaching expiry date (30 days)",
                now=now,
            )
        )
    return moved


# --- end of term: grace, expiry, and what follows ---------------------------------------


def start_grace_periods(now: datetime) -> int:
    """In force past the end date and not yet in grace: grace ends end_date + grace days.

    A license with 0 grace days gets a grace end equal to its end date, so the expiry
    step of the same run expires it (the original's fallback to 7 made 0 unreachable).
    """
    due = live(License.objects).filter(status__in=IN_FORCE, end_date__lt=now, grace_period_end_date__isnull=True)
    started = 0
    for batch in locked_batches(due.only("pk", "status", "end_date", "grace_period_days"), 1000):
        for status in IN_FORCE:
            rows = [lic for lic in batch if lic.status == status]
            for days in {lic.grace_period_days for lic in rows}:
                ids = [lic.pk for lic in rows if lic.grace_period_days == days]
                started += set_grace(ids, status, days, now)
    return started


def set_grace(ids: list[int], status: str, days: int, now: datetime) -> int:
    grace_end = F("end_date") + timedelta(days=days)
    if status == LicenseStatus.ACTIVE:
        moved = transition_many(
            ids,
            LicenseStatus.ACTIVE,
            LicenseStatus.EXPIRING_SOON,
            reason=f"License end date reached; grace period of {days} days",
            now=now,
            grace_period_end_date=grace_end,
        )
    else:
        License.objects.filter(pk__in=ids, status=status).update(grace_period_end_date=grace_end)
        moved = ids
    if days:
        Event.objects.bulk_create(
            system_event("license.grace_period_started", license_id=pk, props_json={"gracePeriodDays": days})
            for pk in moved
        )
    return len(moved) if days else 0


def expire_after_grace(now: datetime) -> int:
    """Grace over: EXPIRING_SOON -> EXPIRED with expired_at; projects left without a
    license in force are COMPLETED."""
    due = live(License.objects).filter(status=LicenseStatus.EXPIRING_SOON, grace_period_end_date__lte=now)
    expired = 0
    for batch in locked_batches(due.only("pk", "project_id"), 1000):
        moved = transition_many(
            [lic.pk for lic in batch],
            LicenseStatus.EXPIRING_SOON,
            LicenseStatus.EXPIRED,
            reason="Grace period ended",
            now=now,
            expired_at=now,
        )
        expired += len(moved)
        complete_projects({lic.project_id for lic in batch if lic.pk in set(moved) and lic.project_id}, now)
    return expired


def complete_projects(project_ids: set[int], now: datetime) -> int:
    """Projects left without a license in force are COMPLETED, through the project state
    machine (`transition_projects`: validated, audited)."""
    if not project_ids:
        return 0
    in_force = live(License.objects).filter(project=OuterRef("pk"), status__in=IN_FORCE)
    done = list(
        Project.objects.filter(pk__in=project_ids, status__in=(ProjectStatus.ACTIVE, ProjectStatus.IN_PROGRESS))
        .exclude(Exists(in_force))
        .values_list("pk", "status")
    )
    return sum(
        len(
            transition_projects(
                [pk for pk, was in done if was == status],
                status,
                ProjectStatus.COMPLETED,
                reason="last license expired",
                now=now,
                action="project_completed",
            )
        )
        for status in (ProjectStatus.ACTIVE, ProjectStatus.IN_PROGRESS)
    )


def grace_messages(license: License, renewable: bool = False) -> list[EmailMessage]:
    context = base_context(license, renewable=renewable) | {
        "user_name": brand_contact_name(license),
        "grace_end_date": long_date(license.grace_period_end_date),
        "grace_days": license.grace_period_days,
    }
    return [build_email("license_grace_period", license.brand.user.email, context)]


def send_grace_notices(now: datetime) -> int:
    """One email to the brand when a real grace period starts (the original re-sent it
    every run, up to 7 x 24 times)."""
    due = live(License.objects).filter(
        status=LicenseStatus.EXPIRING_SOON,
        grace_period_end_date__gt=now,
        grace_period_days__gt=0,
        grace_notice_sent_at__isnull=True,
    )
    renewable: set[int] = set()

    def claim(rows: list[License]) -> list[License]:
        renewable.clear()
        renewable.update(renewable_ids(rows, now))
        return claim_setting("grace_notice_sent_at", now)(rows)

    sent = 0
    for batch in claimed_batches(due.select_related(*NOTICE_RELATED), claim):
        delivery = deliver_rows(batch, lambda lic: grace_messages(lic, lic.pk in renewable))
        release(delivery.to_retry, "grace_notice_sent_at")
        sent += len(delivery.sent)
        delivery.raise_error()
    return sent


def expired_messages(
    license: License, owners: list[IpOwnership], now: datetime, renewable: bool = False
) -> list[EmailMessage]:
    """The brand's "license expired" message (with the renewal link while the license can
    still be renewed: up to 30 days after its end) and one per current owner."""
    expired_on = long_date(license.expired_at or now)
    context = base_context(license) | {"expired_on": expired_on}
    brand = build_email(
        "license_expired",
        license.brand.user.email,
        base_context(license, renewable=renewable)
        | {"expired_on": expired_on, "user_name": brand_contact_name(license), "recipient_role": "brand"},
    )
    creators = [
        build_email(
            "license_expired",
            row.creator.user.email,
            context | {"user_name": creator_name(row), "recipient_role": "creator"},
        )
        for row in owners
        if row.creator.user.email
    ]
    return [brand, *creators]


def send_expired_notices(now: datetime) -> int:
    """Brand and current owners emailed, brand notified in-app, once per license (the
    brand's email decides; the owners' go after it)."""
    due = live(License.objects).filter(status=LicenseStatus.EXPIRED, expired_notice_sent_at__isnull=True)
    owners: dict[int, list[IpOwnership]] = {}
    renewable: set[int] = set()

    def claim(rows: list[License]) -> list[License]:
        owners.clear()
        owners.update(current_owners(rows, now))
        renewable.clear()
        renewable.update(renewable_ids(rows, now))
        return claim_setting("expired_notice_sent_at", now)(rows)

    sent = 0
    for batch in claimed_batches(due.select_related(*NOTICE_RELATED), claim):
        delivery = deliver_rows(
            batch, lambda lic: expired_messages(lic, owners.get(lic.ip_asset_id, []), now, lic.pk in renewable)
        )
        told = delivery.sent
        with transaction.atomic():
            release(delivery.to_retry, "expired_notice_sent_at")
            Notification.objects.bulk_create(
                Notification(
                    user_id=lic.brand.user_id,
                    type=Notification.Type.LICENSE,
                    priority=Notification.Priority.HIGH,
                    title="License Expired",
                    message=f'Your license for "{lic.ip_asset.title}" has expired.',
                    action_url=f"/licenses/{lic.pk}",
                    metadata={"licenseId": lic.pk, "notificationType": "expired"},
                )
                for lic in told
            )
            Event.objects.bulk_create(
                system_event(
                    "license.expired",
                    license_id=lic.pk,
                    ip_asset_id=lic.ip_asset_id,
                    brand_id=lic.brand_id,
                    props_json={"endDate": lic.end_date.isoformat(), "expiredAt": (lic.expired_at or now).isoformat()},
                )
                for lic in told
            )
        sent += len(told)
        delivery.raise_error()
    return sent


def re_engagement_messages(license: License) -> list[EmailMessage]:
    """The renewal window has closed by now (30 days after the end): the message leads to
    the license's page, not to a renewal that can no longer be made."""
    context = base_context(license) | {
        "user_name": brand_contact_name(license),
        "expired_on": long_date(license.expired_at),
    }
    return [build_email("license_re_engagement", license.brand.user.email, context)]


def send_re_engagement(now: datetime) -> int:
    """30 days after expiry, invite the brand to license the asset again (a dedicated
    template: the original reused the renewal offer's and could not render it)."""
    renewed = License.objects.filter(parent_license=OuterRef("pk"), deleted_at__isnull=True).exclude(
        status=LicenseStatus.CANCELED
    )
    due = (
        live(License.objects)
        .filter(
            status=LicenseStatus.EXPIRED,
            re_engagement_sent_at__isnull=True,
            expired_at__lte=now - RE_ENGAGEMENT_AFTER,
            expired_at__gt=now - RE_ENGAGEMENT_AFTER - RE_ENGAGEMENT_WINDOW,
            brand__deleted_at__isnull=True,
            ip_asset__deleted_at__isnull=True,
        )
        .exclude(Exists(renewed))
    )
    sent = 0
    for batch in marked_batches(due, "re_engagement_sent_at", now):
        delivery = deliver_rows(batch, re_engagement_messages)
        release(delivery.to_retry, "re_engagement_sent_at")
        sent += len(delivery.sent)
        delivery.raise_error()
    return sent


def expire_due_licenses(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    # Grace first, then expiry: a license whose grace is already over (or 0 days) expires
    # in the same run instead of being re-graced first (the original's ordering quirk).
    counts = {"grace_started": start_grace_periods(now), "expired": expire_after_grace(now)}
    counts["grace_emails"] = send_grace_notices(now)
    counts["expired_notices"] = send_expired_notices(now)
    counts["re_engagement_emails"] = send_re_engagement(now)
    return counts


def cancel_stale_drafts(now: datetime | None = None, max_age_days: int = 90) -> int:
    now = now or timezone.now()
    due = live(License.objects).filter(status=LicenseStatus.DRAFT, created_at__lt=now - timedelta(days=max_age_days))
    cancelled = 0
    for batch in locked_batches(due.only("pk"), 1000):
        cancelled += len(
            transition_many(
                [lic.pk for lic in batch],
                LicenseStatus.DRAFT,
                LicenseStatus.CANCELED,
                reason=f"Draft abandoned for more than {max_age_days} days",
                now=now,
            )
        )
    return cancelled
