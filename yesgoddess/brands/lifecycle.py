"""The brand lifecycle rules (spec B §2 as settled by DECISIONS.md): the admins' reminder
of brands awaiting verification, the re-engagement of inactive brands, and the removal of
deleted brands. Each workflow is run by its job in `jobs/handlers/brands.py`.

- Verification digest (brand-verification-reminder, daily 09:00): one summary email to the
  admins listing up to 50 brands pending verification for more than 24 hours (and counting
  the rest); once per UTC day (`VerificationDigest`), nothing when none are pending.
- Re-engagement (brand-inactivity-check, Mondays 00:00): a verified brand that created no
  project and no license in 90 days gets a re-engagement email at its primary contact, at
  most once per 90 days (`re_engagement_sent_at`).
- Data cleanup (brand-data-cleanup, 1st of the month 00:00): brands soft-deleted more than
  90 days ago are hard-deleted with their stored files; a brand still referenced (licenses,
  projects, ...) is anonymised instead: files deleted, personal fields cleared.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, ProtectedError, Q, RestrictedError
from django.utils import timezone

from yesgoddess.analytics.models import Event, system_event
from yesgoddess.core.batches import in_pk_batches, referencing_models
from yesgoddess.core.dates import start_of_day
from yesgoddess.core.models import AuditEvent
from yesgoddess.licensing.models import License
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.services import admin_emails, build_email
from yesgoddess.projects.models import Project

from .models import Brand, VerificationDigest, VerificationStatus

log = logging.getLogger(__name__)

PENDING_FOR = timedelta(hours=24)
DIGEST_LISTS = 50
INACTIVE_FOR = timedelta(days=90)
RE_ENGAGE_EVERY_DAYS = 90
RETENTION_AFTER_DELETE = timedelta(days=90)


# --- brand-verification-reminder ---------------------------------------------------------


def pending_brands(now: datetime):
    return Brand.objects.filter(
        deleted_at__isnull=True, verification_status=VerificationStatus.PENDING, created_at__lt=now - PENDING_FOR
    )


def verification_context(brands: list[Brand], total: int, now: datetime) -> dict[str, Any]:
    return {
        "count": total,
        "brands": [
            {
                "id": brand.pk,
                "name": brand.name,
                "pending_since": brand.created_at,
                "verify_url": f"{settings.APP_URL}/admin/brands/{brand.pk}/verify",
            }
            for brand in brands
        ],
        "more": total - len(brands),
        "now": now,
        "admin_url": f"{settings.APP_URL}/admin/brands?status=pending",
    }


def send_verification_digest(now: datetime | None = None) -> dict[str, Any]:
    """The admins' daily summary of brands awaiting verification (once per UTC day)."""
    now = now or timezone.now()
    pending = pending_brands(now)
    total = pending.count()
    if not total:
        return {"pending": 0, "sent": 0}
    recipients = list(dict.fromkeys(admin_emails()))
    if not recipients:
        log.warning("brand-verification-reminder: %d brands pending but no admin address (ADMIN_EMAILS, staff)", total)
        return {"pending": total, "sent": 0, "no_recipients": 1}
    try:
        with transaction.atomic():
            digest = VerificationDigest.objects.create(day=now.date(), pending=total, recipients=len(recipients))
    except IntegrityError:
        return {"pending": total, "sent": 0, "skipped": "already sent today"}
    listed = list(pending.order_by("created_at", "pk")[:DIGEST_LISTS])
    context = verification_context(listed, total, now)
    result = deliver([build_email("brand_verification_reminder", address, context) for address in recipients])
    if result.error is not None and not result.sent and not result.in_doubt:
        digest.delete()  # nothing went out: the retry sends the digest
        result.raise_error()
    VerificationDigest.objects.filter(pk=digest.pk).update(sent=len(result.sent))
    if result.error is not None:
        log.warning(
            "brand-verification-reminder: delivery stopped after %d of %d (%s)",
            len(result.sent),
            len(recipients),
            type(result.error).__name__,
        )
    return {
        "pending": total,
        "listed": len(listed),
        "sent": len(result.sent),
        "refused": len(result.refused),
        "unsent": len(result.unsent) + len(result.in_doubt),
    }


# --- brand-inactivity-check --------------------------------------------------------------


def inactive_brands(now: datetime):
    """Verified live brands older than 90 days, with no project and no license created in
    the last 90 days, not re-engaged in the last 90 (calendar) days."""
    since = now - INACTIVE_FOR
    # Compared by UTC date, so a weekly run a few seconds earlier than last time still
    # counts 13 weeks as more than 90 days.
    re_engage_before = start_of_day(now) - timedelta(days=RE_ENGAGE_EVERY_DAYS - 1)
    return (
        Brand.objects.filter(
            deleted_at__isnull=True,
            anonymised_at__isnull=True,
            verification_status=VerificationStatus.VERIFIED,
            created_at__lte=since,
            user__is_active=True,
            user__deleted_at__isnull=True,
        )
        .filter(Q(re_engagement_sent_at__isnull=True) | Q(re_engagement_sent_at__lt=re_engage_before))
        .exclude(Exists(Project.objects.filter(brand=OuterRef("pk"), created_at__gt=since)))
        .exclude(Exists(License.objects.filter(brand=OuterRef("pk"), created_at__gt=since)))
    )


