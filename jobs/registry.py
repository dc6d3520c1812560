"""The one table of jobs: stable name -> function and how it runs.

Names are the seed's job names and never change (operators, cron entries and queued
jobs refer to them). A job function lives in the module of its domain, takes keyword
arguments that are JSON primitives, and returns a dict of counts (or None).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.utils.module_loading import import_string
from rq import Retry

QUEUES = ("critical", "default", "media", "scheduled", "bulk")
# Names `enqueue()` takes for itself; a job may not use them as argument names.
RESERVED_ARGUMENTS = frozenset({"dedup_key", "depends_on", "delay"})


class UnknownJobError(LookupError):
    """A job name that is not in the registry."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown job {name!r}. Registered jobs: {', '.join(sorted(JOBS))}.")
        self.name = name


@dataclass(frozen=True)
class JobSpec:
    name: str
    path: str  # dotted path of the job function
    queue: str
    description: str
    timeout: int = 600  # seconds a run may take before RQ kills it
    retry_intervals: tuple[int, ...] = ()  # one entry per retry: seconds to wait before it
    result_ttl: int | None = None  # None: settings.JOB_DEFAULT_RESULT_TTL
    failure_ttl: int | None = None  # None: settings.JOB_DEFAULT_FAILURE_TTL
    ttl: int | None = None  # how long it may wait in the queue; None: forever
    on_failure: str | None = None  # dotted path: hook(kwargs, error, job_id), once, on the final failure

    def __post_init__(self) -> None:
        if self.queue not in QUEUES:
            raise ValueError(f"Job {self.name!r}: unknown queue {self.queue!r}.")

    @cached_property
    def function(self) -> Callable[..., object]:
        return import_string(self.path)

    @cached_property
    def failure_hook(self) -> Callable[..., object] | None:
        return import_string(self.on_failure) if self.on_failure else None

    @property
    def retry(self) -> Retry | None:
        if not self.retry_intervals:
            return None
        return Retry(max=len(self.retry_intervals), interval=list(self.retry_intervals))

    def required_arguments(self) -> list[str]:
        params = inspect.signature(self.function).parameters.values()
        return [p.name for p in params if p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY]


def _table(*specs: JobSpec) -> dict[str, JobSpec]:
    table: dict[str, JobSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"Job {spec.name!r} is registered twice.")
        table[spec.name] = spec
    return table


HOUR = 3600
DAY = 24 * HOUR

