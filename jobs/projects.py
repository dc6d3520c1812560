"""Project jobs (spec B §4 as settled by DECISIONS.md).

- project-match-creators (on demand, enqueued by `yesgoddess.projects.services.change_status`
  when a project becomes ACTIVE): creators whose specialties fit the project's asset types
  are matched once each (a `ProjectMatch` row), notified in-app, and emailed when their
  PROJECT email frequency is IMMEDIATE (DAILY/WEEKLY get it in their digest, OFF nothing).
- project-expiry-check (daily): projects past their end date are ARCHIVED with an audit
  row and an analytics event; the brand is notified in-app and emailed once.

Emails go out through `yesgoddess.notifications.fanout`: markers are committed before a batch
is sent, so a retry after a crash sends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from yesgoddess.analytics.models import Event, system_event
from yesgoddess.core.models import AuditEvent
from yesgoddess.creators.models import Creator
from yesgoddess.licensing.expiry import long_date
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.models import EmailFrequency, EmailStatus, Notification
from yesgoddess.notifications.services import build_email, email_frequencies
from yesgoddess.projects.models import CLOSED_STATUSES, MatchEmail, Project, ProjectMatch, ProjectStatus
from yesgoddess.projects.services import required_asset_types, specialties_for

from .errors import JobInputError
from .runtime import set_progress
from .sweeps import locked_batches

log = logging.getLogger(__name__)

ARCHIVE_BATCH = 500


def budget_range(cents: int) -> str:
    """ "$12,500" (or "$12,500.50"); "Budget available" when no budget is set."""
    if cents <= 0:
        return "Budget available"
    whole, rest = divmod(cents, 100)
    return f"${whole:,}" if rest == 0 else f"${whole:,}.{rest:02d}"


# --- project-match-creators ------------------------------------------------------------

MATCH_SQL = """
INSERT INTO {matches} (project_id, creator_id, matched_specialties, created_at)
SELECT %(project)s, c.id,
       (SELECT jsonb_agg(s ORDER BY s) FROM jsonb_array_elements_text(c.specialties) s WHERE s = ANY(%(wanted)s)),
       %(now)s
FROM {creators} c JOIN {users} u ON u.id = c.user_id
WHERE c.verification_status = 'approved' AND c.deleted_at IS NULL
  AND jsonb_typeof(c.specialties) = 'array' AND c.specialties ?| %(wanted)s::text[]
  AND u.is_active AND u.deleted_at IS NULL AND c.user_id <> %(brand_user)s
