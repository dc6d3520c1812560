"""Archiving projects past their end date (spec B §4 as settled by DECISIONS.md), run daily
by project-expiry-check (`jobs/handlers/projects.py`).

Open projects past their end date are ARCHIVED with an audit row and an analytics event;
the brand is notified in-app and emailed once (`archived_notice_sent_at`). Every move goes
through the project state machine (`services.transition_projects`): ACTIVE and
IN_PROGRESS projects are archived; a DRAFT, which may not be archived directly, is
CANCELLED (it never started, and can no longer: ACTIVE is refused past the end date)
and then ARCHIVED, each move audited.

Emails go out through `yesgoddess.notifications.fanout`: markers are committed before a batch
is sent, so a retry after a crash sends nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from yesgoddess.analytics.models import Event, system_event
from yesgoddess.core.batches import locked_batches
from yesgoddess.licensing.expiry import long_date
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email

from .models import CLOSED_STATUSES, Project, ProjectStatus
from .services import transition_projects

ARCHIVE_BATCH = 500
S = ProjectStatus


def archive_batch(batch: list[Project], now: datetime) -> list[Project]:
    """Archive a locked batch through the state machine; return the projects archived.
    A DRAFT is cancelled first (DRAFT -> ARCHIVED is not a move the machine allows)."""
    details = {p.pk: {"endDate": p.end_date.isoformat(), "previousStatus": p.status} for p in batch}

    def ids(status: str) -> list[int]:
        return [p.pk for p in batch if p.status == status]

    cancelled = transition_projects(
        ids(S.DRAFT),
        S.DRAFT,
        S.CANCELLED,
        reason="end date passed before the project was activated",
        now=now,
        action="project_auto_cancelled",
        details=details,
    )
    archived: set[int] = set()
    for status, pks in ((S.ACTIVE, ids(S.ACTIVE)), (S.IN_PROGRESS, ids(S.IN_PROGRESS)), (S.CANCELLED, cancelled)):
        archived.update(
            transition_projects(
                pks,
                status,
                S.ARCHIVED,
                reason="end date passed",
                now=now,
                action="project_auto_archived",
                details=details,
                auto_archived_at=now,
            )
        )
    return [p for p in batch if p.pk in archived]


def archive_expired(now: datetime) -> int:
    """Open projects whose end date has passed -> ARCHIVED (`archive_batch`), with an
    event and (brand still live) an in-app notification, all in the batch's transaction."""
    due = Project.objects.filter(deleted_at__isnull=True, end_date__lt=now).exclude(status__in=CLOSED_STATUSES)
    archived = 0
    for locked in locked_batches(due.select_related("brand"), ARCHIVE_BATCH):
        batch = archive_batch(locked, now)
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
        result.tally(counts, prefix="emails_")
        result.raise_error()
    return counts


def expire_projects(now: datetime | None = None) -> dict[str, int]:
    """Archive projects past their end date; tell each brand once."""
    now = now or timezone.now()
    return {"archived": archive_expired(now), **send_archive_notices(now)}
