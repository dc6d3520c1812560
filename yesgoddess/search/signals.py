"""post_save receivers: saving a searchable object marks it for reindexing.

A save whose `update_fields` touches none of the indexed columns (a pipeline job moving
`scan_status`, say) marks nothing. Bulk writes (`QuerySet.update`, `bulk_create`) send
no signal: code that changes indexed text that way calls `mark_for_reindex` itself, and
the weekly rebuild catches anything missed.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from django.db.models.signals import post_save

from .registry import SEARCHABLE, SearchSpec
from .services import mark_for_reindex

_specs: dict[type[Model], SearchSpec] = {}


def _on_save(sender: type[Model], instance: Model, raw: bool = False, update_fields: Any = None, **_: Any) -> None:
    if raw:  # loading fixtures
        return
    spec = _specs[sender]
    if update_fields is not None and not spec.watched_fields.intersection(update_fields):
        return
    mark_for_reindex(spec.key, [instance.pk])


def connect_receivers() -> None:
    for spec in SEARCHABLE.values():
        _specs[spec.model] = spec
        post_save.connect(_on_save, sender=spec.model, dispatch_uid=f"search-reindex-{spec.key}")
