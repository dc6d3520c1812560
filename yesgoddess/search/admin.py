from django.contrib import admin

from .models import SearchIndexFailure


@admin.register(SearchIndexFailure)
class SearchIndexFailureAdmin(admin.ModelAdmin):
    list_display = ("key", "attempts", "last_failed_at", "reason")
    list_filter = ("object_type",)
    search_fields = ("key",)
    readonly_fields = ("key", "object_type", "object_id", "reason", "attempts", "first_failed_at", "last_failed_at")
