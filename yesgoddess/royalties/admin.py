"""Royalty runs, statements and lines in the operator's admin: what a run produced and how
far its calculation got. The run's lifecycle (`services`) owns every figure and status:
read-only here; a FAILED run can be retried through the same service as everything else."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html_join
from redis.exceptions import RedisError

from jobs.api import jobs_for
from yesgoddess.core.admin_tools import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    admin_link,
    changelist_link,
    jobs_table,
    link_audit_entity,
    link_job_argument,
    money,
)

from . import services
from .models import RoyaltyLine, RoyaltyRun, RoyaltyStatement

link_job_argument("run_id", RoyaltyRun)
link_audit_entity("royalty_run", RoyaltyRun)


def _progress(jobs: list[Any]) -> str:
    for job in jobs:
        if job.name == "royalty-calculation" and job.progress:
            done, total = job.progress.get("done"), job.progress.get("total")
            return f"{done}/{total} ({job.status})" if total else f"{done} ({job.status})"
    return "-"


@admin.register(RoyaltyRun)
class RoyaltyRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "period",
        "status",
        "revenue",
        "royalties",
        "statements",
        "progress",
        "processed_at",
        "locked_at",
    )
    list_filter = ("status", "period_start")
    search_fields = ("=id",)
    date_hierarchy = "period_start"
    actions = ("retry_failed",)
    fields = (
        "period",
        "status",
        "revenue",
        "royalties",
        "statements_by_status",
        "progress",
        "calculation_jobs",
        "processed_at",
        "locked_at",
        "created_by",
        "created_at",
        "notes",
    )
    readonly_fields = tuple(field for field in fields if field != "notes")

    # Runs are created through the API (period checks, overlap lock) and never deleted.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[RoyaltyRun]:
        return super().get_queryset(request).annotate(statement_count=Count("statements"))

    @admin.display(description="period", ordering="period_start")
    def period(self, run: RoyaltyRun) -> str:
        return f"{timezone.localdate(run.period_start)} to {timezone.localdate(run.period_end)}"

    @admin.display(description="revenue", ordering="total_revenue_cents")
    def revenue(self, run: RoyaltyRun) -> str:
        return money(run.total_revenue_cents)

    @admin.display(description="royalties", ordering="total_royalties_cents")
    def royalties(self, run: RoyaltyRun) -> str:
        return money(run.total_royalties_cents)

    @admin.display(description="statements", ordering="statement_count")
    def statements(self, run: RoyaltyRun) -> str:
        return changelist_link(RoyaltyStatement, run.statement_count, royalty_run__id__exact=run.pk)

    @admin.display(description="calculation progress")
    def progress(self, run: RoyaltyRun) -> str:
        # Only a run being calculated has progress worth a Redis read per row.
        if run.status != RoyaltyRun.Status.CALCULATING:
            return "-"
        try:
            return _progress(jobs_for("run_id", run.pk, limit=5))
        except RedisError:
            return "? (Redis did not answer)"

    @admin.display(description="statements by status")
    def statements_by_status(self, run: RoyaltyRun) -> str:
        counts = run.statements.values_list("status").annotate(n=Count("pk")).order_by("status")
        if not counts:
            return "-"
        return format_html_join(
            ", ",
            "{}",
            (
                (changelist_link(RoyaltyStatement, f"{status}: {n}", royalty_run__id__exact=run.pk, status=status),)
                for status, n in counts
            ),
        )

    @admin.display(description="jobs of this run (newest first)")
    def calculation_jobs(self, run: RoyaltyRun) -> str:
        return jobs_table(lambda: jobs_for("run_id", run.pk))

    @admin.action(description="Retry the selected FAILED runs (calculate again)")
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[RoyaltyRun]) -> None:
        for run_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                job_id = services.retry_failed_run(run_id, request.user.pk)
            except services.RunRefused as exc:
                self.message_user(request, f"Refused: {exc}", messages.WARNING)
                continue
            self.message_user(request, f"Run {run_id}: calculation queued (job {job_id}).", messages.SUCCESS)


class LineInline(ReadOnlyInline):
    model = RoyaltyLine
    fields = (
        "line_type",
        "license_link",
        "asset_link",
        "revenue",
        "share_bps",
        "royalty",
        "period_start",
        "period_end",
    )
    readonly_fields = fields

    @admin.display(description="licence")
    def license_link(self, line: RoyaltyLine) -> str:
        return admin_link(line.license)

    @admin.display(description="asset")
    def asset_link(self, line: RoyaltyLine) -> str:
        return admin_link(line.ip_asset)

    @admin.display(description="revenue")
    def revenue(self, line: RoyaltyLine) -> str:
        return money(line.revenue_cents)

    @admin.display(description="royalty")
    def royalty(self, line: RoyaltyLine) -> str:
        return money(line.calculated_royalty_cents)


@admin.register(RoyaltyStatement)
class RoyaltyStatementAdmin(ReadOnlyAdmin):
    list_display = ("id", "run_link", "creator_link", "earnings", "fee", "net", "status", "notified_at", "paid_at")
    list_filter = ("status",)
    search_fields = ("=id", "=royalty_run__id", "creator__display_name")
    list_select_related = ("royalty_run", "creator")
    inlines = (LineInline,)
    fields = (
        "run_link",
        "creator_link",
        "status",
        "earnings",
        "fee",
        "net",
        "notified_at",
        "paid_at",
        "metadata",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="run", ordering="royalty_run")
    def run_link(self, statement: RoyaltyStatement) -> str:
        return admin_link(statement.royalty_run, f"run {statement.royalty_run_id}")

    @admin.display(description="creator", ordering="creator__display_name")
    def creator_link(self, statement: RoyaltyStatement) -> str:
        return admin_link(statement.creator)

    @admin.display(description="earnings", ordering="total_earnings_cents")
    def earnings(self, statement: RoyaltyStatement) -> str:
        return money(statement.total_earnings_cents)

    @admin.display(description="platform fee")
    def fee(self, statement: RoyaltyStatement) -> str:
        return money(statement.platform_fee_cents)

    @admin.display(description="net payable", ordering="net_payable_cents")
    def net(self, statement: RoyaltyStatement) -> str:
        return money(statement.net_payable_cents)


@admin.register(RoyaltyLine)
class RoyaltyLineAdmin(ReadOnlyAdmin):
    list_display = ("id", "statement_link", "line_type", "license_link", "revenue_cents", "calculated_royalty_cents")
    list_filter = ("line_type",)
    search_fields = ("=id", "=license__id", "=ip_asset__id", "=royalty_statement__id")
    list_select_related = ("royalty_statement", "license")

    @admin.display(description="statement")
    def statement_link(self, line: RoyaltyLine) -> str:
        return admin_link(line.royalty_statement, f"statement {line.royalty_statement_id}")

    @admin.display(description="licence")
    def license_link(self, line: RoyaltyLine) -> str:
        return admin_link(line.license)