JOBS: dict[str, JobSpec] = _table(
    # --- system ------------------------------------------------------------------
    JobSpec(
        name="idempotency-cleanup",
        path="jobs.handlers.system.cleanup_idempotency_keys",
        queue="scheduled",
        description="Delete expired Idempotency-Key records.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="notification-cleanup",
        path="jobs.handlers.system.cleanup_notifications",
        queue="scheduled",
        description="Delete read notifications 30 days after reading (SYSTEM: 7 days); unread are kept.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    # --- accounts and security ---------------------------------------------------
    JobSpec(
        name="token-cleanup",
        path="jobs.handlers.accounts.cleanup_tokens",
        queue="scheduled",
        description="Delete expired verification/reset tokens and reset tokens used over 7 days ago.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
    JobSpec(
        name="session-cleanup",
        path="jobs.handlers.accounts.cleanup_sessions",
        queue="scheduled",
        description="Delete expired sessions in short chunks.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
    JobSpec(
        name="account-deletion",
        path="jobs.handlers.accounts.delete_accounts",
        queue="scheduled",
        description="Erase accounts deleted over 30 days ago, delete them (or keep anonymised); purge old logins.",
        timeout=3600,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="failed-login-monitor",
        path="jobs.handlers.accounts.monitor_failed_logins",
        queue="scheduled",
        description="Alert on >10 failures per account in 15 min, lock at 15, alert on credential stuffing per IP.",
        timeout=300,
        retry_intervals=(30,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="password-security-cleanup",
        path="jobs.handlers.accounts.cleanup_password_security",
        queue="scheduled",
        description="Lift expired lockouts and prune remember-me tokens (expired, idle 7 days, over 5 per user).",
        timeout=600,
        retry_intervals=(30,),
        result_ttl=DAY,
    ),
    # --- assets ------------------------------------------------------------------
    JobSpec(
        name="asset-virus-scan",
        path="jobs.handlers.assets.scan_asset",
        queue="critical",
        description="Stream an upload through clamd; CLEAN starts processing, INFECTED quarantines and rejects.",
        timeout=360,
        # An outage of ours must never cost a user an upload: back off from 10 s to hourly,
        # about 24 hours in all (23.6 h) before scan ERROR; then asset-virus-scan.sweep
        # rescans as soon as clamd answers again.
        retry_intervals=(10, 30, 60, 120, 300, 600, 900, 1800, 1800, *(HOUR,) * 22),
        result_ttl=7 * DAY,
        on_failure="jobs.handlers.assets.record_scan_failure",
    ),
    JobSpec(
        name="asset-virus-scan.sweep",
        path="jobs.handlers.assets.rescan_failed_scans",
        queue="scheduled",
        description="Once clamd answers, rescan every asset whose scan failed on our side (retryable scan ERROR).",
        timeout=600,
        retry_intervals=(60,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="asset-thumbnail-generation",
        path="jobs.handlers.assets.generate_thumbnails",
        queue="media",
        description="Small/medium/large JPEG thumbnails (image, video frame, PDF page, waveform or type icon).",
        # Two tool calls of MEDIA_TOOL_TIMEOUT (120 s) each fit; a busy machine gets minutes
        # to recover before the asset shows a retryable error (never a rejection).
        timeout=300,
        retry_intervals=(30, 120, 600),
        on_failure="jobs.handlers.assets.record_thumbnail_failure",
    ),
    JobSpec(
        name="asset-metadata-extraction",
        path="jobs.handlers.assets.extract_asset_metadata",
        queue="media",
        description="Technical metadata (EXIF, ffprobe, PDF info, Office properties) under metadata.extracted.",
        timeout=300,
        retry_intervals=(30, 120, 600),
        on_failure="jobs.handlers.assets.record_metadata_failure",
    ),
    JobSpec(
        name="asset-preview-generation",
        path="jobs.handlers.asset_derivatives.generate_preview",
        queue="media",
        description="Preview clip: video 10 s H.264 from 10 % of the duration, audio 30 s MP3 128 kbps.",
        timeout=600,
        retry_intervals=(10,),
        on_failure="jobs.handlers.asset_derivatives.record_preview_failure",
    ),
    JobSpec(
        name="asset-format-conversion",
        path="jobs.handlers.asset_derivatives.convert_formats",
        queue="media",
        description="Web variants: WebP/AVIF/responsive widths, 720p/480p H.264, MP3 320/192/128 and AAC.",
        timeout=1800,
        retry_intervals=(30,),
        on_failure="jobs.handlers.asset_derivatives.record_variants_failure",
    ),
    JobSpec(
        name="asset-watermarking",
        path="jobs.handlers.asset_derivatives.watermark_asset",
        queue="media",
        description="Watermarked copy (text/logo, position, opacity; forensic id on request).",
        timeout=600,
        retry_intervals=(10,),
        on_failure="jobs.handlers.asset_derivatives.record_watermark_failure",
    ),
    JobSpec(
        name="asset-virus-scan-finalize",
        path="jobs.handlers.assets.finish_processing",
        queue="media",
        description="Move a clean asset to REVIEW once its thumbnails and metadata are done.",
        timeout=60,
        retry_intervals=(5, 30),
        on_failure="jobs.handlers.assets.record_finalize_failure",
    ),
    JobSpec(
        name="asset-cleanup",
        path="jobs.handlers.asset_housekeeping.cleanup_deleted_assets",
        queue="scheduled",
        description="Hard-delete assets soft-deleted over 30 days ago, with every stored file; keep referenced ones.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="upload-cleanup",
        path="jobs.handlers.asset_housekeeping.cleanup_uploads",
        queue="scheduled",
        description="Purge abandoned (24 h), failed (7 days) and infected (30 days) uploads.",
        timeout=1800,
        retry_intervals=(30,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="storage-metrics-calculation",
        path="jobs.handlers.asset_housekeeping.calculate_storage_metrics",
        queue="scheduled",
        description="Daily storage snapshot per platform, user, project and brand (one row per day and entity).",
        timeout=1800,
        retry_intervals=(60, 120),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="ownership-verification",
        path="jobs.handlers.asset_housekeeping.verify_ownership",
        queue="scheduled",
        description="Find assets whose active ownership shares do not sum to 10,000 bps; tell admins once each.",
        timeout=1800,
        retry_intervals=(60, 60, 60),
        result_ttl=7 * DAY,
    ),
    # --- licenses (spec B §5; one owner per transition, DECISIONS.md) -------------
    JobSpec(
        name="license-expiry-monitor",
        path="jobs.handlers.licenses.send_expiry_notices",
        queue="scheduled",
        description="90/60/30-day expiry notices (with the renewal offer), each once; ACTIVE -> EXPIRING_SOON at 30.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="license-auto-expiry",
        path="jobs.handlers.licenses.expire_licenses",
        queue="scheduled",
        description="Past end date -> grace period (one email); grace over -> EXPIRED with notices once.",
        timeout=600,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-management",
        path="jobs.handlers.licenses.manage_licenses",
        queue="scheduled",
        description="Cancel drafts abandoned for 90 days; auto-renew licenses 30-60 days from their end.",
        timeout=1800,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="license-renewal-workflow",
        path="jobs.handlers.licenses.run_renewal_workflow",
        queue="scheduled",
        description="Renewal offers at 90 days, the 7-day final notice, and the daily renewal snapshot.",
        timeout=3600,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="license-renewal-workflow.confirmation",
        path="jobs.handlers.licenses.send_renewal_confirmation",
        queue="default",
        description="Email the brand the confirmation of one accepted renewal (once).",
        timeout=120,
        retry_intervals=(30, 300),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-usage-tracking.aggregate",
        path="jobs.handlers.license_usage.aggregate_usage",
        queue="scheduled",
        description="Usage events of yesterday and today -> daily aggregates (one SQL statement per day).",
        timeout=1200,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-usage-tracking.thresholds",
        path="jobs.handlers.license_usage.check_usage_thresholds",
        queue="scheduled",
        description="Usage warnings at 50/75/90/100 % once per period; overage rows above limit + grace.",
        timeout=1200,
        retry_intervals=(60,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-usage-tracking.forecasts",
        path="jobs.handlers.license_usage.generate_usage_forecasts",
        queue="scheduled",
        description="Linear usage forecast per license and threshold (one row per day).",
        timeout=1800,
        retry_intervals=(300,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-usage-tracking.breach-alerts",
        path="jobs.handlers.license_usage.send_forecast_breach_alerts",
        queue="scheduled",
        description="Tell brands whose usage is forecast to exceed a limit within 7 days (once per forecast).",
        timeout=600,
        retry_intervals=(300,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="license-usage-tracking.cleanup",
        path="jobs.handlers.license_usage.purge_usage_events",
        queue="scheduled",
        description="Delete raw usage events older than USAGE_EVENT_RETENTION_DAYS (aggregates are kept).",
        timeout=3600,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="license-performance-metrics",
        path="jobs.handlers.licenses.calculate_performance_metrics",
        queue="scheduled",
        description="ROI, utilisation, conflicts, approval time: per license and daily/weekly/monthly snapshots.",
        timeout=3600,
        retry_intervals=(30, 60, 120),
        result_ttl=7 * DAY,
    ),
    # --- royalties (spec C §2.1, §2.2) --------------------------------------------
    JobSpec(
        name="royalty-calculation",
        path="jobs.handlers.royalties.calculate_royalties",
        queue="default",
        description="Calculate a royalty run: prorated fees + usage share, split by ownership, carry-over, thresholds.",
        timeout=1800,
        retry_intervals=(60, 120),
        result_ttl=30 * DAY,
        on_failure="jobs.handlers.royalties.record_calculation_failure",
    ),
    JobSpec(
        name="statement-notification",
        path="jobs.handlers.royalties.notify_statements",
        queue="default",
        description="Email and notify in-app each statement of a run, once each.",
        timeout=1800,
        retry_intervals=(30, 60),
        result_ttl=7 * DAY,
    ),
    # --- notifications (spec C §2.3, §2.4; issue 11: batched delivery) -------------
    JobSpec(
        name="notification-delivery",
        path="jobs.handlers.notifications.deliver_notifications",
        queue="critical",
        description="Flush pending immediate notification emails (re-queues while some remain); or one by id.",
        timeout=600,
        retry_intervals=(5, 30, 120),
        result_ttl=HOUR,
    ),
    JobSpec(
        name="notification-delivery.sweep",
        path="jobs.handlers.notifications.sweep_notification_deliveries",
        queue="scheduled",
        description="Queue a notification-delivery flush when pending emails were left without one.",
        timeout=60,
        result_ttl=HOUR,
    ),
    JobSpec(
        name="notification-digest",
        path="jobs.handlers.notifications.send_notification_digests",
        queue="scheduled",
        description="Prepare the period's DAILY/WEEKLY digests; one batch job per NOTIFICATION_DIGEST_BATCH users.",
        timeout=1800,
        retry_intervals=(60,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="notification-digest.batch",
        path="jobs.handlers.notifications.send_notification_digest_batch",
        queue="scheduled",
        description="Send one batch of prepared notification digests, each user at most once per period.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
    # --- brands, creators, projects (spec B §2-§4, DECISIONS.md) ------------------
    JobSpec(
        name="brand-verification-reminder",
        path="jobs.handlers.brands.remind_brand_verifications",
        queue="scheduled",
        description="One daily summary to the admins of brands pending verification over 24 h (50 listed).",
        timeout=300,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="brand-inactivity-check",
        path="jobs.handlers.brands.check_brand_inactivity",
        queue="scheduled",
        description="Re-engagement email to verified brands with no project/license in 90 days (once per 90 days).",
        timeout=1800,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="brand-data-cleanup",
        path="jobs.handlers.brands.cleanup_brand_data",
        queue="scheduled",
        description="Hard-delete brands soft-deleted over 90 days ago with their files; anonymise referenced ones.",
        timeout=3600,
        retry_intervals=(300,),
        result_ttl=30 * DAY,
    ),
    JobSpec(
        name="creator-onboarding-reminder",
        path="jobs.handlers.creators.remind_creator_onboarding",
        queue="scheduled",
        description="Remind approved creators to finish payout onboarding after 7 days (weekly, at most 4).",
        timeout=1800,
        retry_intervals=(300,),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="creator-monthly-report",
        path="jobs.handlers.creators.send_monthly_reports",
        queue="scheduled",
        description="Previous month's earnings, licenses and profile views to every approved creator, once each.",
        timeout=3600,
        retry_intervals=(300,),
        result_ttl=30 * DAY,
    ),
    JobSpec(
        name="project-match-creators",
        path="jobs.handlers.projects.match_project_creators",
        queue="default",
        description="Match an ACTIVE project's asset types to creator specialties; notify each creator once.",
        timeout=600,
        retry_intervals=(30, 60, 120),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="project-expiry-check",
        path="jobs.handlers.projects.check_project_expiry",
        queue="scheduled",
        description="Archive projects past their end date (audit, event); tell the brand in-app and by email once.",
        timeout=600,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    # --- email campaigns and email digests (spec C §2.10, §2.11; DECISIONS.md) ------
    JobSpec(
        name="email-campaign",
        path="jobs.handlers.campaigns.send_campaign_batch",
        queue="bulk",
        description="Send one batch of a campaign (once per recipient), then queue the next at messages_per_hour.",
        timeout=1800,
        retry_intervals=(60, 300, 900),
        result_ttl=DAY,
        on_failure="jobs.handlers.campaigns.record_campaign_failure",
    ),
    JobSpec(
        name="email-campaign.helper",
        path="jobs.handlers.campaigns.send_campaign_helper_batch",
        queue="bulk",
        description="Send one more batch of a running campaign alongside its email-campaign chain "
        "(EMAIL_CAMPAIGN_PARALLEL_BATCHES); no retries: the chain sends whatever it leaves.",
        timeout=1800,
        result_ttl=DAY,
    ),
    JobSpec(
        name="email-digest",
        path="jobs.handlers.email.send_email_digests",
        queue="scheduled",
        description="One digest per user of the bulk emails they take daily/weekly, since their last digest, once.",
        timeout=1800,
        retry_intervals=(60, 300),
        result_ttl=7 * DAY,
    ),
    # --- email events, reputation, message digests (spec C §2.12, §2.13; DECISIONS.md) --
    JobSpec(
        name="reputation-monitoring",
        path="jobs.handlers.email.monitor_email_reputation",
        queue="scheduled",
        description="30-day bounce, complaint, delivery rates and score per domain; alert admins, pause campaigns.",
        timeout=900,
        retry_intervals=(60, 120),
        result_ttl=30 * DAY,
    ),
    JobSpec(
        name="message-digest",
        path="jobs.handlers.email.send_message_digests",
        queue="scheduled",
        description="Unread messages since the last digest, by thread, to users who chose DAILY/WEEKLY; once a period.",
        timeout=1800,
        retry_intervals=(60,),
        result_ttl=7 * DAY,
    ),
    # --- search and blog (spec C §2.8, §2.14; DECISIONS.md; issue 11 batching) ---------
    JobSpec(
        name="search-index-update",
        path="jobs.handlers.search.flush_search_updates",
        queue="default",
        description="Index the next batch of saved searchable objects (an UPDATE per type); re-queue while any remain.",
        timeout=120,
        retry_intervals=(5, 30, 120),
        result_ttl=HOUR,
        failure_ttl=7 * DAY,
        on_failure="jobs.handlers.search.flush_failed",
    ),
    JobSpec(
        name="search-index-update.item",
        path="jobs.handlers.search.update_search_item",
        queue="default",
        description="Reindex one object now (object_type, object_id): for operators.",
        timeout=60,
        retry_intervals=(5, 30),
        result_ttl=HOUR,
    ),
    JobSpec(
        name="search-index-update.rebuild",
        path="jobs.handlers.search.rebuild_search_index",
        # A cron job, so `scheduled` (every cron entry runs there: tests/test_schedule_jobs.py);
        # it is short (~20 s per 200,000 assets) and commits per batch.
        queue="scheduled",
        description="Recompute every search vector (or one object_type) in primary-key batches of ~250 ms.",
        timeout=4 * HOUR,
        retry_intervals=(300,),
        result_ttl=30 * DAY,
    ),
    JobSpec(
        name="scheduled-blog-publishing",
        path="jobs.handlers.blog.publish_scheduled_posts",
        queue="scheduled",
        description="Publish due scheduled posts exactly once (conditional claim), notify the author, reindex.",
        timeout=300,
        result_ttl=600,
        failure_ttl=7 * DAY,
    ),
    # --- analytics and metric roll-ups (spec C §2.5-§2.7; DECISIONS.md; issue 11) -----
    JobSpec(
        name="analytics-jobs.enrich-events",
        path="jobs.handlers.analytics.enrich_pending_events",
        queue="default",
        description="Enrich the next batch of posted events (UA, session, snapshots) in a few queries; re-queue.",
        timeout=300,
        retry_intervals=(5, 30),
        result_ttl=600,
    ),
    JobSpec(
        name="analytics-jobs.enrich-sweep",
        path="jobs.handlers.analytics.sweep_pending_events",
        queue="scheduled",
        description="Queue an enrichment flush if posted events are pending and none is queued (safety net).",
        timeout=60,
        result_ttl=HOUR,
    ),
    JobSpec(
        name="analytics-jobs.enrich-event",
        path="jobs.handlers.analytics.enrich_event",
        queue="default",
        description="Enrich one event by id (event_id), whatever its state: for operators.",
        timeout=60,
        retry_intervals=(5, 10),
        result_ttl=DAY,
    ),
    JobSpec(
        name="analytics-jobs.daily-metrics",
        path="jobs.handlers.analytics.aggregate_daily_metrics",
        queue="scheduled",
        description="Yesterday's (or date's) events -> daily metrics per asset/project/license, one SQL upsert.",
        timeout=1800,
        retry_intervals=(60, 120),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="analytics-jobs.post-daily-metrics",
        path="jobs.handlers.analytics.aggregate_post_daily_metrics",
        queue="scheduled",
        description="Yesterday's (or date's) post events -> post daily metrics, one SQL upsert.",
        timeout=1800,
        retry_intervals=(10, 20),
        result_ttl=7 * DAY,
    ),
    JobSpec(
        name="metrics-aggregation.weekly",
        path="jobs.handlers.analytics.rollup_weekly_metrics",
        queue="scheduled",
        description="Previous ISO week (or week_start's) -> weekly metrics: sums, distinct visitors, growth.",
        timeout=3600,
        retry_intervals=(120, 240),
        result_ttl=30 * DAY,
    ),
    JobSpec(
        name="metrics-aggregation.monthly",
        path="jobs.handlers.analytics.rollup_monthly_metrics",
        queue="scheduled",
        description="Previous month (or month, YYYY-MM) -> monthly metrics with the weekly breakdown and growth.",
        timeout=3600,
        retry_intervals=(180, 360),
        result_ttl=30 * DAY,
    ),
    # --- framework self-checks (operators: `run_job ping`) -----------------------------
    JobSpec(
        name="ping",
        path="jobs.handlers.system.ping",
        queue="default",
        description="Do nothing and answer; proves a worker is listening on the queue.",
        timeout=30,
        result_ttl=HOUR,
    ),
    # --- alerts to the admins (jobs/alerts.py, yesgoddess/notifications/job_alerts.py) ------
    JobSpec(
        name="cron-watchdog",
        path="jobs.handlers.system.check_cron_deadlines",
        queue="scheduled",
        description="Dead-man's switch: alert once when a cron entry misses its period plus a grace, till it recovers.",
        timeout=120,
        retry_intervals=(30,),
        result_ttl=DAY,
    ),
    JobSpec(
        name="job-failure-alert.summary",
        path="jobs.handlers.system.send_job_failure_summary",
        queue="default",
        description="One job's final failures of the last hour, counted, in one message to the admins.",
        timeout=120,
        retry_intervals=(60, 300),
        result_ttl=DAY,
    ),
)


def _with_extra_modules(table: dict[str, JobSpec]) -> dict[str, JobSpec]:
    """Merge the JOBS tuples of settings.EXTRA_JOB_MODULES (the test suite's own jobs)."""
    from django.conf import settings
    from django.utils.module_loading import import_module

    extra = [spec for module in settings.EXTRA_JOB_MODULES for spec in import_module(module).JOBS]
    return _table(*table.values(), *extra) if extra else table


JOBS = _with_extra_modules(JOBS)


def get_spec(name: str) -> JobSpec:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJobError(name) from None


# --- groups: seed names whose work is split over several jobs -----------------------------


@dataclass(frozen=True)
class JobGroup:
    """A seed job name (one BullMQ file) whose work is split over registered jobs, its
    `parts`. `run_job NAME` runs the parts in order, each with the arguments it takes."""

    name: str
    description: str
    parts: tuple[str, ...]

    def arguments_for(self, kwargs: dict[str, object]) -> list[tuple[JobSpec, dict[str, object]]]:
        """Each part with the subset of `kwargs` its function takes; an argument no part
        takes is an error (TypeError), like an unexpected argument of a single job."""
        specs = [get_spec(part) for part in self.parts]
        taken = [set(inspect.signature(spec.function).parameters) for spec in specs]
        unknown = sorted(set(kwargs) - set().union(*taken))
        if unknown:
            raise TypeError(f"Job group {self.name!r}: no part takes {', '.join(map(repr, unknown))}.")
        return [
            (spec, {key: value for key, value in kwargs.items() if key in names})
            for spec, names in zip(specs, taken, strict=True)
        ]


_ROLLUPS = ("metrics-aggregation.weekly", "metrics-aggregation.monthly")


def _groups(*groups: JobGroup) -> dict[str, JobGroup]:
    table: dict[str, JobGroup] = {}
    for group in groups:
        if group.name in JOBS or group.name in table:
            raise ValueError(f"Job group {group.name!r} clashes with a job or another group.")
        missing = [part for part in group.parts if part not in JOBS]
        if missing or not group.parts:
            raise ValueError(f"Job group {group.name!r}: unregistered parts {missing}.")
        table[group.name] = group
    return table


GROUPS: dict[str, JobGroup] = _groups(
    JobGroup(
        "analytics-jobs",
        "Enrich the next batch of pending events, then yesterday's (or date's) daily and post daily metrics.",
        ("analytics-jobs.enrich-events", "analytics-jobs.daily-metrics", "analytics-jobs.post-daily-metrics"),
    ),
    JobGroup(
        "metrics-aggregation",
        "The previous ISO week's (or week_start's), then the previous month's (or month's) metric roll-ups.",
        _ROLLUPS,
    ),
    JobGroup(
        "weekly-monthly-metrics-aggregation",
        "The seed's other name for metrics-aggregation: the same roll-ups (merged, DECISIONS.md).",
        _ROLLUPS,
    ),
    JobGroup(
        "license-usage-tracking",
        "Usage aggregation, thresholds, forecasts and breach alerts, then the raw usage event clean-up.",
        (
            "license-usage-tracking.aggregate",
            "license-usage-tracking.thresholds",
            "license-usage-tracking.forecasts",
            "license-usage-tracking.breach-alerts",
            "license-usage-tracking.cleanup",
        ),
    ),
)


def resolve(name: str) -> list[JobSpec]:
    """The jobs an operator's name stands for: a registered job, or a group's parts in order."""
    if name in GROUPS:
        return [get_spec(part) for part in GROUPS[name].parts]
    return [get_spec(name)]
