"""The one way a license changes status (spec B §5.4, DECISIONS "one owner per transition").

`transition_many` moves a set of licenses from one status to another with a conditional
UPDATE (`WHERE status = from`), so two jobs racing over the same license move it once;
each license moved gets a `LicenseStatusHistory` row and an audit row, in the caller's
transaction. Queries are constant in the number of licenses.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from yesgoddess.core.models import AuditEvent

from .models import ALLOWED_TRANSITIONS, License, LicenseStatus, LicenseStatusHistory


class InvalidTransition(ValueError):
    """A status change the state machine does not allow."""


def check_transition(from_status: str, to_status: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS.get(from_status, frozenset()):
        raise InvalidTransition(f"Invalid status transition from {from_status} to {to_status}.")


def transition_many(
    license_ids: Iterable[int],
    from_status: str,
    to_status: str,
    *,
    reason: str,
    actor_id: int | None = None,
    now: datetime | None = None,
    **fields: Any,
) -> list[int]:
    """Move the licenses still in `from_status` to `to_status`; return the ids moved.

    `fields` are set in the same UPDATE (`expired_at`, `grace_period_end_date`, ...).
    """
    check_transition(from_status, to_status)
    ids = list(dict.fromkeys(license_ids))
    if not ids:
        return []
    now = now or timezone.now()
    queryset = License.objects.filter(pk__in=ids, status=from_status)
    if to_status == LicenseStatus.RENEWED:
        # Renewed means a renewal exists; without one the change is refused, not recorded.
        children = License.objects.filter(parent_license=OuterRef("pk"), deleted_at__isnull=True)
        queryset = queryset.filter(Exists(children.exclude(status=LicenseStatus.CANCELED)))
    with transaction.atomic():
        moved = list(queryset.values_list("pk", flat=True))
        if not moved:
            return []
        update: dict[str, Any] = {"status": to_status, **fields}
        License.objects.filter(pk__in=moved, status=from_status).update(**update)
        if to_status == LicenseStatus.ACTIVE:
            License.objects.filter(pk__in=moved, signed_at__isnull=True).update(signed_at=now)
        automated = actor_id is None
        LicenseStatusHistory.objects.bulk_create(
            LicenseStatusHistory(
                license_id=pk,
                from_status=from_status,
                to_status=to_status,
                transitioned_at=now,
                transitioned_by_id=actor_id,
                reason=reason,
                metadata={"automated": automated},
            )
            for pk in moved
        )
        # Expressions (F("end_date") + ...) have no value here; the history row has the state.
        values = {k: _jsonable(v) for k, v in fields.items() if not hasattr(v, "resolve_expression")}
        after = {"status": to_status, "reason": reason} | values
        AuditEvent.objects.bulk_create(
            AuditEvent(
                action="status_transition",
                entity_type="license",
                entity_id=str(pk),
                actor_id=actor_id,
                before={"status": from_status},
                after=after,
                created_at=now,
            )
            for pk in moved
        )
    return moved


def transition(license: License, to_status: str, *, reason: str, actor_id: int | None = None, **fields: Any) -> bool:
    """Move one license; False when it was no longer in the status it was read with."""
    moved = transition_many([license.pk], license.status, to_status, reason=reason, actor_id=actor_id, **fields)
    if moved:
        license.status = to_status
        for name, value in fields.items():
            setattr(license, name, value)
    return bool(moved)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
