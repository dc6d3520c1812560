"""Handlers of the campaign jobs: `email-campaign` (the chain, one batch per run),
`email-campaign.helper` (extra batches alongside it) and the chain's failure hook.

The sending workflow (claims, pacing, helpers, completion) is
`yesgoddess.campaigns.sending`; these only turn a queue message into one call of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from jobs.registry import get_spec
from jobs.runtime import set_progress
from yesgoddess.campaigns import sending


def send_campaign_batch(*, campaign_id: int) -> dict[str, Any]:
    """email-campaign: send the next batch of a campaign, then queue the one after."""
    # Rows claimed longer ago than a run of this job may last were left by a killed worker.
    run_limit = timedelta(seconds=get_spec("email-campaign").timeout)
    return sending.send_next_batch(campaign_id, stale_after=run_limit, progress=set_progress)


def send_campaign_helper_batch(*, campaign_id: int) -> dict[str, Any]:
    """email-campaign.helper: one batch of a SENDING campaign alongside its chain; never
    queues another run, never completes the campaign."""
    return sending.send_helper_batch(campaign_id)


def record_campaign_failure(kwargs: dict[str, Any], error: str, job_id: str) -> None:
    """Final failure of an email-campaign run (after RQ's retries): the campaign is FAILED."""
    campaign_id = kwargs.get("campaign_id")
    if campaign_id is not None:
        sending.record_batch_failure(campaign_id, job_id, error)
