"""Sending one email to each of many recipients, each at most once, even across crashes.

Every job that emails many recipients uses this.

The pattern, per batch of recipient rows:

1. `claimed_batches` locks a batch FOR UPDATE SKIP LOCKED and lets the caller set each
   row's marker in the same short transaction, which then commits. From that moment no
   other run (a concurrent worker, a retry) takes these rows.
2. `deliver` sends the batch's messages (over up to EMAIL_SEND_CONNECTIONS SMTP
   connections at once, each carrying a contiguous run of them) and says, per message,
   whether it was accepted, refused, never attempted (the server could not be reached)
   or in doubt (the connection broke while it was being sent).
3. The caller confirms what went out and releases the markers of what was never
   attempted, then re-raises the delivery error so RQ retries: the retry sends only the
   rest. A message in doubt keeps its marker: a crash may lose a message, never send one
   twice. (`yesgoddess.core.batches.locked_batches` keeps the transaction open while
   sending instead, so a crash mid-batch re-sends that batch; fine for idempotent work,
   not for email.)

A worker killed mid-batch leaves its rows claimed; messages built with a `journal_key`
can be recovered exactly (`journal_outcomes`: sent, in doubt, or never attempted).

`deliver_rows` is `deliver` for one row per notice: the row's deciding message (the one
whose outcome settles the row's marker) and the messages that accompany it (the same
notice to the other parties), with the outcome per row. `claim_setting` and `release`
are the usual claim and release of a marker column.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Model, QuerySet

log = logging.getLogger(__name__)

REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused)

R = TypeVar("R")


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


def claim_setting(marker: str, value: Any) -> Callable[[list[Model]], list[Model]]:
    """A `claim` for `claimed_batches` that sets the column `marker` to `value` on every
    row it is given (one UPDATE) and handles them all (a claim that picks some rows of
    the batch can end with `return claim_setting(marker, value)(picked)`)."""

    def claim(rows: list[Model]) -> list[Model]:
        if rows:
            type(rows[0])._default_manager.filter(pk__in=[row.pk for row in rows]).update(**{marker: value})
        return rows

    return claim


def release(rows: Sequence[Model], *markers: str) -> None:
    """Set the marker columns of `rows` back to null (one UPDATE; none for no rows), so
    that the next run sends them."""
    if rows:
        type(rows[0])._default_manager.filter(pk__in=[row.pk for row in rows]).update(**dict.fromkeys(markers, None))


@dataclass
class Delivery:
    """Indexes of the messages passed to `deliver`, by outcome."""

    sent: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)  # never attempted
    in_doubt: list[int] = field(default_factory=list)  # interrupted while sending
    skipped: list[int] = field(default_factory=list)  # not attempted: the message it follows was not accepted
    error: Exception | None = None  # what stopped the delivery (re-raise it after settling)
    crash: BaseException | None = None  # an unexpected fault in a sending thread

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def tally(self, counts: dict[str, int], prefix: str = "") -> None:
        """Add this delivery's outcomes to a job's counts (sent, refused, unsent, in_doubt,
        each name after `prefix`)."""
        for outcome in ("sent", "refused", "unsent", "in_doubt"):
            key = prefix + outcome
            counts[key] = counts.get(key, 0) + len(getattr(self, outcome))


def deliver(messages: Sequence[EmailMessage | None]) -> Delivery:
    """Send `messages`, one at a time per connection, a connection per EMAIL_BATCH_SIZE
    messages (a large batch is split over parallel connections: see `_deliver`).

    None entries are skipped (reported in none of the lists). A refused message is
    `refused` and the rest still go. If the server cannot be reached (or the email
    backend cannot even be created), or a connection breaks, that connection's run stops:
    the message being sent is `in_doubt`, the rest of its run `unsent` (other runs go
    on), and `error` holds the exception.
    """
    return _deliver(messages, None)


def _deliver(messages: Sequence[EmailMessage | None], follows: Sequence[int | None] | None) -> Delivery:
    """`deliver`; with `follows`, message i is attempted only if message follows[i] (an
    earlier one) was accepted, else it is `skipped` (and uses no connection slot).

    A large batch goes out over up to EMAIL_SEND_CONNECTIONS connections at once, one
    thread each, every thread sending a contiguous run of the messages (a message and
    the ones that follow it stay together). Sending is mostly waiting for the server's
    replies, so the threads overlap those waits. They touch no database: the SENT events
    their connections collect are recorded here, in the caller's thread, afterwards.
    """
    pending = [index for index, message in enumerate(messages) if message is not None]
    lanes = _lanes(pending, follows)
    connections: list[Any] = []
    try:
        if len(lanes) == 1:
            return _send_lane(messages, follows, lanes[0], connections)
        results = [Delivery() for _ in lanes]
        threads = [
            threading.Thread(target=_run_lane, args=(messages, follows, lane, connections, results, number))
            for number, lane in enumerate(lanes)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        crash = next((result.crash for result in results if result.crash is not None), None)
        if crash is not None:  # as with one thread: the batch stays claimed, the journal settles it
            raise crash
        return _merge(results)
    finally:
        _record_sent(connections)


def _record_sent(connections: list[Any]) -> None:
    for connection in connections:
        if hasattr(connection, "record_sent"):  # RateLimitedBackend: one INSERT per connection
            connection.record_sent()


# A thread is worth starting for at least this many messages: small sends stay on one
# connection, in order.
LANE_MINIMUM = 25


def _lanes(pending: list[int], follows: Sequence[int | None] | None) -> list[list[int]]:
    """`pending` cut into contiguous runs, as many as EMAIL_SEND_CONNECTIONS allows with
    at least LANE_MINIMUM messages each, cut only before a message that follows none."""
    count = max(1, min(settings.EMAIL_SEND_CONNECTIONS, len(pending) // LANE_MINIMUM))
    if count == 1:
        return [pending]
    lanes: list[list[int]] = [[]]
    share = len(pending) / count
    for position, index in enumerate(pending):
        leads = follows is None or follows[index] is None
        if leads and lanes[-1] and position >= share * len(lanes) and len(lanes) < count:
            lanes.append([])
        lanes[-1].append(index)
    return lanes


def _run_lane(
    messages: Sequence[EmailMessage | None],
    follows: Sequence[int | None] | None,
    lane: list[int],
    connections: list[Any],
    results: list[Delivery],
    number: int,
) -> None:
    try:
        results[number] = _send_lane(messages, follows, lane, connections)
    except BaseException as exc:  # a fault of ours: raised in the caller's thread (see _deliver)
        results[number] = Delivery(crash=exc)


def _merge(results: list[Delivery]) -> Delivery:
    merged = Delivery()
    for result in results:
        for name in ("sent", "refused", "unsent", "in_doubt", "skipped"):
            getattr(merged, name).extend(getattr(result, name))
        merged.error = merged.error or result.error
    return merged


def _send_lane(
    messages: Sequence[EmailMessage | None],
    follows: Sequence[int | None] | None,
    lane: list[int],
    connections: list[Any],
) -> Delivery:
    """Send the messages at indexes `lane`, one at a time, over one connection per
    EMAIL_BATCH_SIZE messages; stop at the first broken connection."""
    result = Delivery()
    accepted: set[int] = set()
    size = settings.EMAIL_BATCH_SIZE
    connection, attempts = None, 0
    unwritten: list[str] = []  # journal acceptances that go out with the next write
    try:
        for position, index in enumerate(lane):
            leader = follows[index] if follows is not None else None
            if leader is not None and leader not in accepted:
                result.skipped.append(index)
                continue
            if connection is None:
                try:
                    connection = get_connection(record_later=True)
                    connections.append(connection)
                    connection.open()
                except Exception as exc:  # no backend, or no server: nothing of the run was attempted
                    connection = None
                    result.unsent.extend(lane[position:])
                    result.error = exc
                    return result
            attempts += 1
            key = getattr(messages[index], "journal_key", None)
            if key:
                _write_journal([*unwritten, _journal_name(ATTEMPTED, key)])
                unwritten.clear()
            try:
                ok = bool(connection.send_messages([messages[index]]))
            except REFUSED as exc:
                log.warning("email refused by the server: %s", type(exc).__name__)
                result.refused.append(index)
            except Exception as exc:
                result.in_doubt.append(index)
                result.unsent.extend(lane[position + 1 :])
                result.error = exc
                return result
            else:
                (result.sent if ok else result.refused).append(index)
                if ok:
                    accepted.add(index)
                    if key:
                        unwritten.append(_journal_name(ACCEPTED, key))
            if attempts == size:  # one connection per EMAIL_BATCH_SIZE messages
                _close(connection)
                connection, attempts = None, 0
    finally:
        if unwritten:
            _write_journal(unwritten)
        if connection is not None:
            _close(connection)
    return result


# The journal: what happened to a message whose row outlived its worker (SIGKILL, OOM,
# a lost machine) in the claimed state. A message built with `journal_key` set leaves two
# Redis keys: one before the attempt, one when the server accepted it. Recovery reads
# them: accepted -> it went out; attempted only -> in doubt; neither -> never attempted,
# safe to send. One round trip per message: an acceptance is written together with the
# next message's attempt (or when the run ends), so a worker killed in that instant
# leaves an accepted message in doubt: reported as possibly lost, never sent twice. The
# keys expire after a week.
ATTEMPTED, ACCEPTED = "attempted", "accepted"
JOURNAL_TTL = 7 * 24 * 3600


def _journal_name(state: str, key: str) -> str:
    return f"fanout:{state}:{key}"


def _write_journal(names: list[str]) -> None:
    """Set the journal keys `names` (one round trip)."""
    from yesgoddess.core.redis import redis_connection

    with redis_connection().pipeline(transaction=False) as pipe:
        for name in names:
            pipe.set(name, 1, ex=JOURNAL_TTL)
        pipe.execute()


def journal_outcomes(keys: Sequence[str]) -> dict[str, str]:
    """For each journal key: "sent", "in_doubt" or "unattempted" (one MGET)."""
    if not keys:
        return {}
    from yesgoddess.core.redis import redis_connection

    names = [f"fanout:{state}:{key}" for key in keys for state in (ATTEMPTED, ACCEPTED)]
    values = redis_connection().mget(names)
    outcomes = {}
    for i, key in enumerate(keys):
        attempted, accepted = values[2 * i], values[2 * i + 1]
        outcomes[key] = "sent" if accepted else "in_doubt" if attempted else "unattempted"
    return outcomes


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # closing a broken connection: nothing left to do
        log.debug("closing the mail connection failed", exc_info=True)


@dataclass
class RowDelivery(Generic[R]):
    """The rows passed to `deliver_rows`, by the outcome of their deciding message, and
    the rows of the accompanying messages by theirs (a row once per message)."""

    sent: list[R] = field(default_factory=list)
    refused: list[R] = field(default_factory=list)
    unsent: list[R] = field(default_factory=list)  # never attempted
    in_doubt: list[R] = field(default_factory=list)  # interrupted while sending
    also_sent: list[R] = field(default_factory=list)
    also_refused: list[R] = field(default_factory=list)
    also_lost: list[R] = field(default_factory=list)  # of a sent row, cut off by a break (never retried)
    error: Exception | None = None

    @property
    def to_retry(self) -> list[R]:
        """Rows whose marker is released for the next run: refused (the address may be
        fixed by then) or never attempted. A row in doubt keeps its marker."""
        return self.refused + self.unsent

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def deliver_rows(rows: Sequence[R], messages_of: Callable[[R], Sequence[EmailMessage]]) -> RowDelivery[R]:
    """Send, row after row, the row's messages `messages_of(row)`: the first is the
    deciding one, the others accompany it (the same notice to the other parties) and are
    attempted only if the server accepted it; as `deliver` does (one connection per
    EMAIL_BATCH_SIZE messages).

    A row's outcome is its deciding message's. A refused or unsent row sent none of its
    accompanying messages: they go with the retry, so nobody gets a second copy. If the
    connection breaks among a sent row's accompanying messages, the rest of them are
    lost (`also_lost`): the row is done, a message may be lost, never sent twice. All
    messages are built before the first is sent: if building one fails, every row is
    `unsent` and `error` holds the exception.
    """
    messages: list[EmailMessage] = []
    follows: list[int | None] = []
    owner: list[int] = []
    try:
        for number, row in enumerate(rows):
            lead = len(messages)
            for position, message in enumerate(messages_of(row)):
                messages.append(message)
                follows.append(None if position == 0 else lead)
                owner.append(number)
    except Exception as exc:  # a message could not be built: nothing was attempted
        return RowDelivery[R](unsent=list(rows), error=exc)
    result = _deliver(messages, follows)
    outcomes = {index: name for name in ("sent", "refused", "unsent", "in_doubt") for index in getattr(result, name)}
    rows_of = RowDelivery[R](error=result.error)
    for index, leader in enumerate(follows):
        row, outcome = rows[owner[index]], outcomes.get(index)  # None: skipped
        if leader is None:
            if outcome is not None:
                getattr(rows_of, outcome).append(row)
        elif outcome in ("sent", "refused"):
            getattr(rows_of, f"also_{outcome}").append(row)
        elif outcome is not None and outcomes.get(leader) == "sent":
            rows_of.also_lost.append(row)
    if rows_of.also_lost:
        log.warning("delivery stopped: %d accompanying message(s) of sent rows lost", len(rows_of.also_lost))
    return rows_of
