"""Search index jobs (spec C §2.8 as settled by DECISIONS.md; issue 11 batching).

- search-index-update: the flush. Saving a searchable object adds it to a pending set
  and makes sure one flush is queued (`yesgoddess.search.services.mark_for_reindex`);
  the flush indexes up to SEARCH_UPDATE_BATCH objects with one UPDATE per type and
  queues the next flush while objects remain. Killed half-way, it loses nothing: its
  objects are leased, not removed, and are taken again when the lease ends.
- search-index-update.item: one object now, for operators (and tests).
- search-index-update.rebuild (Sundays 03:00): every vector, in primary-key batches.
"""

from __future__ import annotations

import logging
from typing import Any

from yesgoddess.search import services
from yesgoddess.search.registry import SEARCHABLE

from .errors import JobInputError
from .runtime import set_progress

log = logging.getLogger(__name__)


def flush_search_updates(*, recovery: bool = False) -> dict[str, int]:
    """Index the next batch of pending objects (`recovery`: the delayed run that retakes
    objects of a flush that died)."""
    return services.flush_pending(recovery=recovery)


def update_search_item(*, object_type: str, object_id: int) -> dict[str, int]:
    if object_type not in SEARCHABLE:
        raise JobInputError(f"Unknown search type {object_type!r}; one of {', '.join(SEARCHABLE)}.")
    try:
        return services.update_object(object_type, object_id)
    except ValueError as exc:  # a poison row: recorded; retrying cannot help
        raise JobInputError(str(exc)) from None


def rebuild_search_index(*, object_type: str | None = None) -> dict[str, int]:
    """Recompute every search vector (of one type, or all), in primary-key batches."""
    if object_type is not None and object_type not in SEARCHABLE:
        raise JobInputError(f"Unknown search type {object_type!r}; one of {', '.join(SEARCHABLE)}.")
    report = services.rebuild([object_type] if object_type else None, progress=lambda n, t: set_progress(n, None, t))
    return report.as_counts()


def flush_failed(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of a flush (an error after its retries, or its worker died): make
    sure its leased objects are looked at again when their lease ends."""
    state = services.pending.status()
    if state.total:
        services.ensure_recovery(state.seconds_to_next_lease_end + 1)
    log.warning("search flush %s failed for good (%s); %d objects pending", job_id, error[:200], state.total)
