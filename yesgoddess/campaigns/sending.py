"""Sending a campaign: one batch per run of the `email-campaign` chain (spec C §2.10, fixed).

`services` holds the campaign's status changes made by people (send, pause, resume,
cancel) and the messages; this module holds what the sending jobs do with them. One run
of the chain (`send_next_batch`) = one batch:

1. Re-read the campaign. SCHEDULED becomes SENDING (and `send_started_at` is set);
   anything but SENDING (PAUSED, CANCELLED, COMPLETED, FAILED) stops the chain here, so
   a pause takes effect between batches and a resume continues with the PENDING rows.
   While reputation-monitoring's latest row holds a critical condition the campaign is
   PAUSED here too (the spec's port note: consult it before each batch), unless an
   operator resumed it over conditions at least as bad (`reputation_stops`).
2. Claim up to `batch_size` PENDING recipients with the fan-out claim
   (`yesgoddess.notifications.fanout`): in one short transaction, rows whose address is
   suppressed or opted out of campaigns become SKIPPED, rows of users who take campaigns
   as a digest become DEFERRED with a `DeferredEmail` for `email-digest`, and the rest
   become SENDING. That commits before anything is sent.
3. Send the SENDING rows (`fanout.deliver`: up to EMAIL_SEND_CONNECTIONS connections at
   once; the global EMAIL_RATE_LIMIT_PER_SECOND is applied by the email backend), with
   List-Unsubscribe / List-Unsubscribe-Post.
   Accepted -> SENT (with its Message-ID); refused -> FAILED; never attempted (the server
   went away) -> back to PENDING, and the delivery error is raised so RQ retries: the
   retry sends only those. The one message in flight when a connection broke is FAILED
   ("in doubt"): a crash may lose a message, never send one twice. A message that cannot
   even be built (a broken template or personalization) is FAILED with the reason; the
   batch goes on.
4. Recompute the counters from the recipients, report progress, then either complete the
   campaign (nothing PENDING left; rows a dead run left SENDING are first settled from the
   send journal, and those never attempted go back to PENDING and are sent before the
   campaign completes) or enqueue the next batch with the delay that keeps
   `messages_per_hour` (3600 x messages sent / messages_per_hour, minus the time the
   batch took): no job ever sleeps. Enqueues are deduplicated per campaign, so one chain
   of batch jobs runs per campaign. With EMAIL_CAMPAIGN_PARALLEL_BATCHES > 1 the chain
   also queues `email-campaign.helper` jobs (`send_helper_batch`) that send one batch
   each on other workers (claimed the same way, so never the same rows); the chain
   completes the campaign once no helper is queued or running.

The final failure of a run (after RQ's retries) marks the campaign FAILED
(`record_batch_failure`); `services.resume` continues it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.api import enqueue, job_active, release_own_dedup
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.emailing.reputation import latest_pausing, worse_than
from yesgoddess.emailing.services import blocked
from yesgoddess.notifications.fanout import Delivery, claimed_batches, deliver, journal_outcomes

from . import services
from .models import (
    CampaignRecipient,
    CampaignStatus,
    DeferredEmail,
    EmailCampaign,
    RecipientStatus,
)

log = logging.getLogger(__name__)

HELPER = "email-campaign.helper"
HELPER_WAIT = 10.0  # seconds the chain's last run waits for helpers still sending
HELPER_RECHECK = 30  # seconds before it looks again when they have not finished by then
IN_DOUBT = "connection lost while sending; not retried, so it is never sent twice"
REPUTATION_PAUSE = (
    "sender reputation is at a critical level (reputation-monitoring); a resume holds unless it gets worse"
)


# --- the chain of batch jobs ------------------------------------------------------------


def requeue_self(name: str, dedup_key: str, delay: float | None, **kwargs: Any) -> str:
    """Enqueue the next run of a self-continuing job under the same `dedup_key`.

    While this job runs, its own dedup marker would make `enqueue` return this job's id;
    the marker is released first (only if it still names this job), then the next run is
    enqueued deduplicated as usual: if something else queued a run of the chain meanwhile,
    that one is kept and no second chain starts.
    """
    release_own_dedup(name, dedup_key)
    return enqueue(name, dedup_key=dedup_key, delay=delay, **kwargs)


def requeue_chain(campaign_id: int, delay: float | None) -> str:
    """Queue the campaign chain's next run (after `delay` seconds)."""
    return requeue_self(services.JOB, services.chain_key(campaign_id), delay, campaign_id=campaign_id)


