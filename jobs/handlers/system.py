"""System housekeeping jobs and the framework self-check: each cleanup is one call to the
app that owns the rows (`yesgoddess.core.idempotency`, `yesgoddess.notifications.cleanup`)."""

from __future__ import annotations

from yesgoddess.core.idempotency import delete_expired_idempotency_keys
from yesgoddess.notifications.cleanup import delete_old_notifications


def cleanup_idempotency_keys() -> dict[str, int]:
    """idempotency-cleanup: Idempotency-Key records whose expiry has passed."""
    return delete_expired_idempotency_keys()


def cleanup_notifications() -> dict[str, int]:
    """notification-cleanup: read notifications past their retention; unread are kept."""
    return delete_old_notifications()


def ping() -> dict[str, str]:
    """Answer at once: proves a worker is listening (and is the no-op of bench/)."""
    return {"pong": "ok"}