ON CONFLICT (project_id, creator_id) DO NOTHING
"""


def insert_matches(project: Project, specialties: Sequence[str], now: datetime) -> int:
    """One match row per fitting creator not matched before (one statement, GIN index)."""
    sql = MATCH_SQL.format(
        matches=ProjectMatch._meta.db_table, creators=Creator._meta.db_table, users=get_user_model()._meta.db_table
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {"project": project.pk, "wanted": list(specialties), "now": now, "brand_user": project.brand.user_id},
        )
        return cursor.rowcount


def match_message(project: Project) -> str:
    return f"{project.brand.name} has a new project that matches your specialties: {project.name}"


def match_email_context(project: Project, match: ProjectMatch, asset_types: Sequence[str]) -> dict[str, Any]:
    user = match.creator.user
    return {
        "creator_name": user.get_full_name() or match.creator.display_name,
        "project_name": project.name,
        "brand_name": project.brand.name,
        "project_description": project.description or "",
        "budget_range": budget_range(project.budget_cents),
        "end_date": long_date(project.end_date) if project.end_date else None,
        "asset_types": list(asset_types),
        "matched_specialties": [s.replace("-", " ") for s in match.matched_specialties or []],
        "project_url": f"{settings.APP_URL}/projects/{project.pk}",
    }


def email_status_for(match: ProjectMatch, frequency: str) -> str:
    if frequency == EmailFrequency.OFF:
        return MatchEmail.OFF
    if frequency in (EmailFrequency.DAILY, EmailFrequency.WEEKLY):
        return MatchEmail.DIGEST
    if not match.creator.user.email:
        return MatchEmail.NO_ADDRESS
    return MatchEmail.PENDING


def notify_matches(project: Project, asset_types: Sequence[str], now: datetime) -> dict[str, int]:
    """In-app notification for every new match, then the email to those who get it now.

    The claim transaction creates the notifications and sets `notified_at` together, so
    each creator is notified in-app exactly once; the email follows the fan-out rules."""
    counts = {"notified": 0, "emails_sent": 0, "emails_refused": 0, "emails_unsent": 0, "emails_in_doubt": 0}
    for status in (MatchEmail.DIGEST, MatchEmail.OFF, MatchEmail.NO_ADDRESS):
        counts[f"email_{status.lower()}"] = 0
    due = (
        ProjectMatch.objects.filter(project=project)
        .filter(Q(notified_at__isnull=True) | Q(email_status=MatchEmail.PENDING))
        .select_related("creator__user")
    )
    total = due.count()
    processed = 0

    def claim(rows: list[ProjectMatch]) -> list[ProjectMatch]:
        nonlocal processed
        fresh = [row for row in rows if row.notified_at is None]
        frequencies = email_frequencies([row.creator.user_id for row in fresh], Notification.Type.PROJECT)
        Notification.objects.bulk_create(
            Notification(
                user_id=row.creator.user_id,
                # Immediate creators get the dedicated match email below; daily/weekly ones
                # get the match in their notification digest.
                email_status=(
                    EmailStatus.DIGEST
                    if frequencies[row.creator.user_id] in (EmailFrequency.DAILY, EmailFrequency.WEEKLY)
                    else EmailStatus.NONE
                ),
                type=Notification.Type.PROJECT,
                priority=Notification.Priority.MEDIUM,
                title="New Project Match",
                message=match_message(project),
                action_url=f"/projects/{project.pk}",
                metadata={"projectId": project.pk, "brandId": project.brand_id, "matchType": "specialty"},
            )
            for row in fresh
        )
        for row in fresh:
            row.notified_at = now
            row.email_status = email_status_for(row, frequencies[row.creator.user_id])
            if row.email_status != MatchEmail.PENDING:
                counts[f"email_{row.email_status.lower()}"] += 1
        counts["notified"] += len(fresh)
        sending = [row for row in rows if row.email_status == MatchEmail.PENDING]
        for row in sending:
            row.email_status = MatchEmail.SENDING
        ProjectMatch.objects.bulk_update(rows, ["notified_at", "email_status"])
        processed += len(rows)
        set_progress(min(processed, total), total, "matches")
        return sending

    for batch in claimed_batches(due, claim):
        messages = [
            build_email("project_match", row.creator.user.email, match_email_context(project, row, asset_types))
            for row in batch
        ]
        result = deliver(messages)
        settle_matches(batch, result.sent, result.refused, result.unsent, now)
        counts["emails_sent"] += len(result.sent)
        counts["emails_refused"] += len(result.refused)
        counts["emails_unsent"] += len(result.unsent)
        counts["emails_in_doubt"] += len(result.in_doubt)
        result.raise_error()
    return counts


def settle_matches(
    rows: Sequence[ProjectMatch], sent: Sequence[int], refused: Sequence[int], unsent: Sequence[int], now: datetime
) -> None:
    if sent:
        ProjectMatch.objects.filter(pk__in=[rows[i].pk for i in sent]).update(
            email_status=MatchEmail.SENT, emailed_at=now
        )
    if refused:
        ProjectMatch.objects.filter(pk__in=[rows[i].pk for i in refused]).update(email_status=MatchEmail.REFUSED)
    if unsent:  # never attempted: the next run (RQ's retry) sends them
        ProjectMatch.objects.filter(pk__in=[rows[i].pk for i in unsent]).update(email_status=MatchEmail.PENDING)


def skip_reason(project: Project) -> str | None:
    if project.deleted_at is not None:
        return "project is deleted"
    if project.brand.deleted_at is not None:
        return "brand is deleted"
    if project.status != ProjectStatus.ACTIVE:
        return f"project is {project.status}, not ACTIVE"
    return None


def match_creators(project_id: int, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    project = Project.objects.select_related("brand").filter(pk=project_id).first()
    if project is None:
        raise JobInputError(f"Project {project_id} does not exist.")
    result: dict[str, Any] = {"project_id": project_id, "matched": 0, "notified": 0, "emails_sent": 0}
    reason = skip_reason(project)
    asset_types = required_asset_types(project)
    if reason is None and not asset_types:
        reason = "no asset types in the project's requirements"
    if reason is not None:
        log.info("project=%s not matched: %s", project_id, reason)
        return {**result, "skipped": reason}
    result["matched"] = insert_matches(project, specialties_for(asset_types), now)
    result.update(notify_matches(project, asset_types, now))
    if result["matched"] or result["notified"]:
        system_event(
            "project.creators_matched",
            project_id=project.pk,
            brand_id=project.brand_id,
            props_json={
                "creatorsMatched": result["matched"],
                "notificationsSent": result["notified"],
                "emailsSent": result["emails_sent"],
                "requiredAssetTypes": asset_types,
            },
        ).save()
    return result


def match_project_creators(*, project_id: int) -> dict[str, Any]:
    """project-match-creators: match one ACTIVE project's creators, notify each once."""
    return match_creators(project_id)


