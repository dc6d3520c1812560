from django.contrib import admin

from .models import EmailEvent, EmailOptOut, EmailReputationMetric, EmailSuppression


@admin.register(EmailSuppression)
class EmailSuppressionAdmin(admin.ModelAdmin):
    list_display = ("email", "reason", "created_at")
    list_filter = ("reason",)
    search_fields = ("email",)


@admin.register(EmailOptOut)
class EmailOptOutAdmin(admin.ModelAdmin):
    list_display = ("email", "category", "created_at")
    list_filter = ("category",)
    search_fields = ("email",)


@admin.register(EmailEvent)
class EmailEventAdmin(admin.ModelAdmin):
    list_display = ("id", "event_type", "provider", "email", "sender_domain", "occurred_at", "reject_reason")
    list_filter = ("event_type", "provider", "sender_domain")
    search_fields = ("email", "message_id")
    raw_id_fields = ("user",)
    date_hierarchy = "occurred_at"


@admin.register(EmailReputationMetric)
class EmailReputationMetricAdmin(admin.ModelAdmin):
    list_display = (
        "date",
        "sender_domain",
        "sent",
        "bounce_rate",
        "complaint_rate",
        "delivery_rate",
        "reputation_score",
        "campaigns_paused",
    )
    list_filter = ("sender_domain",)
    date_hierarchy = "date"
