"""Creators in the operator's admin: verification, payout onboarding and activity (assets
owned, statements, monthly reports). Verification and onboarding are set by their own
flows, so those fields are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from yesgoddess.assets.models import IpOwnership
from yesgoddess.core.admin_tools import AccountColumns, ReadOnlyAdmin, admin_link, changelist_link, related_count
from yesgoddess.royalties.models import RoyaltyStatement

from .models import Creator, CreatorMonthlyReport


@admin.register(Creator)
class CreatorAdmin(AccountColumns, admin.ModelAdmin):
    list_display = (
        "id",
        "display_name",
        "account",
        "verification_status",
        "onboarding_status",
        "vip_status",
        "assets",
        "statements",
        "last_login",
        "created_at",
        "deleted_at",
    )
    list_filter = (
        "verification_status",
        "onboarding_status",
        "vip_status",
        ("deleted_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("=id", "display_name", "user__username", "user__email")
    list_select_related = ("user",)
    readonly_fields = (
        "user",
        "verification_status",
        "verified_at",
        "onboarding_status",
        "onboarding_reminders_sent",
        "onboarding_reminder_sent_at",
        "created_at",
        "deleted_at",
    )

    # Creators sign up through the platform and are never hard-deleted (statements refer to them).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Creator]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                ownership_count=related_count(IpOwnership, "creator"),
                statement_count=related_count(RoyaltyStatement, "creator"),
            )
        )

    @admin.display(description="assets owned", ordering="ownership_count")
    def assets(self, creator: Creator) -> str:
        return changelist_link(IpOwnership, creator.ownership_count, creator__id__exact=creator.pk)

    @admin.display(description="statements", ordering="statement_count")
    def statements(self, creator: Creator) -> str:
        return changelist_link(RoyaltyStatement, creator.statement_count, creator__id__exact=creator.pk)


@admin.register(CreatorMonthlyReport)
class CreatorMonthlyReportAdmin(ReadOnlyAdmin):
    list_display = ("id", "creator_link", "month", "earnings_cents", "new_licenses", "active_licenses", "status")
    list_filter = ("status", "month")
    search_fields = ("=creator__id", "creator__display_name")
    list_select_related = ("creator",)

    @admin.display(description="creator")
    def creator_link(self, report: CreatorMonthlyReport) -> str:
        return admin_link(report.creator)