def re_engagement_context(brand: Brand) -> dict[str, Any]:
    return {
        "brand_name": brand.name,
        "contact_name": brand.contact_name(),
        "inactive_days": INACTIVE_FOR.days,
        "cta_url": f"{settings.APP_URL}/projects/new",
        "creators_url": f"{settings.APP_URL}/creators",
        "dashboard_url": f"{settings.APP_URL}/dashboard",
    }


def send_re_engagement(now: datetime | None = None) -> dict[str, int]:
    """Re-engage verified brands inactive for 90 days (each at most once per 90 days)."""
    now = now or timezone.now()
    counts = {"sent": 0, "refused": 0, "unsent": 0, "in_doubt": 0, "no_address": 0}
    previous: dict[int, datetime | None] = {}

    def claim(rows: list[Brand]) -> list[Brand]:
        with_address = [b for b in rows if b.contact_email()]
        counts["no_address"] += len(rows) - len(with_address)
        for brand in with_address:
            previous[brand.pk] = brand.re_engagement_sent_at
        Brand.objects.filter(pk__in=[b.pk for b in with_address]).update(re_engagement_sent_at=now)
        return with_address

    for batch in claimed_batches(inactive_brands(now).select_related("user"), claim):
        result = deliver(
            [build_email("brand_re_engagement", brand.contact_email(), re_engagement_context(brand)) for brand in batch]
        )
        released = [batch[i] for i in result.unsent]
        for brand in released:  # never attempted: back to what it was, for the retry
            brand.re_engagement_sent_at = previous[brand.pk]
        Brand.objects.bulk_update(released, ["re_engagement_sent_at"])
        Event.objects.bulk_create(
            system_event(
                "brand.re_engagement_sent", brand_id=batch[i].pk, props_json={"inactiveDays": INACTIVE_FOR.days}
            )
            for i in result.sent
        )
        result.tally(counts)
        result.raise_error()
    return counts


# --- brand-data-cleanup ------------------------------------------------------------------


def delete_brand_files(brand: Brand) -> None:
    """Delete the brand's stored files (a missing file is not an error)."""
    for field in (brand.logo, brand.brand_guidelines):
        if field.name:
            field.storage.delete(field.name)


def anonymise_brand(brand: Brand, now: datetime) -> None:
    """Erase what identifies the brand and its people; the row stays for its references."""
    brand.name = f"Deleted brand {brand.pk}"
    brand.industry = None
    brand.website = None
    brand.description = None
    brand.logo = ""
    brand.brand_guidelines = ""
    brand.contact_info = None
    brand.billing_info = None
    brand.verification_notes = None
    brand.anonymised_at = now
    brand.save(
        update_fields=[
            "name",
            "industry",
            "website",
            "description",
            "logo",
            "brand_guidelines",
            "contact_info",
            "billing_info",
            "verification_notes",
            "anonymised_at",
        ]
    )


def purge_deleted_brands(now: datetime | None = None) -> dict[str, int]:
    """Delete brands soft-deleted over 90 days ago, or anonymise them when other records
    still reference them."""
    now = now or timezone.now()
    counts = {"deleted": 0, "anonymised": 0, "still_referenced": 0, "errors": 0}
    due = Brand.objects.filter(deleted_at__lt=now - RETENTION_AFTER_DELETE)
    for brand in in_pk_batches(due, batch=100):
        brand_id = brand.pk
        try:
            delete_brand_files(brand)
        except Exception as exc:  # storage trouble: keep the row (it names the files), retry next month
            log.warning("brand=%s files not deleted: %s", brand_id, type(exc).__name__)
            counts["errors"] += 1
            continue
        with transaction.atomic():
            try:
                with transaction.atomic():
                    brand.delete()
            except (ProtectedError, RestrictedError) as exc:
                referenced = referencing_models(exc)
                if brand.anonymised_at is not None:
                    counts["still_referenced"] += 1
                    continue
                anonymise_brand(brand, now)
                counts["anonymised"] += 1
                log.info("brand=%s anonymised: referenced by %s", brand_id, referenced)
                action, after = "BRAND_ANONYMISED", {"referenced_by": referenced}
            else:
                counts["deleted"] += 1
                action, after = "BRAND_PERMANENTLY_DELETED", {}
            AuditEvent.objects.create(
                action=action, entity_type="brand", entity_id=str(brand_id), after=after, created_at=now
            )
    return counts
