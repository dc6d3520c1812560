from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from jobs import views as job_views
from jobs.metrics import metrics_view
from yesgoddess.accounts.views import login_view
from yesgoddess.analytics.views import record_events_view
from yesgoddess.assets import views as asset_views
from yesgoddess.assets import watermark_views
from yesgoddess.campaigns import views as campaign_views
from yesgoddess.emailing import views as emailing_views
from yesgoddess.licensing import renewal_views, usage_views
from yesgoddess.licensing import views as license_views
from yesgoddess.notifications import views as notification_views
from yesgoddess.projects import views as project_views
from yesgoddess.royalties import views as royalty_views
from yesgoddess.search.views import search_view

urlpatterns = [
    # Before admin.site.urls, which would take /admin/jobs/ for the jobs app's index.
    path("admin/jobs/failed/", admin.site.admin_view(job_views.failed_jobs_page), name="admin-failed-jobs"),
    # django-rq's panel registers itself in the admin: /admin/django_rq/dashboard/
    path("admin/", admin.site.urls),
    # Prometheus, Bearer METRICS_TOKEN (jobs/metrics.py). /healthz and /readyz are answered
    # by yesgoddess.core.health.ProbeMiddleware, ahead of the HTTPS redirect and host check.
    path("metrics", metrics_view, name="metrics"),
    path("api/auth/login", login_view, name="api-login"),
    path("api/jobs/", job_views.enqueue_job, name="api-enqueue-job"),
    path("api/jobs/<str:job_id>/", job_views.job_status, name="api-job-status"),
    path("api/search", search_view, name="api-search"),
    path("api/events/", record_events_view, name="api-events"),
    path("api/assets/", asset_views.upload_asset, name="api-asset-upload"),
    path("api/assets/<int:asset_id>/", asset_views.asset_detail, name="api-asset-detail"),
    path("api/assets/<int:asset_id>/rescan", asset_views.rescan_asset, name="api-asset-rescan"),
    path("api/assets/<int:asset_id>/regenerate", asset_views.regenerate_asset, name="api-asset-regenerate"),
    path("api/assets/<int:asset_id>/watermark", asset_views.watermark_asset, name="api-asset-watermark"),
    path("api/watermarks/<str:forensic_id>", watermark_views.lookup_forensic_id, name="api-watermark-lookup"),
    path("api/licenses/<int:license_id>", license_views.license_detail, name="api-license-detail"),
    path("api/licenses/<int:license_id>/usage", usage_views.license_usage, name="api-license-usage"),
    path(
        "api/licenses/<int:license_id>/usage/overages",
        usage_views.license_overages,
        name="api-license-usage-overages",
    ),
    path("api/licenses/<int:license_id>/renewal", renewal_views.current_offer, name="api-license-renewal"),
    path(
        "api/licenses/<int:license_id>/renewal/<int:offer_id>",
        renewal_views.offer_detail,
        name="api-license-renewal-offer",
    ),
    path(
        "api/licenses/<int:license_id>/renewal/<int:offer_id>/accept",
        renewal_views.accept_offer,
        name="api-license-renewal-accept",
    ),
    path("api/projects/<int:project_id>/status", project_views.change_project_status, name="api-project-status"),
    path("api/royalty-runs/", royalty_views.create_run, name="api-royalty-run-create"),
    path("api/royalty-runs/<int:run_id>/", royalty_views.run_detail, name="api-royalty-run-detail"),
    path("api/royalty-runs/<int:run_id>/lock", royalty_views.lock_run, name="api-royalty-run-lock"),
    path("api/notifications/", notification_views.list_notifications, name="api-notifications"),
    path("api/notifications/preferences", notification_views.preferences, name="api-notification-preferences"),
    path("api/notifications/<int:notification_id>/read", notification_views.mark_read, name="api-notification-read"),
    path("api/email/unsubscribe/<str:token>", emailing_views.unsubscribe, name="email-unsubscribe"),
    path("api/email/delivery-preferences", campaign_views.delivery_preferences, name="api-email-delivery-prefs"),
    path("api/campaigns/", campaign_views.create_campaign, name="api-campaign-create"),
    path("api/campaigns/<int:campaign_id>/", campaign_views.campaign_detail, name="api-campaign-detail"),
    path("api/campaigns/<int:campaign_id>/send", campaign_views.send_campaign, name="api-campaign-send"),
    path("api/campaigns/<int:campaign_id>/pause", campaign_views.pause_campaign, name="api-campaign-pause"),
    path("api/campaigns/<int:campaign_id>/resume", campaign_views.resume_campaign, name="api-campaign-resume"),
    path("api/campaigns/<int:campaign_id>/cancel", campaign_views.cancel_campaign, name="api-campaign-cancel"),
    # Email provider webhooks (Mailgun, signed): /anymail/mailgun/tracking/
    path("anymail/", include("yesgoddess.emailing.webhook_urls")),
    # Files of local storage, with the asset's access rules (S3 storage hands out its
    # own URLs instead).
    path(f"{settings.MEDIA_URL.strip('/')}/<path:key>", asset_views.stored_file, name="stored-file"),
]
