"""Assets in the operator's admin: why an asset is stuck (its state, its jobs and their
errors), who owns it, where it is licensed, and the two safe actions (rescan, regenerate)
through the same rules as the API. The pipeline owns every state field: read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from jobs.api import jobs_for
from yesgoddess.core.admin_tools import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    changelist_link,
    jobs_table,
    link_audit_entity,
    link_job_argument,
)
from yesgoddess.core.models import AuditEvent
from yesgoddess.licensing.models import License

from . import reprocessing
from .models import IpAsset, IpOwnership, OwnershipFinding, StorageMetrics

link_job_argument("asset_id", IpAsset)
link_job_argument("logo_asset_id", IpAsset)
link_audit_entity("asset", IpAsset)
link_audit_entity("ownership", IpOwnership)

LICENSES_SHOWN = 10


class OwnershipInline(ReadOnlyInline):
    model = IpOwnership
    fields = ("creator_link", "share_bps", "ownership_type", "start_date", "end_date", "disputed", "resolved_at")
    readonly_fields = fields

    @admin.display(description="creator")
    def creator_link(self, ownership: IpOwnership) -> str:
        return admin_link(ownership.creator)


@admin.register(IpAsset)
class IpAssetAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "type",
        "status",
        "scan_status",
        "owner",
        "project_link",
        "file_size",
        "created_at",
        "deleted_at",
    )
    list_filter = ("status", "scan_status", "type", ("deleted_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = (
        "=id",
        "title",
        "original_filename",
        "created_by__username",
        "created_by__email",
        "ownerships__creator__display_name",
    )
    list_select_related = ("created_by", "project")
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = (OwnershipInline,)
    actions = ("rescan", "regenerate")
    fieldsets = (
        (None, {"fields": ("title", "description", "type", "owner", "project_link", "parent_link")}),
        (
            "State (owned by the pipeline)",
            {
                "fields": (
                    "status",
                    "scan_status",
                    "rejection_reason",
                    "processing_started_at",
                    "pipeline_failed_at",
                    "scan_result",
                    "processing_jobs",
                    "audit_trail",
                )
            },
        ),
        ("Licences", {"fields": ("licenses_list",)}),
        (
            "File",
            {
                "fields": (
                    "original_filename",
                    "mime_type",
                    "declared_mime_type",
                    "file_size",
                    "storage_key",
                    "quarantine_key",
                    "version",
                    "metadata",
                )
            },
        ),
        ("Record", {"fields": ("created_at", "updated_at", "updated_by", "deleted_at")}),
    )
    # Everything but the title and description is owned by the pipeline or the API.
    readonly_fields = tuple(
        name for _, options in fieldsets for name in options["fields"] if name not in ("title", "description")
    )

    # Uploads go through the API (content sniffed, scanned); deletion is the API's soft delete.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="uploaded by", ordering="created_by__username")
    def owner(self, asset: IpAsset) -> str:
        return admin_link(asset.created_by)

    @admin.display(description="project", ordering="project__name")
    def project_link(self, asset: IpAsset) -> str:
        return admin_link(asset.project)

    @admin.display(description="parent asset")
    def parent_link(self, asset: IpAsset) -> str:
        return admin_link(asset.parent_asset)

    @admin.display(description="processing jobs (newest first)")
    def processing_jobs(self, asset: IpAsset) -> str:
        return jobs_table(lambda: jobs_for("asset_id", asset.pk))

    @admin.display(description="history")
    def audit_trail(self, asset: IpAsset) -> str:
        return changelist_link(AuditEvent, "audit trail of this asset", entity_type="asset", entity_id=asset.pk)

    @admin.display(description="licences")
    def licenses_list(self, asset: IpAsset) -> str:
        licenses = list(asset.licenses.select_related("brand").order_by("-end_date")[:LICENSES_SHOWN])
        if not licenses:
            return "-"
        rows = format_html_join(
            "",
            "<li>{} - {}, {} to {}</li>",
            (
                (admin_link(lic), admin_link(lic.brand), f"{lic.start_date:%Y-%m-%d}", f"{lic.end_date:%Y-%m-%d}")
                for lic in licenses
            ),
        )
        return format_html(
            "<ul>{}</ul>{}", rows, changelist_link(License, "all licences of this asset", ip_asset__id__exact=asset.pk)
        )

    @admin.action(description="Rescan the selected assets for viruses")
    def rescan(self, request: HttpRequest, queryset: QuerySet[IpAsset]) -> None:
        self._each(request, queryset, "rescan queued", lambda asset: reprocessing.request_rescan(asset, request.user))

    @admin.action(description="Regenerate the selected assets' derivatives (every step that fits the type)")
    def regenerate(self, request: HttpRequest, queryset: QuerySet[IpAsset]) -> None:
        self._each(
            request,
            queryset,
            "regeneration queued",
            lambda asset: reprocessing.request_regeneration(asset, reprocessing.steps_for_type(asset.type)),
        )

    def _each(self, request: HttpRequest, queryset: QuerySet[IpAsset], done: str, action: Any) -> None:
        queued, refused = [], []
        for asset in queryset.filter(deleted_at__isnull=True).order_by("pk"):
            try:
                action(asset)
                queued.append(str(asset.pk))
            except reprocessing.RequestRefused as exc:
                refused.append(f"asset {asset.pk}: {exc}")
        if queued:
            self.message_user(request, f"{done} for asset(s) {', '.join(queued)}.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, f"Refused, {reason}", messages.WARNING)


@admin.register(IpOwnership)
class IpOwnershipAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "asset_link",
        "creator_link",
        "share_bps",
        "ownership_type",
        "start_date",
        "end_date",
        "disputed",
    )
    list_filter = ("ownership_type", "disputed")
    search_fields = ("=ip_asset__id", "ip_asset__title", "creator__display_name")
    list_select_related = ("ip_asset", "creator")
    raw_id_fields = ("ip_asset", "creator")

    @admin.display(description="asset")
    def asset_link(self, ownership: IpOwnership) -> str:
        return admin_link(ownership.ip_asset)

    @admin.display(description="creator")
    def creator_link(self, ownership: IpOwnership) -> str:
        return admin_link(ownership.creator)


@admin.register(OwnershipFinding)
class OwnershipFindingAdmin(ReadOnlyAdmin):
    list_display = ("id", "asset_link", "total_bps", "owner_count", "first_seen_at", "last_seen_at", "resolved_at")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter),)
    search_fields = ("=ip_asset__id", "ip_asset__title")
    list_select_related = ("ip_asset",)

    @admin.display(description="asset")
    def asset_link(self, finding: OwnershipFinding) -> str:
        return admin_link(finding.ip_asset)


@admin.register(StorageMetrics)
class StorageMetricsAdmin(ReadOnlyAdmin):
    list_display = (
        "snapshot_date",
        "entity_type",
        "entity_id",
        "total_bytes",
        "file_count",
        "average_file_size",
        "largest_file_size",
        "storage_trend_bps",
    )
    list_filter = ("entity_type",)
    search_fields = ("=entity_id",)
    date_hierarchy = "snapshot_date"
