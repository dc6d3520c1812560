"""Matching an ACTIVE project with creators (spec B §4 as settled by DECISIONS.md), run by
project-match-creators (`jobs/handlers/projects.py`), which
`yesgoddess.projects.services.change_status` enqueues when a project becomes ACTIVE.

Creators whose specialties fit the project's asset types (the mapping in
`yesgoddess.projects.services`) are matched once each (a `ProjectMatch` row), notified
in-app, and emailed when their PROJECT email frequency is IMMEDIATE (DAILY/WEEKLY get it in
their digest, OFF nothing).

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

from yesgoddess.analytics.models import system_event
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.progress import Progress, no_progress
from yesgoddess.creators.models import Creator
from yesgoddess.licensing.expiry import long_date
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.models import EmailFrequency, EmailStatus, Notification
from yesgoddess.notifications.services import build_email, email_frequencies

from .models import MatchEmail, Project, ProjectMatch, ProjectStatus
from .services import required_asset_types, specialties_for

log = logging.getLogger(__name__)


def budget_range(cents: int) -> str:
    """ "$12,500" (or "$12,500.50"); "Budget available" when no budget is set."""
    if cents <= 0:
        return "Budget available"
    whole, rest = divmod(cents, 100)
    return f"${whole:,}" if rest == 0 else f"${whole:,}.{rest:02d}"


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


def notify_matches(
    project: Project, asset_types: Sequence[str], now: datetime, *, progress: Progress = no_progress
) -> dict[str, int]:
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
        progress(min(processed, total), total, "matches")
        return sending

    for batch in claimed_batches(due, claim):
        messages = [
            build_email("project_match", row.creator.user.email, match_email_context(project, row, asset_types))
            for row in batch
        ]
        result = deliver(messages)
        settle_matches(batch, result.sent, result.refused, result.unsent, now)
        result.tally(counts, prefix="emails_")
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


def match_creators(project_id: int, now: datetime | None = None, *, progress: Progress = no_progress) -> dict[str, Any]:
    """Match one ACTIVE project's creators and notify each once; a project that cannot be
    matched (deleted, not ACTIVE, no known asset types) is skipped with the reason.
    Raises Project.DoesNotExist for an unknown id."""
    now = now or timezone.now()
    project = Project.objects.select_related("brand").filter(pk=project_id).first()
    if project is None:
        raise InvalidInput(f"Project {project_id} does not exist.")
    result: dict[str, Any] = {"project_id": project_id, "matched": 0, "notified": 0, "emails_sent": 0}
    reason = skip_reason(project)
    asset_types = required_asset_types(project)
    if reason is None and not asset_types:
        reason = "no asset types in the project's requirements"
    if reason is not None:
        log.info("project=%s not matched: %s", project_id, reason)
        return {**result, "skipped": reason}
    result["matched"] = insert_matches(project, specialties_for(asset_types), now)
    result.update(notify_matches(project, asset_types, now, progress=progress))
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
