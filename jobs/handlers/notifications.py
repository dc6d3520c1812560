"""notification-delivery and notification-digest (spec C §2.3, §2.4; DECISIONS "Notifications
and email"; issue 11 for the batched delivery).

The rules live in `yesgoddess.notifications.delivery` (the flush, one notification by
id, the sweep) and `yesgoddess.notifications.digest` (preparing and sending digests).
"""

from __future__ import annotations

from typing import Any

from jobs.errors import JobInputError
from jobs.runtime import set_progress
from yesgoddess.notifications import delivery, digest
from yesgoddess.notifications.models import DigestFrequency


def deliver_notifications(*, notification_id: int | None = None) -> dict[str, Any]:
    """notification-delivery: email pending notifications (the flush), or one by id."""
    if notification_id is None:
        return delivery.flush_and_requeue()
    result = delivery.deliver_one(notification_id)
    if result is None:
        raise JobInputError(f"Notification {notification_id} does not exist.")
    return result


def sweep_notification_deliveries() -> dict[str, Any]:
    """notification-delivery.sweep: settle stranded rows; queue a flush for pending ones."""
    return delivery.sweep()


def _frequency(frequency: str) -> str:
    if frequency not in DigestFrequency.values:
        raise JobInputError(f"frequency must be one of {', '.join(DigestFrequency.values)}, got {frequency!r}.")
    return frequency


def send_notification_digests(*, frequency: str = DigestFrequency.DAILY) -> dict[str, Any]:
    """notification-digest: prepare this period's digests and queue their batch jobs."""
    return digest.schedule_digest_batches(_frequency(frequency))


def send_notification_digest_batch(*, frequency: str, period_key: str, first_id: int, last_id: int) -> dict[str, Any]:
    """notification-digest.batch: send one batch of prepared digests, each at most once."""
    counts = digest.send_digest_batch(_frequency(frequency), period_key, first_id, last_id, progress=set_progress)
    return {"frequency": frequency, "period": period_key, **counts}
