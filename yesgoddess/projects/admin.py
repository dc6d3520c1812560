"""Projects in the operator's admin: status, brand, dates, assets and matched creators.
Status moves through `services.change_status` (validated, audited), so it is read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from yesgoddess.assets.models import IpAsset
from yesgoddess.core.admin_tools import (
    ReadOnlyInline,
    admin_link,
    changelist_link,
    link_audit_entity,
    link_job_argument,
    related_count,
)

from .models import Project, ProjectMatch

link_job_argument("project_id", Project)
link_audit_entity("project", Project)


class MatchInline(ReadOnlyInline):
    model = ProjectMatch
    fields = ("creator", "matched_specialties", "created_at", "notified_at", "email_status", "emailed_at")
    readonly_fields = fields
    show_change_link = False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "brand_link", "status", "start_date", "end_date", "assets", "created_at")
    list_filter = ("status", "end_date", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "name", "brand__name")
    list_select_related = ("brand",)
    raw_id_fields = ("brand",)
    inlines = (MatchInline,)
    readonly_fields = ("status", "brand", "auto_archived_at", "archived_notice_sent_at", "created_at", "deleted_at")

    # Brands create projects through the platform; archiving is a status, not a deletion.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(asset_count=related_count(IpAsset, "project"))

    @admin.display(description="brand", ordering="brand__name")
    def brand_link(self, project: Project) -> str:
        return admin_link(project.brand)

    @admin.display(description="assets", ordering="asset_count")
    def assets(self, project: Project) -> str:
        return changelist_link(IpAsset, project.asset_count, project__id__exact=project.pk)
