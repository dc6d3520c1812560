"""The cron table in the admin: /admin/jobs/cron/ lists every entry of `jobs/schedule.py`
with its next run, last run and an overdue mark (`jobs/cron_table.py`), and runs one now.

Staff only (the admin site's login); "run now" is a POST with CSRF that queues the entry's
job exactly as its scheduled run would (`cron_runs.dispatch`: same deduplication, recorded
in the table when it starts).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django_rq.settings import get_queues_map
from redis.exceptions import RedisError

from . import cron_runs
from .cron_table import OVERDUE_GRACE, CronRow, cron_table, find_entry
from .models import Cron


def job_page(queue: str, job_id: str) -> str | None:
    """The django-rq page of job `job_id` on `queue`."""
    index = get_queues_map().get(queue)
    if index is None or not job_id:
        return None
    try:
        return reverse("admin:django_rq_job_detail", args=(index, job_id))
    except NoReverseMatch:
        return None


@admin.register(Cron)
class CronTableAdmin(admin.ModelAdmin):
    """One page and one action, no rows of its own (the model has no table)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # Only these two: the stock change/delete views would query a table that does not exist.
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self.admin_site.admin_view(self.changelist_view), name=f"{prefix}_changelist"),
            path("<str:entry_id>/run/", self.admin_site.admin_view(self.run_now_view), name=f"{prefix}_run"),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        rows = cron_table()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Cron table",
            "rows": [(row, self._last_job_page(row)) for row in rows],
            "overdue": sum(row.overdue for row in rows),
            "unscheduled": sum(row.scheduled is False for row in rows),
            "scheduler_unknown": any(row.scheduled is None for row in rows),
            "grace_minutes": int(OVERDUE_GRACE.total_seconds() // 60),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/jobs/cron_table.html", context)

    @staticmethod
    def _last_job_page(row: CronRow) -> str | None:
        return job_page(row.queue, row.last_run.job_id) if row.last_run is not None else None

    def run_now_view(self, request: HttpRequest, entry_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        entry = find_entry(entry_id)
        if entry is None:
            raise Http404(f"No cron entry {entry_id!r} in jobs/schedule.py.")
        back = reverse("admin:jobs_cron_changelist")
        try:
            job_id, created = cron_runs.dispatch(entry.job, entry.kwargs, entry.id)
        except RedisError as exc:
            reason = type(exc).__name__
            messages.error(request, f"Cron entry {entry.id}: nothing queued, Redis is unreachable ({reason}).")
            return HttpResponseRedirect(back)
        if created:
            messages.success(request, f"Cron entry {entry.id}: queued {entry.job} as job {job_id}.")
        else:
            messages.warning(
                request, f"Cron entry {entry.id}: a run is already queued or running (job {job_id}); nothing queued."
            )
        return HttpResponseRedirect(back)
