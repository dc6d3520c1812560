"""Licences in the operator's admin: status and end date at a glance, the status history,
renewal offers and overages of each. Statuses move only through `transitions.transition`
(and the expiry/renewal jobs), so status and the once-only markers are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from yesgoddess.core.admin_tools import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    link_audit_entity,
    link_job_argument,
    money,
)

from .models import License, LicenseStatusHistory, LicenseUsageOverage, RenewalOffer

link_job_argument("license_id", License)
link_job_argument("renewal_id", License)
link_audit_entity("license", License)

MARKERS = (
    "ninety_day_notice_sent_at",
    "sixty_day_notice_sent_at",
    "thirty_day_notice_sent_at",
    "grace_notice_sent_at",
    "expired_notice_sent_at",
    "re_engagement_sent_at",
    "renewal_notified_at",
    "renewal_final_notice_sent_at",
)


class StatusHistoryInline(ReadOnlyInline):
    model = LicenseStatusHistory
    fields = ("transitioned_at", "from_status", "to_status", "reason", "transitioned_by")
    readonly_fields = fields
    ordering = ("-transitioned_at",)
    show_change_link = False


class RenewalOfferInline(ReadOnlyInline):
    model = RenewalOffer
    fk_name = "license"
    fields = ("status", "fee", "rev_share_bps", "start_date", "end_date", "expires_at", "renewal_license")
    readonly_fields = fields
    ordering = ("-created_at",)

    @admin.display(description="fee")
    def fee(self, offer: RenewalOffer) -> str:
        return money(offer.fee_cents)


@admin.register(License)
class LicenseAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "asset_link",
        "brand_link",
        "license_type",
        "status",
        "start_date",
        "end_date",
        "fee",
        "auto_renew",
    )
    list_filter = ("status", "license_type", "auto_renew", "end_date", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "brand__name", "ip_asset__title", "=ip_asset__id")
    list_select_related = ("brand", "ip_asset")
    date_hierarchy = "end_date"
    show_full_result_count = False
    raw_id_fields = ("brand", "ip_asset", "project", "parent_license", "created_by")
    inlines = (StatusHistoryInline, RenewalOfferInline)
    readonly_fields = (
        "status",
        "brand",
        "ip_asset",
        "parent_license",
        "signed_at",
        "grace_period_end_date",
        "expired_at",
        *MARKERS,
        "last_usage_at",
        "total_usage_events",
        "created_at",
        "created_by",
        "updated_at",
        "deleted_at",
    )

    # Licences are made and ended by their workflows (offers, renewals, expiry), not here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="asset", ordering="ip_asset__title")
    def asset_link(self, license: License) -> str:
        return admin_link(license.ip_asset)

    @admin.display(description="brand", ordering="brand__name")
    def brand_link(self, license: License) -> str:
        return admin_link(license.brand)

    @admin.display(description="fee", ordering="fee_cents")
    def fee(self, license: License) -> str:
        return money(license.fee_cents)


@admin.register(RenewalOffer)
class RenewalOfferAdmin(ReadOnlyAdmin):
    list_display = ("id", "license_link", "status", "fee", "rev_share_bps", "start_date", "end_date", "expires_at")
    list_filter = ("status", "expires_at")
    search_fields = ("=id", "=license__id", "license__brand__name")
    list_select_related = ("license",)

    @admin.display(description="licence")
    def license_link(self, offer: RenewalOffer) -> str:
        return admin_link(offer.license)

    @admin.display(description="fee", ordering="fee_cents")
    def fee(self, offer: RenewalOffer) -> str:
        return money(offer.fee_cents)


@admin.register(LicenseUsageOverage)
class LicenseUsageOverageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "license_link",
        "usage_type",
        "period_start",
        "limit_quantity",
        "actual_quantity",
        "overage_quantity",
        "status",
        "notified_at",
    )
    list_filter = ("status", "usage_type")
    search_fields = ("=license__id",)
    list_select_related = ("license",)

    @admin.display(description="licence")
    def license_link(self, overage: LicenseUsageOverage) -> str:
        return admin_link(overage.license)
