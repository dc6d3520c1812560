"""Jobs that exist only for the test suite (merged into the registry through
settings.EXTRA_JOB_MODULES, in the test process and in the worker processes it starts).

The registry imports this module while it is being built, so anything that imports
the registry in turn (jobs.api, jobs.runtime) is imported inside the functions."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model

from jobs.errors import JobInputError
from jobs.registry import JobSpec
from yesgoddess.notifications.models import Notification


def attempts_key(user_id: int) -> str:
    return f"test:attempts:{user_id}"


def always_fail(*, user_id: int) -> None:
    """Record when it ran (to check the retry schedule), then fail."""
    from yesgoddess.core.redis import redis_connection

    redis_connection().rpush(attempts_key(user_id), time.time())
    raise RuntimeError(f"boom for user {user_id}")


def reject_input(*, user_id: int) -> None:
    if not get_user_model().objects.filter(pk=user_id).exists():
        raise JobInputError(f"user {user_id} does not exist")


def record_failure(kwargs: dict, error: str, job_id: str) -> None:
    """Failure hook: record the failure on a domain row, as real jobs do."""
    user = get_user_model().objects.filter(pk=kwargs["user_id"]).first()
    if user is not None:
        Notification.objects.create(
            user=user, type=Notification.Type.SYSTEM, title="Job failed", message=error, metadata={"job_id": job_id}
        )


def hold_until_released(*, key: str) -> dict[str, int]:
    """Wait while Redis key `key` exists (at most 60 s), reporting progress."""
    from jobs.runtime import set_progress
    from yesgoddess.core.redis import redis_connection

    waited = 0
    while redis_connection().exists(key) and waited < 600:
        set_progress(waited)
        time.sleep(0.1)
        waited += 1
    return {"waited_ticks": waited}


def count_users() -> dict[str, int]:
    return {"users": get_user_model().objects.count()}


def fail_without_hook(*, note: str = "") -> None:
    """Fails at once and for good: no retry, no failure hook of its own."""
    raise RuntimeError(f"failed on purpose {note}".strip())


JOBS = (
    JobSpec(
        "test-always-fail",
        "tests.support_jobs.always_fail",
        "default",
        "Fails every time.",
        retry_intervals=(2, 4),
        on_failure="tests.support_jobs.record_failure",
    ),
    JobSpec(
        "test-reject-input",
        "tests.support_jobs.reject_input",
        "default",
        "Rejects a missing user.",
        retry_intervals=(1, 2),
        on_failure="tests.support_jobs.record_failure",
    ),
    JobSpec(
        "test-hold", "tests.support_jobs.hold_until_released", "default", "Waits for a Redis key to go.", timeout=120
    ),
    JobSpec("test-count-users", "tests.support_jobs.count_users", "default", "Touches the database."),
    JobSpec("test-fail-no-hook", "tests.support_jobs.fail_without_hook", "default", "Fails once; no hook."),
)
