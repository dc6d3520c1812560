"""Idempotency keys after their expiry (spec A §2.1, as settled by DECISIONS.md; run by the
`idempotency-cleanup` job).

A key (`IdempotencyKey`, claimed by `yesgoddess.core.api`) only has to outlive the retries
of its request: once its expiry has passed it is deleted, in chunks sized by
CLEANUP_BATCH_SECONDS, in SQL, without loading the rows.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from .batches import delete_in_chunks
from .models import IdempotencyKey


def delete_expired_idempotency_keys() -> dict[str, int]:
    """Delete Idempotency-Key records whose expiry has passed."""
    expired = IdempotencyKey.objects.filter(expires_at__lt=timezone.now())
    return delete_in_chunks(expired, settings.CLEANUP_BATCH_SECONDS).as_counts()
