"""The admin of forensic watermark issuances: staff search a forensic id found in a leaked
copy and see who received it, when, and of which asset. Read-only: the record is
append-only (registered from `apps.AssetsConfig.ready`)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest

from yesgoddess.media.forensic import verify_forensic_id

from .models import WatermarkIssuance


@admin.register(WatermarkIssuance)
class WatermarkIssuanceAdmin(admin.ModelAdmin):
    list_display = ("forensic_id", "asset_id", "recipient", "issued_at", "verified")
    list_filter = ("issued_at",)
    search_fields = ("=forensic_id", "=asset__id", "recipient__username")
    list_select_related = ("recipient",)
    fields = ("forensic_id", "asset_id", "recipient", "issued_at", "options", "storage_key", "created_at", "verified")
    readonly_fields = fields
    date_hierarchy = "issued_at"

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # An id read off a leaked copy may come in upper case or with spaces around it.
        return super().get_search_results(request, queryset, search_term.strip().lower())

    @admin.display(boolean=True, description="id verifies")
    def verified(self, issuance: WatermarkIssuance) -> bool:
        return verify_forensic_id(
            issuance.forensic_id,
            issuance.recipient_id,
            issuance.asset_id,
            issuance.issued_at,
            settings.WATERMARK_FORENSIC_KEY.encode(),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WatermarkIssuance | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WatermarkIssuance | None = None) -> bool:
        return False
