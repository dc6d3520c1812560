"""Archiving projects past their end date (spec B §4 as settled by DECISIONS.md), run daily
by project-expiry-check (`jobs/handlers/projects.py`).

Open projects past their end date are ARCHIVED with an audit row and an analytics event;
the brand is notified in-app and emailed once (`archived_notice_sent_at`).

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
from yesgoddess.core.models import AuditEvent
from yesgoddess.licensing.expiry import long_date
from yesgoddess.notifications.fanout import claimed_batches, deliver
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import build_email

from .models import CLOSED_STATUSES, Project, ProjectStatus

ARCHIVE_BATCH = 500


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
        result.tally(counts, prefix="emails_")
        result.raise_error()
    return counts


def expire_projects(now: datetime | None = None) -> dict[str, int]:
    """Archive projects past their end date; tell each brand once."""
    now = now or timezone.now()
    return {"archived": archive_expired(now), **send_archive_notices(now)}