def stop_chain(campaign_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """End the chain here (paused, cancelled, done): release this run's dedup marker, then
    look once more. A resume that came in meanwhile found this run still active and so
    queued nothing; the chain then goes on from here instead of stalling."""
    key = services.chain_key(campaign_id)
    release_own_dedup(services.JOB, key)
    status = EmailCampaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
    if status in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
        result["next"] = enqueue(services.JOB, dedup_key=key, campaign_id=campaign_id)
        EmailCampaign.objects.filter(pk=campaign_id).update(job_id=result["next"])
    return result


def next_delay(campaign: EmailCampaign, attempted: int, elapsed: float) -> float | None:
    """Seconds to wait before the next batch so that the campaign keeps messages_per_hour."""
    seconds = 3600.0 * attempted / campaign.messages_per_hour - elapsed
    return seconds if seconds >= 1 else None


# --- state moves ------------------------------------------------------------------------


def campaign_to_send(campaign_id: int) -> EmailCampaign:
    """The campaign a batch job names; `EmailCampaign.DoesNotExist` if there is none."""
    campaign = EmailCampaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise InvalidInput(f"Campaign {campaign_id} does not exist.")
    return campaign


def start(campaign: EmailCampaign, now: datetime) -> EmailCampaign:
    """SCHEDULED -> SENDING (conditional update); return the campaign as it is now."""
    if campaign.status == CampaignStatus.SCHEDULED:
        EmailCampaign.objects.filter(pk=campaign.pk, status=CampaignStatus.SCHEDULED).update(
            status=CampaignStatus.SENDING, send_started_at=Coalesce(F("send_started_at"), now), updated_at=now
        )
        campaign.refresh_from_db()
    return campaign


def pause_for_reputation(campaign_id: int, now: datetime) -> None:
    """SENDING -> PAUSED because reputation-monitoring's latest row says stop sending."""
    EmailCampaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).update(
        status=CampaignStatus.PAUSED, paused_at=now, status_reason=REPUTATION_PAUSE, updated_at=now
    )
    log.warning("campaign=%s paused: sender reputation is at a critical level", campaign_id)


def reputation_stops(campaign: EmailCampaign) -> bool:
    """Whether reputation-monitoring's latest row for our sender domain holds a pausing
    condition worse than the ones an operator resumed this campaign over (none, unless
    it was resumed while they stood)."""
    domain = settings.EMAIL_SENDER_DOMAIN
    return worse_than(latest_pausing(domain), (campaign.reputation_accepted or {}).get(domain, {}))


def record_batch_failure(campaign_id: int, job_id: str, error: str) -> None:
    """Final failure of a batch job: the campaign is FAILED (resume continues it)."""
    EmailCampaign.objects.filter(pk=campaign_id, status__in=(CampaignStatus.SCHEDULED, CampaignStatus.SENDING)).update(
        status=CampaignStatus.FAILED, status_reason=f"batch job {job_id} failed: {error}"[:2000]
    )


# --- recipients -------------------------------------------------------------------------


def mark_sent(ids: list[int], message_ids: list[str], now: datetime) -> None:
    """SENT with each row's Message-ID: one UPDATE for the batch (bulk_update's CASE
    expressions cost more Python time than the send itself)."""
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaign_recipients AS r SET status = %s, sent_at = %s, message_id = v.message_id "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, message_id) WHERE r.id = v.id",
            [RecipientStatus.SENT, now, ids, message_ids],
        )


def mark_failed(failures: list[tuple[CampaignRecipient, str]]) -> None:
    """FAILED with the reason: one UPDATE per distinct reason."""
    by_error: dict[str, list[int]] = defaultdict(list)
    for row, error in failures:
        by_error[error].append(row.pk)
    for error, ids in by_error.items():
        CampaignRecipient.objects.filter(pk__in=ids).update(status=RecipientStatus.FAILED, error=error)


def release_to_pending(ids: list[int]) -> None:
    """Never attempted: PENDING again, so a later run sends them."""
    CampaignRecipient.objects.filter(pk__in=ids, status=RecipientStatus.SENDING).update(
        status=RecipientStatus.PENDING, claimed_at=None
    )


def recover_stranded(campaign_id: int, now: datetime, stale_after: timedelta) -> dict[str, int]:
    """Recipients a killed worker left SENDING (claimed longer ago than a batch job may
    run, `stale_after`): settled from the send journal (`settle_from_journal`)."""
    rows = CampaignRecipient.objects.filter(
        campaign_id=campaign_id, status=RecipientStatus.SENDING, claimed_at__lt=now - stale_after
    )
    return {f"recovered_{state}": n for state, n in settle_from_journal(rows, now).items()}


