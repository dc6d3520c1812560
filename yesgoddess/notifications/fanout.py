"""Sending one email to each of many recipients, each at most once, even across crashes.

Every job that emails many recipients uses this.

The pattern, per batch of recipient rows:

1. `claimed_batches` locks a batch FOR UPDATE SKIP LOCKED and lets the caller set each
   row's marker in the same short transaction, which then commits. From that moment no
   other run (a concurrent worker, a retry) takes these rows.
2. `deliver` sends the batch's messages over one SMTP connection and says, per message,
   whether it was accepted, refused, never attempted (the server could not be reached)
   or in doubt (the connection broke while it was being sent).
3. The caller confirms what went out and releases the markers of what was never
   attempted, then re-raises the delivery error so RQ retries: the retry sends only the
   rest. A message in doubt keeps its marker: a crash may lose a message, never send one
   twice. (`jobs.sweeps.locked_batches` keeps the transaction open while sending instead,
   so a crash mid-batch re-sends that batch; fine for idempotent work, not for email.)
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Model, QuerySet

log = logging.getLogger(__name__)

REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused)


def claimed_batches(
    queryset: QuerySet, claim: Callable[[list[Model]], list[Model] | None], batch: int | None = None
) -> Iterator[list[Model]]:
    """Rows of `queryset` in primary-key batches of `batch` (default EMAIL_BATCH_SIZE).

    Each batch is locked FOR UPDATE SKIP LOCKED and passed to `claim`, which marks the
    rows (so that they leave `queryset`) and returns the ones to handle; the transaction
    then commits and those rows are yielded, no longer locked. The walk moves forward by
    primary key, so a row whose marker is later released is not met again in this run.
    """
    size = batch or settings.EMAIL_BATCH_SIZE
    cursor = 0
    while True:
        with transaction.atomic():
            locked = queryset.filter(pk__gt=cursor).select_for_update(skip_locked=True, of=("self",))
            rows = list(locked.order_by("pk")[:size])
            if not rows:
                return
            cursor = rows[-1].pk
            claimed = claim(rows)
        if claimed:
            yield claimed


@dataclass
class Delivery:
    """Indexes of the messages passed to `deliver`, by outcome."""

    sent: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)  # never attempted
    in_doubt: list[int] = field(default_factory=list)  # interrupted while sending
    error: Exception | None = None  # what stopped the delivery (re-raise it after settling)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def deliver(messages: Sequence[EmailMessage | None]) -> Delivery:
    """Send `messages` over one connection per EMAIL_BATCH_SIZE, one message at a time.

    None entries are skipped (reported in none of the lists). A refused message is
    `refused` and the rest still go. If the server cannot be reached, or the connection
    breaks, delivery stops: the message being sent is `in_doubt`, the rest `unsent`,
    and `error` holds the exception.
    """
    result = Delivery()
    pending = [index for index, message in enumerate(messages) if message is not None]
    size = settings.EMAIL_BATCH_SIZE
    for start in range(0, len(pending), size):
        chunk = pending[start : start + size]
        connection = get_connection()
        try:
            connection.open()
        except Exception as exc:
            result.unsent.extend(pending[start:])
            result.error = exc
            return result
        try:
            for position, index in enumerate(chunk):
                try:
                    accepted = bool(connection.send_messages([messages[index]]))
                except REFUSED as exc:
                    log.warning("email refused by the server: %s", type(exc).__name__)
                    result.refused.append(index)
                    continue
                except Exception as exc:
                    result.in_doubt.append(index)
                    result.unsent.extend(chunk[position + 1 :])
                    result.unsent.extend(pending[start + size :])
                    result.error = exc
                    return result
                (result.sent if accepted else result.refused).append(index)
        finally:
            try:
                connection.close()
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("closing the mail connection failed", exc_info=True)
    return result
