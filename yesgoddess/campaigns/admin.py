from django.contrib import admin

from .models import CampaignRecipient, EmailCampaign, EmailDigest


@admin.register(EmailCampaign)
class EmailCampaignAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "template", "scheduled_send_time", "recipient_count", "sent_count")
    list_filter = ("status", "template")
    readonly_fields = (
        "status",
        "send_started_at",
        "send_completed_at",
        "recipient_count",
        "sent_count",
        "failed_count",
        "skipped_count",
        "deferred_count",
        "job_id",
    )


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(admin.ModelAdmin):
    list_display = ("id", "campaign", "status", "sent_at")
    list_filter = ("status",)
    raw_id_fields = ("campaign", "user")


@admin.register(EmailDigest)
class EmailDigestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "category", "frequency", "period", "status", "item_count", "sent_at")
    list_filter = ("frequency", "status")
    raw_id_fields = ("user",)
