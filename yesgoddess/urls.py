from django.contrib import admin
from django.urls import path

from jobs import views as job_views

urlpatterns = [
    # django-rq's panel registers itself in the admin: /admin/django_rq/dashboard/
    path("admin/", admin.site.urls),
    path("api/jobs/", job_views.enqueue_job, name="api-enqueue-job"),
    path("api/jobs/<str:job_id>/", job_views.job_status, name="api-job-status"),
]
