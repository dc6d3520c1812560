from django.contrib import admin

from .models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "entity_type", "entity_id", "response_status", "processed", "expires_at")
    list_filter = ("entity_type", "processed")