def settle_from_journal(rows: QuerySet[CampaignRecipient], now: datetime) -> dict[str, int]:
    """Settle claimed (SENDING) recipients whose run died from the send journal: accepted
    -> SENT; attempted -> FAILED in doubt (never re-sent); never attempted -> PENDING,
    so the chain sends them. Return how many of each ("sent", "in_doubt", "unattempted")."""
    claimed = list(rows.only("pk", "message_id"))
    outcomes = journal_outcomes([f"campaign-recipient:{row.pk}" for row in claimed])
    by = defaultdict(list)
    for row in claimed:
        by[outcomes[f"campaign-recipient:{row.pk}"]].append(row)
    mark_sent([r.pk for r in by["sent"]], [r.message_id or "" for r in by["sent"]], now)
    mark_failed([(row, IN_DOUBT) for row in by["in_doubt"]])
    release_to_pending([r.pk for r in by["unattempted"]])
    return {state: len(by[state]) for state in ("sent", "in_doubt", "unattempted")}


def settle_interrupted(campaign_id: int, now: datetime) -> dict[str, int]:
    """At completion no other run is active (this run settled its own batch, no helper is
    queued or running), so rows still SENDING were claimed by a run that died mid-send
    before they went stale: settled from the send journal like stranded ones, so a
    recipient who was never attempted is sent, not dropped as FAILED."""
    rows = CampaignRecipient.objects.filter(campaign_id=campaign_id, status=RecipientStatus.SENDING)
    settled = settle_from_journal(rows, now)
    if any(settled.values()):
        services.refresh_counters(campaign_id)
    return {f"interrupted_{state}": n for state, n in settled.items()}


# --- one batch --------------------------------------------------------------------------


class BatchClaim:
    """The fan-out claim of a campaign's PENDING rows: suppressed/opted-out rows SKIPPED,
    digest users' rows DEFERRED (a `DeferredEmail` each), the rest SENDING."""

    def __init__(self, campaign: EmailCampaign, now: datetime, counts: dict[str, Any]) -> None:
        self.campaign, self.now, self.counts = campaign, now, counts
        self.summary, self.link = services.campaign_summary(campaign), services.campaign_link(campaign)

    def __call__(self, rows: list[CampaignRecipient]) -> list[CampaignRecipient]:
        no = blocked([row.email for row in rows], services.CATEGORY)
        digest = services.digest_users([row.user_id for row in rows])
        skipped = [row for row in rows if row.email in no]
        deferred = [row for row in rows if row.email not in no and row.user_id in digest]
        sending = [row for row in rows if row.email not in no and row.user_id not in digest]
        if skipped:
            CampaignRecipient.objects.filter(pk__in=[r.pk for r in skipped]).update(
                status=RecipientStatus.SKIPPED, error="suppressed or unsubscribed from campaigns"
            )
        if deferred:
            self.defer(deferred)
        if sending:
            CampaignRecipient.objects.filter(pk__in=[r.pk for r in sending]).update(
                status=RecipientStatus.SENDING, claimed_at=self.now
            )
        self.counts["skipped"] += len(skipped)
        self.counts["deferred"] += len(deferred)
        self.counts["claimed"] += len(sending)
        return sending

    def defer(self, rows: list[CampaignRecipient]) -> None:
        campaign = self.campaign
        DeferredEmail.objects.bulk_create(
            [
                DeferredEmail(
                    user_id=row.user_id,
                    category=services.CATEGORY,
                    campaign=campaign,
                    subject=campaign.subject,
                    summary=self.summary,
                    link=self.link,
                    created_at=self.now,
                )
                for row in rows
            ],
            ignore_conflicts=True,
        )
        CampaignRecipient.objects.filter(pk__in=[r.pk for r in rows]).update(status=RecipientStatus.DEFERRED)


def build_messages(
    campaign: EmailCampaign, batch: list[CampaignRecipient]
) -> tuple[list[Any], list[str], list[tuple[CampaignRecipient, str]]]:
    """The batch's messages (None where one could not be built), their Message-IDs and
    the rows that could not be built, with the reason."""
    messages: list[Any] = []
    message_ids: list[str] = []
    poison: list[tuple[CampaignRecipient, str]] = []
    renderer = services.CampaignRenderer(campaign)
    for row in batch:
        try:
            message, message_id = renderer.message(row)
        except Exception as exc:  # one bad row must not block the batch
            log.warning("campaign=%s recipient=%s message not built: %s", campaign.pk, row.pk, type(exc).__name__)
            poison.append((row, f"message could not be built: {type(exc).__name__}: {exc}"[:2000]))
            message, message_id = None, ""
        if message is not None:
            message.journal_key = f"campaign-recipient:{row.pk}"
        messages.append(message)
        message_ids.append(message_id)
    return messages, message_ids, poison


