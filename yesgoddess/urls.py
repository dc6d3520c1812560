from django.conf import settings
from django.contrib import admin
from django.urls import path

from jobs import views as job_views
from yesgoddess.accounts.views import login_view
from yesgoddess.assets import views as asset_views

urlpatterns = [
    # django-rq's panel registers itself in the admin: /admin/django_rq/dashboard/
    path("admin/", admin.site.urls),
    path("api/auth/login", login_view, name="api-login"),
    path("api/jobs/", job_views.enqueue_job, name="api-enqueue-job"),
    path("api/jobs/<str:job_id>/", job_views.job_status, name="api-job-status"),
    path("api/assets/", asset_views.upload_asset, name="api-asset-upload"),
    path("api/assets/<int:asset_id>/", asset_views.asset_detail, name="api-asset-detail"),
    path("api/assets/<int:asset_id>/rescan", asset_views.rescan_asset, name="api-asset-rescan"),
    path("api/assets/<int:asset_id>/regenerate", asset_views.regenerate_asset, name="api-asset-regenerate"),
    path("api/assets/<int:asset_id>/watermark", asset_views.watermark_asset, name="api-asset-watermark"),
    # Files of local storage, with the asset's access rules (S3 storage hands out its
    # own URLs instead).
    path(f"{settings.MEDIA_URL.strip('/')}/<path:key>", asset_views.stored_file, name="stored-file"),
]
