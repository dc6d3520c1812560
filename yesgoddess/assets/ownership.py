"""Ownership integrity (spec A §2.14, defects fixed; run by the `ownership-verification`
job): every live asset whose active ownership shares do not sum to 10,000 bps, assets with
no owner included, is recorded as an open finding; admins are told once per new finding,
and findings whose asset was fixed are closed."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import admin_user_ids, notify

from .models import OwnershipFinding

FULL_SHARE_BPS = 10_000

# One statement: live assets left-joined to their active ownerships; an asset with no
# active row sums to 0 and is a finding too (the original's GROUP BY could not see it).
# Sums are cast to int so they serialise (the original crashed on 64-bit counts).
INVALID_SQL = """
SELECT a.id, COALESCE(SUM(o.share_bps), 0)::int AS total_bps, COUNT(o.id)::int AS owners
FROM ip_assets a
LEFT JOIN ip_ownerships o
  ON o.ip_asset_id = a.id AND o.start_date <= %(now)s AND (o.end_date IS NULL OR o.end_date > %(now)s)
WHERE a.deleted_at IS NULL
GROUP BY a.id
HAVING COALESCE(SUM(o.share_bps), 0) <> %(full)s
"""


def verify_ownership() -> dict[str, int]:
    """Record findings, tell admins once per new finding, close findings that were fixed."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(INVALID_SQL, {"now": now, "full": FULL_SHARE_BPS})
        invalid = {asset_id: (total, owners) for asset_id, total, owners in cursor.fetchall()}
    with transaction.atomic():
        open_findings = {
            f.ip_asset_id: f for f in OwnershipFinding.objects.select_for_update().filter(resolved_at__isnull=True)
        }
        fixed = [f.pk for asset_id, f in open_findings.items() if asset_id not in invalid]
        OwnershipFinding.objects.filter(pk__in=fixed).update(resolved_at=now)
        new = [
            OwnershipFinding(ip_asset_id=asset_id, total_bps=total, owner_count=owners, notified_at=now)
            for asset_id, (total, owners) in invalid.items()
            if asset_id not in open_findings
        ]
        OwnershipFinding.objects.bulk_create(new)
        for asset_id, (total, owners) in invalid.items():
            if asset_id in open_findings:
                OwnershipFinding.objects.filter(pk=open_findings[asset_id].pk).update(
                    total_bps=total, owner_count=owners, last_seen_at=now
                )
        AuditEvent.objects.create(
            action="OWNERSHIP_INTEGRITY_CHECK_FAILED" if invalid else "OWNERSHIP_INTEGRITY_CHECK_PASSED",
            entity_type="ownership",
            entity_id="",
            after={"invalid": len(invalid), "new": len(new), "resolved": len(fixed), "checked_at": now.isoformat()},
        )
        if new:
            lines = ", ".join(f"asset {f.ip_asset_id} ({f.total_bps} bps, {f.owner_count} owners)" for f in new[:50])
            more = f" and {len(new) - 50} more" if len(new) > 50 else ""
            notify(
                admin_user_ids(),
                type=Notification.Type.SYSTEM,
                priority=Notification.Priority.HIGH,
                title=f"{len(new)} asset(s) with ownership shares not summing to 100%",
                message=lines + more,
                metadata={"asset_ids": [f.ip_asset_id for f in new[:500]]},
            )
    return {"invalid": len(invalid), "new_findings": len(new), "resolved": len(fixed)}
