from django.contrib import admin

from .admin_tools import ReadOnlyAdmin, audit_entity_link
from .models import AuditEvent, IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "entity_type", "entity_id", "response_status", "processed", "expires_at")
    list_filter = ("entity_type", "processed")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The append-only trail of changes that matter: who moved what from which state."""

    list_display = ("created_at", "action", "subject", "actor", "before", "after")
    list_filter = ("entity_type", "action")
    search_fields = ("=entity_id", "action")
    list_select_related = ("actor",)
    date_hierarchy = "created_at"

    @admin.display(description="subject", ordering="entity_type")
    def subject(self, event: AuditEvent) -> str:
        return audit_entity_link(event.entity_type, event.entity_id)
