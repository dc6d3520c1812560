"""Template filters for the django-rq pages: every job there runs `jobs.runtime.execute`,
so show the registered job name and link the objects its arguments name instead."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString

from yesgoddess.core.admin_tools import job_object_links

register = template.Library()


@register.filter
def job_name(job: Any) -> str:
    meta = getattr(job, "meta", None) or {}
    return meta.get("job_name") or "-"


@register.filter
def job_objects(job: Any) -> SafeString | str:
    try:
        kwargs = job.kwargs or {}
    except Exception:  # a payload that does not deserialize: django-rq shows that itself
        return "-"
    return job_object_links(kwargs)


@register.filter
def job_error(job: Any) -> str:
    """The last line of a failed job's traceback ("" when there is none)."""
    try:
        result = job.latest_result()
        text = (result.exc_string if result is not None else None) or ""
    except Exception:
        return ""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