def settle(
    batch: list[CampaignRecipient],
    result: Delivery,
    message_ids: list[str],
    poison: list[tuple[CampaignRecipient, str]],
    now: datetime,
    counts: dict[str, Any],
) -> None:
    """Record each row's outcome and count it."""
    mark_sent([batch[i].pk for i in result.sent], [message_ids[i] for i in result.sent], now)
    failures = [(batch[i], "refused by the mail server") for i in result.refused]
    failures += [(batch[i], IN_DOUBT) for i in result.in_doubt] + poison
    mark_failed(failures)
    if result.unsent:  # never attempted: PENDING again, for the retry
        CampaignRecipient.objects.filter(pk__in=[batch[i].pk for i in result.unsent]).update(
            status=RecipientStatus.PENDING, claimed_at=None
        )
    counts["sent"] = len(result.sent)
    counts["failed"] = len(failures)
    counts["released"] = len(result.unsent)
    counts["in_doubt"] = len(result.in_doubt)


def send_batch(campaign: EmailCampaign, now: datetime) -> dict[str, Any]:
    """Claim, send and settle one batch; return its counts (the delivery error is raised
    after the rows are settled)."""
    counts = {"claimed": 0, "sent": 0, "failed": 0, "skipped": 0, "deferred": 0, "released": 0, "in_doubt": 0}
    pending = CampaignRecipient.objects.filter(campaign_id=campaign.pk, status=RecipientStatus.PENDING)
    batches = claimed_batches(pending, BatchClaim(campaign, now, counts), batch=campaign.batch_size)
    batch = next(batches, None)
    batches.close()
    if not batch:
        return counts

    messages, message_ids, poison = build_messages(campaign, batch)
    result = deliver(messages)
    settle(batch, result, message_ids, poison, now, counts)
    if result.error is not None:
        services.refresh_counters(campaign.pk)
        log.warning(
            "campaign=%s batch interrupted: sent=%s released=%s in_doubt=%s error=%s",
            campaign.pk,
            counts["sent"],
            counts["released"],
            counts["in_doubt"],
            type(result.error).__name__,
        )
        result.raise_error()
    return counts


# --- the chain's run and the helpers' ---------------------------------------------------


def send_next_batch(campaign_id: int, *, stale_after: timedelta, progress: Progress = no_progress) -> dict[str, Any]:
    """One run of the chain: send the campaign's next batch, then queue the one after (or
    complete the campaign). `stale_after` is how long a batch job may run: rows claimed
    longer ago were left by a killed worker (`recover_stranded`)."""
    started = time.monotonic()
    now = timezone.now()
    campaign = campaign_to_send(campaign_id)
    if (
        campaign.status == CampaignStatus.SCHEDULED
        and campaign.scheduled_send_time is not None
        and (wait := (campaign.scheduled_send_time - now).total_seconds()) >= 1
    ):  # run early (by hand): wait for the scheduled time
        job_id = requeue_chain(campaign_id, wait)
        return {"campaign_id": campaign_id, "status": campaign.status, "waiting_seconds": round(wait), "next": job_id}
    campaign = start(campaign, now)
    if campaign.status != CampaignStatus.SENDING:
        log.info("campaign=%s is %s: nothing sent", campaign_id, campaign.status)
        return stop_chain(campaign_id, {"campaign_id": campaign_id, "status": campaign.status, "stopped": True})
    if reputation_stops(campaign):
        pause_for_reputation(campaign_id, now)
        return stop_chain(campaign_id, {"campaign_id": campaign_id, "status": CampaignStatus.PAUSED, "stopped": True})

    recovered = recover_stranded(campaign_id, now, stale_after)
    counts = send_batch(campaign, now) | recovered
    totals = services.refresh_counters(campaign_id)
    remaining = totals[RecipientStatus.PENDING]
    total = sum(totals.values())
    progress(total - remaining, total, f"campaign {campaign_id}")
    result: dict[str, Any] = {"campaign_id": campaign_id, **counts, "pending": remaining}
    if remaining == 0:
        return finish_campaign(campaign_id, now, result)
    return continue_chain(campaign, remaining, started, result)


