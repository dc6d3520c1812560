from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.api import jobs_for
from yesgoddess.core.admin_tools import changelist_link, jobs_table, link_job_argument

from . import services
from .models import CampaignRecipient, EmailCampaign, EmailDigest

link_job_argument("campaign_id", EmailCampaign)


@admin.register(EmailCampaign)
class EmailCampaignAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "status",
        "template",
        "scheduled_send_time",
        "recipients",
        "sent_count",
        "failed_count",
        "skipped_count",
        "deferred_count",
        "bounced_count",
        "status_reason",
    )
    list_filter = ("status", "template")
    search_fields = ("=id", "name", "subject")
    actions = ("resume",)
    # The send workflow (`services`, `sending`) owns the status and every counter.
    readonly_fields = (
        "status",
        "status_reason",
        "send_started_at",
        "send_completed_at",
        "paused_at",
        "cancelled_at",
        "cancelled_by",
        "recipient_count",
        "sent_count",
        "failed_count",
        "skipped_count",
        "deferred_count",
        "delivered_count",
        "opened_count",
        "clicked_count",
        "bounced_count",
        "complained_count",
        "unsubscribed_count",
        "job_id",
        "campaign_jobs",
    )

    @admin.display(description="recipients", ordering="recipient_count")
    def recipients(self, campaign: EmailCampaign) -> str:
        return changelist_link(CampaignRecipient, campaign.recipient_count, campaign__id__exact=campaign.pk)

    @admin.display(description="jobs of this campaign (newest first)")
    def campaign_jobs(self, campaign: EmailCampaign) -> str:
        return jobs_table(lambda: jobs_for("campaign_id", campaign.pk)) if campaign.pk else "-"

    @admin.action(description="Resume the selected PAUSED (or FAILED) campaigns")
    def resume(self, request: HttpRequest, queryset: QuerySet[EmailCampaign]) -> None:
        for campaign_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                campaign = services.resume(campaign_id)
            except services.CampaignError as exc:
                self.message_user(request, f"Campaign {campaign_id} refused: {exc}", messages.WARNING)
                continue
            self.message_user(request, f"Campaign {campaign_id} resumed ({campaign.status}).", messages.SUCCESS)


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(admin.ModelAdmin):
    list_display = ("id", "campaign", "email", "status", "sent_at", "error")
    list_filter = ("status",)
    search_fields = ("email", "=campaign__id")
    list_select_related = ("campaign",)
    raw_id_fields = ("campaign", "user")
    show_full_result_count = False
    readonly_fields = ("status", "claimed_at", "sent_at", "message_id", "error")


@admin.register(EmailDigest)
class EmailDigestAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "category", "frequency", "period", "status", "item_count", "sent_at")
    list_filter = ("frequency", "status")
    raw_id_fields = ("user",)
