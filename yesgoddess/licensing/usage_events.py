"""Recording license usage events (spec B §5.5): the API body's validation
(`parse_usage_report`) and `record_usage_event`; and `purge_old_events`, the weekly
cleanup of raw events older than USAGE_EVENT_RETENTION_DAYS (the daily aggregates stay).

Recording is one INSERT (`ON CONFLICT (idempotency_key) DO NOTHING`): no job per event
and no per-event UPDATE of the license row, which every writer of that license would
queue behind. The license's `last_usage_at` and `total_usage_events` are maintained by
the hourly aggregation instead (`usage_aggregation`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from yesgoddess.core.batches import delete_in_chunks

from .models import LicenseUsageEvent, UsageType
from .usage import earliest_reportable

PLATFORMS = ("web", "mobile", "tv", "print", "social", "other")
MAX_INT = 2**31 - 1  # quantity is an int column
MAX_BIGINT = 2**63 - 1


class UsageInputError(ValueError):
    """A usage report that cannot be recorded (the API answers 400 with the message)."""


@dataclass
class UsageReport:
    usage_type: str
    quantity: int = 1
    occurred_at: datetime | None = None
    revenue_cents: int = 0
    session_id: str | None = None
    platform: str | None = None
    device_type: str | None = None
    geographic_location: str | None = None
    referrer: str | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


STRING_LIMITS = {
    "session_id": 128,
    "device_type": 50,
    "geographic_location": 100,
    "referrer": 2048,
    "idempotency_key": 255,
}
ALLOWED_FIELDS = {"usage_type", "quantity", "occurred_at", "revenue_cents", "platform", "metadata", *STRING_LIMITS}


def _integer(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageInputError(f"{name} must be an integer.")
    if not low <= value <= high:
        raise UsageInputError(f"{name} must be between {low} and {high}.")
    return value


def parse_usage_report(body: dict[str, Any], *, now: datetime, license_start: datetime) -> UsageReport:
    """Validate an API body into a `UsageReport` (raises UsageInputError)."""
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise UsageInputError(f"Unknown field(s): {', '.join(unknown)}.")
    usage_type = body.get("usage_type")
    if usage_type not in UsageType.values:
        raise UsageInputError(f"usage_type must be one of {', '.join(UsageType.values)}.")
    report = UsageReport(
        usage_type=usage_type,
        quantity=_integer(body, "quantity", 1, 1, MAX_INT),
        revenue_cents=_integer(body, "revenue_cents", 0, 0, MAX_BIGINT),
    )
    for name, limit in STRING_LIMITS.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise UsageInputError(f"{name} must be a non-empty string.")
        if len(value) > limit:
            raise UsageInputError(f"{name} is longer than {limit} characters.")
        setattr(report, name, value.strip())
    platform = body.get("platform")
    if platform is not None:
        if platform not in PLATFORMS:
            raise UsageInputError(f"platform must be one of {', '.join(PLATFORMS)}.")
        report.platform = platform
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(json.dumps(metadata)) > 4096:
            raise UsageInputError("metadata must be a JSON object of at most 4 KB.")
        report.metadata = metadata
    raw = body.get("occurred_at")
    if raw is not None:
        if not isinstance(raw, str):
            raise UsageInputError("occurred_at must be an ISO 8601 date-time string.")
        try:
            occurred = datetime.fromisoformat(raw)
        except ValueError:
            raise UsageInputError("occurred_at must be an ISO 8601 date-time, e.g. 2025-03-01T12:00:00Z.") from None
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)  # every time in the system is UTC
        if occurred > now:
            raise UsageInputError("occurred_at is in the future.")
        earliest = earliest_reportable(now)
        if occurred < earliest:
            raise UsageInputError(
                f"occurred_at is too old: usage can be reported up to the start of yesterday ({earliest.isoformat()})."
            )
        if occurred < license_start:
            raise UsageInputError("occurred_at is before the license started.")
        report.occurred_at = occurred
    return report


INSERT_EVENT_SQL = """
INSERT INTO license_usage_events
  (license_id, occurred_at, usage_type, quantity, geographic_location, platform, device_type, referrer,
   revenue_cents, metadata, session_id, idempotency_key, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""


class IdempotencyConflict(Exception):
    """The idempotency key was already used for a different event."""


def record_usage_event(
    license_id: int, report: UsageReport, *, now: datetime | None = None
) -> tuple[int, datetime, bool]:
    """Insert one usage event; return (event id, its occurred_at, created).

    One INSERT. With an idempotency key already used for the same event, nothing is
    inserted and the first event is returned (created False); used for another event
    (another license, type, quantity or revenue), IdempotencyConflict.
    """
    now = now or timezone.now()
    occurred_at = report.occurred_at or now
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_EVENT_SQL,
            [
                license_id,
                occurred_at,
                report.usage_type,
                report.quantity,
                report.geographic_location,
                report.platform,
                report.device_type,
                report.referrer,
                report.revenue_cents,
                json.dumps(report.metadata),
                report.session_id,
                report.idempotency_key,
                now,
            ],
        )
        row = cursor.fetchone()
    if row is not None:
        return row[0], occurred_at, True
    first = LicenseUsageEvent.objects.filter(idempotency_key=report.idempotency_key).first()
    if first is None:  # purged between the two statements: practically impossible, but say so
        raise IdempotencyConflict("The idempotency key is being used by another request; retry.")
    same = (first.license_id, first.usage_type, first.quantity, first.revenue_cents) == (
        license_id,
        report.usage_type,
        report.quantity,
        report.revenue_cents,
    )
    if not same:
        raise IdempotencyConflict("This idempotency_key was already used for a different usage event.")
    return first.pk, first.occurred_at, False


def purge_old_events(now: datetime | None = None) -> dict[str, int]:
    """Delete raw usage events that occurred more than USAGE_EVENT_RETENTION_DAYS ago, in
    chunks of about CLEANUP_BATCH_SECONDS. An event exactly that old is kept (strictly
    older ones go), matching the spec's `occurredAt < now - 90 days`."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.USAGE_EVENT_RETENTION_DAYS)
    old = LicenseUsageEvent.objects.filter(occurred_at__lt=cutoff)
    return delete_in_chunks(old, settings.CLEANUP_BATCH_SECONDS).as_counts()
