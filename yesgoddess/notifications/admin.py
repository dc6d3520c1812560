from django.contrib import admin

from yesgoddess.core.admin_tools import link_job_argument

from .models import Notification, NotificationDigest

link_job_argument("notification_id", Notification)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "type", "priority", "read", "email_status", "emailed_at", "created_at")
    list_filter = ("type", "priority", "read", "email_status")
    readonly_fields = ("email_error",)
    raw_id_fields = ("user",)
    show_full_result_count = False


@admin.register(NotificationDigest)
class NotificationDigestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "frequency", "period_key", "status", "notification_count", "sent_at")
    list_filter = ("frequency", "status")
