"""Old notifications (spec A §2.2, as settled by DECISIONS.md; run by the
`notification-cleanup` job).

Read notifications go 30 days after they were read, SYSTEM ones 7 days after. Unread ones
are always kept (DECISIONS.md overrides the original's 90-day rule for unread LOW/MEDIUM),
and so are read ones with no read time. One chunked pass with both rules OR-ed together,
in SQL, without loading the rows.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from yesgoddess.core.batches import delete_in_chunks

from .models import Notification

READ_RETENTION = timedelta(days=30)
SYSTEM_READ_RETENTION = timedelta(days=7)


def delete_old_notifications() -> dict[str, int]:
    """Delete read notifications past their retention (30 days after reading, SYSTEM 7)."""
    now = timezone.now()
    system = Q(type=Notification.Type.SYSTEM)
    old = Notification.objects.filter(read=True).filter(
        (~system & Q(read_at__lt=now - READ_RETENTION)) | (system & Q(read_at__lt=now - SYSTEM_READ_RETENTION))
    )
    return delete_in_chunks(old, settings.CLEANUP_BATCH_SECONDS).as_counts()
