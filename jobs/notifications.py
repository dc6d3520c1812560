"""notification-delivery and notification-digest (spec C §2.3, §2.4; DECISIONS "Notifications
and email"; issue 11 for the batched delivery).

- notification-delivery without arguments is the flush: it takes up to
  NOTIFICATION_DELIVERY_BATCH pending immediate emails (queued, deduplicated, by
  `notify()` after commit) and re-queues itself while some remain. With
  `notification_id` it delivers exactly that notification (operators, tests).
- notification-digest (`frequency` DAILY at 09:00, WEEKLY Mondays at 09:00) prepares the
  period's digests in one statement and enqueues one `notification-digest.batch` job per
  NOTIFICATION_DIGEST_BATCH users.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from jobs.api import enqueue, release_own_dedup
from jobs.errors import JobInputError
from jobs.runtime import set_progress
from yesgoddess.notifications import delivery, digest
from yesgoddess.notifications.models import DigestFrequency
from yesgoddess.notifications.services import FLUSH_DEDUP_KEY, FLUSH_JOB, schedule_flush

log = logging.getLogger(__name__)

DIGEST_BATCH_JOB = "notification-digest.batch"


def release_flush_marker() -> None:
    """Let the next `notify()` queue a new flush while this one runs.

    `notify()` asks for a flush after its rows are committed. Until this flush has
    released the deduplication marker, such a request returns this job, which has not
    claimed yet and so will see those rows; from the release on, a request queues a new
    flush. Either way no pending row is left without a flush coming for it."""
    release_own_dedup(FLUSH_JOB, FLUSH_DEDUP_KEY)


def deliver_notifications(*, notification_id: int | None = None) -> dict[str, Any]:
    """notification-delivery: email pending notifications (the flush), or one by id."""
    if notification_id is not None:
        result = delivery.deliver_one(notification_id)
        if result is None:
            raise JobInputError(f"Notification {notification_id} does not exist.")
        return result
    release_flush_marker()
    counts: dict[str, Any] = delivery.flush()
    counts["requeued"] = delivery.pending().exists()
    if counts["requeued"]:
        schedule_flush()
    return counts


def sweep_notification_deliveries() -> dict[str, Any]:
    """notification-delivery.sweep: a safety net. `notify()` queues the flush after
    commit; if that failed (Redis unreachable at that moment) or the flush failed for
    good, pending rows would wait for the next notification. Queue a flush for them.
    Rows a killed worker left claimed are settled from the send journal first."""
    recovered = delivery.recover_stranded()
    pending = delivery.pending().exists()
    return {"pending": pending, "flush_job": schedule_flush() if pending else None, **recovered}


def _frequency(frequency: str) -> str:
    if frequency not in DigestFrequency.values:
        raise JobInputError(f"frequency must be one of {', '.join(DigestFrequency.values)}, got {frequency!r}.")
    return frequency


def send_notification_digests(*, frequency: str = DigestFrequency.DAILY) -> dict[str, Any]:
    """notification-digest: prepare this period's digests, one batch job per
    NOTIFICATION_DIGEST_BATCH users."""
    frequency = _frequency(frequency)
    key, prepared = digest.prepare_digests(frequency, timezone.now())
    ranges = digest.batch_ranges(frequency, key, settings.NOTIFICATION_DIGEST_BATCH)
    for first_id, last_id in ranges:
        enqueue(
            DIGEST_BATCH_JOB,
            dedup_key=f"{frequency}-{key}-{first_id}-{last_id}",
            frequency=frequency,
            period_key=key,
            first_id=first_id,
            last_id=last_id,
        )
    return {"frequency": frequency, "period": key, "prepared": prepared, "batches": len(ranges)}


def send_notification_digest_batch(*, frequency: str, period_key: str, first_id: int, last_id: int) -> dict[str, Any]:
    """notification-digest.batch: send one batch of prepared digests, each at most once."""
    counts = digest.send_digest_batch(
        _frequency(frequency), period_key, first_id, last_id, progress=lambda done, total: set_progress(done, total)
    )
    return {"frequency": frequency, "period": period_key, **counts}
