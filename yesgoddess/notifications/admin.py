from django.contrib import admin

from .models import Notification, NotificationDigest


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "type", "priority", "read", "email_status", "emailed_at", "created_at")
    list_filter = ("type", "priority", "read", "email_status")
    readonly_fields = ("email_error",)


@admin.register(NotificationDigest)
class NotificationDigestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "frequency", "period_key", "status", "notification_count", "sent_at")
    list_filter = ("frequency", "status")
