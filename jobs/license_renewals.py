"""license-renewal-workflow (spec B §5.3, DECISIONS "Licenses"), daily at 02:00 UTC.

The phases live in `yesgoddess.licensing.renewal_workflow`; this runs them in order:

1. expire PENDING offers past their expiry (so a license can be offered again);
2. offers: an offer for every eligible license in force within 90 days of its end;
3. offer emails: the standalone offer email only where the 90-day expiry notice
   (license-expiry-monitor) will not carry the offer; otherwise that notice does, so
   the brand gets one email at the milestone;
4. the final notice at 7 days (+/- 1), once;
5. renewal confirmations that could not be sent at acceptance (catch-up);
6. the renewal snapshot of the 30 days ending yesterday (upserted).

Auto-renewals are not run here: they belong to license-management (DECISIONS).
Each phase runs even when an earlier one failed; a failed phase then fails the run so
that RQ retries it (every phase is idempotent: nothing is created or sent twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from jobs.errors import JobInputError
from yesgoddess.licensing import renewal_workflow
from yesgoddess.licensing.models import License

log = logging.getLogger(__name__)


class RenewalWorkflowError(RuntimeError):
    """One or more phases failed (each is logged); the others ran."""


def run_renewal_workflow() -> dict[str, int]:
    """Run every phase; return their counts."""
    now = timezone.now()
    counts: dict[str, int] = {}
    failed: list[str] = []
    phases: list[tuple[str, Callable[[datetime], Any]]] = [
        ("offers_expired", renewal_workflow.expire_stale_offers),
        ("offers", renewal_workflow.create_due_offers),
        ("offer_emails", renewal_workflow.send_offer_emails),
        ("final_notices", renewal_workflow.send_final_notices),
        ("confirmations_sent", renewal_workflow.send_renewal_confirmations),
        ("snapshot", renewal_workflow.record_renewal_snapshot),
    ]
    for name, phase in phases:
        try:
            result = phase(now)
        except Exception:
            log.exception("license-renewal-workflow phase=%s failed", name)
            failed.append(name)
            continue
        if isinstance(result, dict):
            counts.update(result)
        else:
            counts[name] = result
    if failed:
        raise RenewalWorkflowError(f"phases failed: {', '.join(failed)} (counts so far: {counts})")
    return counts


def send_renewal_confirmation(*, renewal_id: int) -> dict[str, int]:
    """The brand's confirmation of one accepted renewal (enqueued at acceptance), once."""
    if not License.objects.filter(pk=renewal_id, parent_license__isnull=False).exists():
        raise JobInputError(f"Renewal license {renewal_id} does not exist.")
    return {"renewal_id": renewal_id, "sent": renewal_workflow.send_renewal_confirmations(renewal_ids=[renewal_id])}