# --- project-expiry-check --------------------------------------------------------------


def archive_expired(now: datetime) -> int:
    """Open projects whose end date has passed -> ARCHIVED, with an audit row, an event
    and (brand still live) an in-app notification, all in the batch's transaction."""
    due = Project.objects.filter(deleted_at__isnull=True, end_date__lt=now).exclude(status__in=CLOSED_STATUSES)
    archived = 0
    for batch in locked_batches(due.select_related("brand"), ARCHIVE_BATCH):
        Project.objects.filter(pk__in=[p.pk for p in batch]).update(status=ProjectStatus.ARCHIVED, auto_archived_at=now)
        AuditEvent.objects.bulk_create(
            AuditEvent(
                action="project_auto_archived",
                entity_type="project",
                entity_id=str(p.pk),
                before={"status": p.status},
                after={
                    "status": ProjectStatus.ARCHIVED,
                    "reason": "end date passed",
                    "endDate": p.end_date.isoformat(),
                },
                created_at=now,
            )
            for p in batch
        )
        Event.objects.bulk_create(
            system_event(
                "project.auto_archived",
                project_id=p.pk,
                brand_id=p.brand_id,
                occurred_at=now,
                props_json={"endDate": p.end_date.isoformat(), "previousStatus": p.status},
            )
            for p in batch
        )
        Notification.objects.bulk_create(
            Notification(
                user_id=p.brand.user_id,
                type=Notification.Type.PROJECT,
                priority=Notification.Priority.LOW,
                title="Project Archived",
                message=f'Your project "{p.name}" has been automatically archived after its end date.',
                action_url=f"/projects/{p.pk}",
                metadata={"projectId": p.pk, "previousStatus": p.status, "notificationType": "project_expired"},
            )
            for p in batch
            if p.brand.deleted_at is None
        )
        archived += len(batch)
    return archived


def archive_email_context(project: Project) -> dict[str, Any]:
    return {
        "brand_name": project.brand.name,
        "user_name": project.brand.user.get_full_name() or project.brand.name,
        "project_name": project.name,
        "end_date": long_date(project.end_date),
        "project_url": f"{settings.APP_URL}/projects/{project.pk}",
        "new_project_url": f"{settings.APP_URL}/projects/new",
    }


def send_archive_notices(now: datetime) -> dict[str, int]:
    """One email per auto-archived project to the brand's account (marker
    `archived_notice_sent_at`, committed before sending)."""
    counts = {"emails_sent": 0, "emails_refused": 0, "emails_unsent": 0, "emails_in_doubt": 0, "no_address": 0}
    due = Project.objects.filter(
        status=ProjectStatus.ARCHIVED,
        auto_archived_at__isnull=False,
        archived_notice_sent_at__isnull=True,
        brand__deleted_at__isnull=True,
    ).select_related("brand__user")

    def claim(rows: list[Project]) -> list[Project]:
        Project.objects.filter(pk__in=[p.pk for p in rows]).update(archived_notice_sent_at=now)
        with_address = [p for p in rows if p.brand.user.email and p.brand.user.is_active]
        counts["no_address"] += len(rows) - len(with_address)
        return with_address

    for batch in claimed_batches(due, claim):
        result = deliver([build_email("project_archived", p.brand.user.email, archive_email_context(p)) for p in batch])
        if result.unsent:  # never attempted: release the marker for the retry
            Project.objects.filter(pk__in=[batch[i].pk for i in result.unsent]).update(archived_notice_sent_at=None)
        counts["emails_sent"] += len(result.sent)
        counts["emails_refused"] += len(result.refused)
        counts["emails_unsent"] += len(result.unsent)
        counts["emails_in_doubt"] += len(result.in_doubt)
        result.raise_error()
    return counts


def expire_projects(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    return {"archived": archive_expired(now), **send_archive_notices(now)}


def check_project_expiry() -> dict[str, int]:
    """project-expiry-check: archive projects past their end date; tell each brand once."""
    return expire_projects()