def finish_campaign(campaign_id: int, now: datetime, result: dict[str, Any]) -> dict[str, Any]:
    """Nothing PENDING is left: COMPLETED once no helper is sending (else look again
    later) and no interrupted row turns out never attempted (else send it first)."""
    if not helpers_done(campaign_id, HELPER_WAIT):  # their batches are still going out
        result["status"] = CampaignStatus.SENDING
        result["next"] = requeue_chain(campaign_id, HELPER_RECHECK)
        result["waiting_for_helpers"] = True
        return result
    interrupted = settle_interrupted(campaign_id, now)
    result.update(interrupted)
    if interrupted["interrupted_unattempted"]:  # back to PENDING: the chain sends them first
        status = EmailCampaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
        result["status"] = status
        if status != CampaignStatus.SENDING:
            return stop_chain(campaign_id, result)
        result["pending"] = interrupted["interrupted_unattempted"]
        result["next"] = requeue_chain(campaign_id, None)
        EmailCampaign.objects.filter(pk=campaign_id).update(job_id=result["next"])
        return result
    done = EmailCampaign.objects.filter(pk=campaign_id, status=CampaignStatus.SENDING).update(
        status=CampaignStatus.COMPLETED, send_completed_at=timezone.now(), updated_at=timezone.now()
    )
    if done:
        result["status"] = CampaignStatus.COMPLETED
        return result
    result["status"] = EmailCampaign.objects.get(pk=campaign_id).status
    return stop_chain(campaign_id, result)


def continue_chain(campaign: EmailCampaign, remaining: int, started: float, result: dict[str, Any]) -> dict[str, Any]:
    """Rows are still PENDING: queue the next batch at the campaign's pace (and helpers
    when it is fast enough), unless it was paused or cancelled during this batch.
    `started` is the run's `time.monotonic()` start: the batch's time counts against the pause."""
    status = EmailCampaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
    result["status"] = status
    if status != CampaignStatus.SENDING:  # paused or cancelled during the batch
        return stop_chain(campaign.pk, result)
    delay = next_delay(campaign, result["sent"] + result["failed"], time.monotonic() - started)
    result["helpers"] = start_helpers(campaign, remaining)
    job_id = requeue_chain(campaign.pk, delay)
    EmailCampaign.objects.filter(pk=campaign.pk).update(job_id=job_id)
    result["next_delay_seconds"] = round(delay or 0, 1)
    return result


def helper_keys(campaign_id: int) -> list[str]:
    chain = services.chain_key(campaign_id)
    return [f"{chain}-helper-{slot}" for slot in range(1, settings.EMAIL_CAMPAIGN_PARALLEL_BATCHES)]


def start_helpers(campaign: EmailCampaign, pending: int) -> list[str]:
    """Queue one `email-campaign.helper` per free slot of EMAIL_CAMPAIGN_PARALLEL_BATCHES
    (deduplicated per slot), so that other `bulk` workers send batches alongside the
    chain. Only with more than a batch pending, and only when the campaign is not paced
    even at that many batches at once (messages_per_hour needs no pause between them):
    a paced campaign is sent by the chain alone."""
    parallel = settings.EMAIL_CAMPAIGN_PARALLEL_BATCHES
    if parallel < 2 or pending <= campaign.batch_size:
        return []
    if next_delay(campaign, campaign.batch_size * parallel, 0) is not None:  # paced: the chain alone
        return []
    return [enqueue(HELPER, dedup_key=key, campaign_id=campaign.pk) for key in helper_keys(campaign.pk)]


def helpers_done(campaign_id: int, wait: float) -> bool:
    """Whether no helper of the campaign is queued or running, waiting up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while any(job_active(HELPER, key) for key in helper_keys(campaign_id)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def send_helper_batch(campaign_id: int) -> dict[str, Any]:
    """One batch of a SENDING campaign alongside its chain. It claims like the chain (the
    two never take the same rows), never queues another run and never completes the
    campaign: the chain's last run waits for it, then completes. A delivery error is
    raised after its rows are settled (unsent ones PENDING again, for the chain);
    pausing, cancelling or a critical reputation stop it before it sends."""
    now = timezone.now()
    campaign = campaign_to_send(campaign_id)
    if campaign.status != CampaignStatus.SENDING or reputation_stops(campaign):
        return {"campaign_id": campaign_id, "status": campaign.status, "stopped": True}
    counts = send_batch(campaign, now)
    totals = services.refresh_counters(campaign_id)
    return {"campaign_id": campaign_id, **counts, "pending": totals[RecipientStatus.PENDING]}
