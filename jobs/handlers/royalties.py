"""royalty-calculation and statement-notification (spec C §2.1, §2.2; DECISIONS "Royalties").

The rules live in `yesgoddess.royalties.services` (calculating a run once) and
`yesgoddess.royalties.statements` (the statement emails).
"""

from __future__ import annotations

from typing import Any

from jobs.registry import get_spec
from jobs.runtime import set_progress
from yesgoddess.royalties import services, statements


def calculate_royalties(*, run_id: int, user_id: int | None = None) -> dict[str, int]:
    """royalty-calculation: calculate the run once (a FAILED one again)."""
    # The run's lock lasts as long as a run of this job may (its RQ timeout).
    lock_seconds = get_spec("royalty-calculation").timeout
    return services.calculate_once(run_id, user_id, lock_seconds=lock_seconds, progress=set_progress)


def record_calculation_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure (also a worker killed mid-run): the run is FAILED with the reason."""
    services.mark_failed(kwargs["run_id"], error)


def notify_statements(*, run_id: int) -> dict[str, int]:
    """statement-notification: one email and in-app notification per statement, once each."""
    return statements.notify_statements(run_id, progress=set_progress)
