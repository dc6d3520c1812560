"""Admin building blocks: links between admin pages (a row to the rows it refers to, a job
to the object it works on) and read-only admin classes for rows the jobs write.

Each domain app's admin says which job arguments name its objects
(`link_job_argument("asset_id", IpAsset)`); the django-rq pages and the domain admin use
that to turn `asset_id=5` into a link to the asset's admin page. Nothing here imports a
domain app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, IntegerField, Model, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_rq.settings import get_queues_map
from redis.exceptions import RedisError

from .money import dollars

_JOB_ARGUMENTS: dict[str, type[Model]] = {}
_AUDIT_ENTITIES: dict[str, type[Model]] = {}


def link_job_argument(argument: str, model: type[Model]) -> None:
    """Job argument `argument` (e.g. "asset_id") holds the primary key of a `model` row."""
    _JOB_ARGUMENTS[argument] = model


def link_audit_entity(entity_type: str, model: type[Model]) -> None:
    """Audit events with `entity_type` (e.g. "asset") are about `model` rows."""
    _AUDIT_ENTITIES[entity_type] = model


def audit_entity_link(entity_type: str, entity_id: str) -> SafeString | str:
    """A link to the admin page of an audit event's subject (plain text if unknown)."""
    model = _AUDIT_ENTITIES.get(entity_type)
    url = change_url(model, entity_id) if model is not None and entity_id.isdigit() else None
    label = f"{entity_type} {entity_id}"
    return format_html('<a href="{}">{}</a>', url, label) if url else label


def money(cents: int | None) -> str:
    """Cents for people ("$1,234.56"); "-" for none (a row not saved yet, an empty form)."""
    return "-" if cents is None else dollars(cents)


def change_url(model: type[Model] | Model, pk: Any) -> str | None:
    meta = model._meta
    try:
        return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])
    except NoReverseMatch:  # not in the admin
        return None


def admin_link(obj: Model | None, label: Any = None) -> SafeString | str:
    """A link to `obj`'s admin page (its str() unless `label`); "-" for None."""
    if obj is None:
        return "-"
    url = change_url(obj, obj.pk)
    text = obj if label is None else label
    return format_html('<a href="{}">{}</a>', url, text) if url else str(text)


def changelist_link(model: type[Model], label: Any, **filters: Any) -> SafeString | str:
    """A link to `model`'s admin list filtered by `filters` (field lookups)."""
    meta = model._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    except NoReverseMatch:
        return str(label)
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), label)


def job_object_links(kwargs: Mapping[str, Any]) -> SafeString | str:
    """Links to the admin pages of the objects a job's arguments name ("asset 5")."""
    links = []
    for argument, value in sorted(kwargs.items()):
        model = _JOB_ARGUMENTS.get(argument)
        if model is None or isinstance(value, bool) or not isinstance(value, (int, str)):
            continue
        url = change_url(model, value)
        if url:
            links.append((url, f"{model._meta.verbose_name} {value}"))
    return format_html_join(", ", '<a href="{}">{}</a>', links) if links else "-"


def related_count(model: type[Model], fk: str) -> Coalesce:
    """COUNT of `model` rows whose `fk` points at the outer row, as a subquery: one
    annotation per relation, without the row explosion of joining several of them."""
    counts = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def rq_job_url(queue: str, job_id: str) -> str | None:
    """The django-rq admin page of a job (django-rq numbers the queues by sorted name)."""
    index = get_queues_map().get(queue)
    if index is None:
        return None
    try:
        return reverse("admin:django_rq_job_detail", args=[index, job_id])
    except NoReverseMatch:
        return None


def _progress(progress: Mapping[str, Any] | None) -> str:
    if not progress:
        return ""
    done, total = progress.get("done"), progress.get("total")
    return f"{done}/{total}" if total else str(done)


def jobs_table(load: Callable[[], Iterable[Any]]) -> SafeString | str:
    """An HTML table of the job summaries `load()` returns (`jobs.api.JobSummary`): job,
    state, progress, times, error, each linked to the job's django-rq page. Redis being
    unreachable costs the table, never the page around it."""
    try:
        jobs = list(load())
    except RedisError as exc:
        return f"Jobs unavailable: Redis did not answer ({type(exc).__name__})."
    rows = [
        (
            rq_job_url(job.queue, job.id) or "#",
            job.name or "?",
            job.status,
            _progress(job.progress),
            job.enqueued_at.strftime("%Y-%m-%d %H:%M:%S") if job.enqueued_at else "-",
            job.ended_at.strftime("%Y-%m-%d %H:%M:%S") if job.ended_at else "-",
            job.error or "",
        )
        for job in jobs
    ]
    if not rows:
        return "No job on record (RQ forgets a finished job after its result TTL, a failed one after its failure TTL)."
    body = format_html_join(
        "",
        '<tr><td><a href="{}">{}</a></td><td class="job-state">{}</td><td>{}</td><td>{}</td><td>{}</td>'
        "<td>{}</td></tr>",
        rows,
    )
    return format_html(
        '<table class="job-list"><thead><tr><th>job</th><th>state</th><th>progress</th><th>enqueued (UTC)</th>'
        "<th>ended (UTC)</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
        body,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the system writes (logs, findings, metrics, audit): to look at, never to edit."""

    show_full_result_count = False  # these tables grow large: no second COUNT(*) per page

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Related rows shown on a parent's page, each linked to its own page."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AccountColumns:
    """List columns of a profile that belongs to one user account (brands, creators)."""

    @admin.display(description="account", ordering="user__username")
    def account(self, profile: Model) -> SafeString | str:
        return admin_link(profile.user)

    @admin.display(description="last login", ordering="user__last_login")
    def last_login(self, profile: Model) -> Any:
        return profile.user.last_login
