from django.contrib import admin

from .models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "type", "priority", "read", "created_at")
    list_filter = ("type", "priority", "read")
