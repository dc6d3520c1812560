"""Error reports to Sentry (sentry-sdk), when settings.SENTRY_DSN is set.

Started once per process from CoreConfig.ready() (web, workers, rq-scheduler, commands),
never at import. Django's integration reports unhandled request errors, RQ's reports a
job's final failure (not the attempts RQ will retry) and the logging integration sends
ERROR lines. Every RQ job's function is the runtime wrapper, so the runtime tags each
job's events with the job's name and id (jobs/telemetry.py): that is what Sentry groups
and filters them by. Without a DSN nothing is initialised and nothing is sent.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from django.conf import settings
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.rq import RqIntegration


def init_sentry() -> bool:
    """Start the Sentry client if a DSN is configured; return whether it was started."""
    if not settings.SENTRY_DSN:
        return False
    sentry_sdk.init(
        dsn=settings.SENTRY_DSN,
        environment=settings.SENTRY_ENVIRONMENT,
        integrations=[DjangoIntegration(), RqIntegration()],
        # No personal data (emails, cookies, job arguments) leaves the system by default.
        send_default_pii=False,
        before_send=group_by_job,
    )
    return True


def group_by_job(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """An event of a job is grouped with the same error of the same job only: its `job`
    tag joins the fingerprint (the default grouping, or e.g. RQ's timeout grouping, which
    names the job function, i.e. the runtime wrapper, for every job)."""
    job = (event.get("tags") or {}).get("job")
    if job:
        event["fingerprint"] = [*(event.get("fingerprint") or ["{{ default }}"]), f"job:{job}"]
    return event
