"""Search index jobs (spec C §2.8 as settled by DECISIONS.md; issue 11 batching).

- search-index-update: the flush (`yesgoddess.search.services.flush_pending`); its
  final-failure hook queues the recovery of its leased objects.
- search-index-update.item: one object now, for operators (and tests).
- search-index-update.rebuild (Sundays 03:00): every vector, in primary-key batches.
"""

from __future__ import annotations

from typing import Any

from jobs.errors import JobInputError
from jobs.runtime import set_progress
from yesgoddess.search import services
from yesgoddess.search.registry import SEARCHABLE


def _check_type(object_type: str) -> None:
    if object_type not in SEARCHABLE:
        raise JobInputError(f"Unknown search type {object_type!r}; one of {', '.join(SEARCHABLE)}.")


def flush_search_updates(*, recovery: bool = False) -> dict[str, int]:
    """Index the next batch of pending objects (`recovery`: the delayed run that retakes
    objects of a flush that died)."""
    return services.flush_pending(recovery=recovery)


def update_search_item(*, object_type: str, object_id: int) -> dict[str, int]:
    """Reindex one object now."""
    _check_type(object_type)
    try:
        return services.update_object(object_type, object_id)
    except ValueError as exc:  # a poison row: recorded; retrying cannot help
        raise JobInputError(str(exc)) from None


def rebuild_search_index(*, object_type: str | None = None) -> dict[str, int]:
    """Recompute every search vector (of one type, or all), in primary-key batches."""
    if object_type is not None:
        _check_type(object_type)
    report = services.rebuild([object_type] if object_type else None, progress=set_progress)
    return report.as_counts()


def flush_failed(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of a flush: its leased objects are looked at again when the lease ends."""
    services.recover_failed_flush(job_id, error)
