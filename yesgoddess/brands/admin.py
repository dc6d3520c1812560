"""Brands in the operator's admin: verification and activity (projects, licences, the
account's last login, re-engagement). Verification and anonymisation have their own
workflows, so those fields are read-only here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from yesgoddess.core.admin_tools import (
    AccountColumns,
    ReadOnlyAdmin,
    changelist_link,
    link_audit_entity,
    related_count,
)
from yesgoddess.licensing.models import License
from yesgoddess.projects.models import Project

from .models import Brand, VerificationDigest

link_audit_entity("brand", Brand)


@admin.register(Brand)
class BrandAdmin(AccountColumns, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "account",
        "verification_status",
        "verified_at",
        "projects",
        "licenses",
        "last_login",
        "created_at",
        "deleted_at",
    )
    list_filter = (
        "verification_status",
        "industry",
        ("deleted_at", admin.EmptyFieldListFilter),
        ("anonymised_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("=id", "name", "user__username", "user__email")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = (
        "user",
        "verification_status",
        "verified_at",
        "re_engagement_sent_at",
        "anonymised_at",
        "created_at",
        "deleted_at",
    )

    # Brands sign up through the platform; brand-data-cleanup erases them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Brand]:
        return (
            super()
            .get_queryset(request)
            .annotate(project_count=related_count(Project, "brand"), license_count=related_count(License, "brand"))
        )

    @admin.display(description="projects", ordering="project_count")
    def projects(self, brand: Brand) -> str:
        return changelist_link(Project, brand.project_count, brand__id__exact=brand.pk)

    @admin.display(description="licences", ordering="license_count")
    def licenses(self, brand: Brand) -> str:
        return changelist_link(License, brand.license_count, brand__id__exact=brand.pk)


@admin.register(VerificationDigest)
class VerificationDigestAdmin(ReadOnlyAdmin):
    list_display = ("day", "pending", "recipients", "sent", "created_at")
    date_hierarchy = "day"
