"""System housekeeping jobs (spec A §2.1, §2.2, as settled by DECISIONS.md)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from yesgoddess.core.models import IdempotencyKey
from yesgoddess.notifications.models import Notification

from .sweeps import delete_in_chunks

READ_RETENTION = timedelta(days=30)
SYSTEM_READ_RETENTION = timedelta(days=7)


def cleanup_idempotency_keys() -> dict[str, int]:
    """Delete Idempotency-Key records whose expiry has passed (`idempotency-cleanup`)."""
    expired = IdempotencyKey.objects.filter(expires_at__lt=timezone.now())
    return delete_in_chunks(expired, settings.CLEANUP_BATCH_SECONDS).as_counts()


def cleanup_notifications() -> dict[str, int]:
    """Delete old notifications (`notification-cleanup`).

    Read ones 30 days after they were read, SYSTEM ones 7 days after. Unread ones are
    always kept (DECISIONS.md overrides the original's 90-day rule for unread LOW/MEDIUM),
    and so are read ones with no read time. One pass with both rules OR-ed together.
    """
    now = timezone.now()
    system = Q(type=Notification.Type.SYSTEM)
    old = Notification.objects.filter(read=True).filter(
        (~system & Q(read_at__lt=now - READ_RETENTION)) | (system & Q(read_at__lt=now - SYSTEM_READ_RETENTION))
    )
    return delete_in_chunks(old, settings.CLEANUP_BATCH_SECONDS).as_counts()


def ping() -> dict[str, str]:
    """Answer at once: proves a worker is listening (and is the no-op of bench/)."""
    return {"pong": "ok"}
