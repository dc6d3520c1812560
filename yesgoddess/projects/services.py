"""Project status changes and the creator matching rule (spec B §4, DECISIONS.md).

`transition_projects` is the one place a project's status changes: it checks the move
against `ALLOWED_TRANSITIONS`, updates with a conditional `UPDATE ... WHERE status =
<from>` (two runs racing move a project once) and writes an audit row per project. Jobs
call it directly (project-expiry-check, license-auto-expiry completing projects);
`change_status` is a user's move through it: it also refuses ACTIVE past the end date
and, when the project becomes ACTIVE, enqueues project-match-creators (after commit,
deduplicated per project). The asset type -> specialty mapping lives here; the matching
workflow that applies it is `yesgoddess.projects.matching`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from jobs.api import enqueue
from yesgoddess.core.models import AuditEvent

from .models import Project, ProjectStatus

S = ProjectStatus

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.ACTIVE, S.CANCELLED}),
    S.ACTIVE: frozenset({S.IN_PROGRESS, S.COMPLETED, S.CANCELLED, S.ARCHIVED}),
    S.IN_PROGRESS: frozenset({S.ACTIVE, S.COMPLETED, S.CANCELLED, S.ARCHIVED}),
    S.COMPLETED: frozenset({S.ARCHIVED}),
    S.CANCELLED: frozenset({S.ARCHIVED}),
    S.ARCHIVED: frozenset(),
}

# Project asset types -> creator specialties (spec B §4.1): a creator matches a project
# when at least one of their specialties is listed for one of its asset types.
ASSET_TYPE_SPECIALTIES: dict[str, tuple[str, ...]] = {
    "image": ("photography", "illustration", "graphic-design", "3d-design", "art-direction"),
    "video": ("videography", "motion-graphics", "animation"),
    "audio": ("music-composition", "sound-design"),
    "document": ("copywriting", "brand-strategy"),
}
# The other way: each specialty belongs to exactly one asset type.
SPECIALTY_ASSET_TYPE: dict[str, str] = {
    specialty: asset_type for asset_type, specialties in ASSET_TYPE_SPECIALTIES.items() for specialty in specialties
}


class InvalidProjectTransition(ValueError):
    """A status change the project cannot make."""


class UnknownProjectStatus(InvalidProjectTransition):
    """A status that does not exist."""


def check_transition(from_status: str, to_status: str) -> None:
    if to_status not in ALLOWED_TRANSITIONS.get(from_status, frozenset()):
        raise InvalidProjectTransition(f"A {from_status} project cannot become {to_status}.")


def transition_projects(
    project_ids: Iterable[int],
    from_status: str,
    to_status: str,
    *,
    reason: str,
    now: datetime | None = None,
    actor: Any = None,
    action: str = "project_status_changed",
    details: Mapping[int, dict[str, Any]] | None = None,
    **fields: Any,
) -> list[int]:
    """Move the live projects still in `from_status` to `to_status`; return the ids moved.

    Raises InvalidProjectTransition when the state machine forbids the move. `fields` are
    set in the same UPDATE (`auto_archived_at`, ...); each project moved gets an audit row
    (`action`, before/after status, `reason`, and its `details`), in the caller's
    transaction. Queries are constant in the number of projects.
    """
    check_transition(from_status, to_status)
    ids = list(dict.fromkeys(project_ids))
    if not ids:
        return []
    now = now or timezone.now()
    with transaction.atomic():
        queryset = Project.objects.filter(pk__in=ids, status=from_status, deleted_at__isnull=True)
        moved = list(queryset.select_for_update().order_by("pk").values_list("pk", flat=True))
        if not moved:
            return []
        Project.objects.filter(pk__in=moved, status=from_status).update(status=to_status, **fields)
        AuditEvent.objects.bulk_create(
            AuditEvent(
                action=action,
                entity_type="project",
                entity_id=str(pk),
                actor=actor if getattr(actor, "pk", None) else None,
                before={"status": from_status},
                after={"status": to_status, "reason": reason, **(details or {}).get(pk, {})},
                created_at=now,
            )
            for pk in moved
        )
    return moved


def required_asset_types(project: Project) -> list[str]:
    """The known asset types of `requirements.assetTypes`, lower-cased, in order, unique."""
    requirements = project.requirements if isinstance(project.requirements, dict) else {}
    raw = requirements.get("assetTypes")
    if not isinstance(raw, list):
        return []
    types = (str(value).strip().lower() for value in raw if isinstance(value, str))
    return [t for t in dict.fromkeys(types) if t in ASSET_TYPE_SPECIALTIES]


def specialties_for(asset_types: Iterable[str]) -> list[str]:
    return [s for asset_type in asset_types for s in ASSET_TYPE_SPECIALTIES.get(asset_type, ())]


def asset_types_for(specialties: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(SPECIALTY_ASSET_TYPE[s] for s in specialties if s in SPECIALTY_ASSET_TYPE))


def project_json(project: Project, **extra: Any) -> dict[str, Any]:
    return {
        "id": project.pk,
        "brand_id": project.brand_id,
        "name": project.name,
        "status": project.status,
        "end_date": project.end_date.isoformat() if project.end_date else None,
        **extra,
    }


def change_status(project: Project, status: str, actor: Any = None) -> str | None:
    """Move `project` to `status` (validated, audited). Returns the id of the matching
    job when the project became ACTIVE, else None. The instance is updated in place."""
    if status not in S.values:
        raise UnknownProjectStatus(f"Unknown project status {status!r}; use one of {', '.join(S.values)}.")
    with transaction.atomic():
        current = Project.objects.select_for_update().get(pk=project.pk)
        if current.deleted_at is not None:
            raise InvalidProjectTransition(f"Project {project.pk} is deleted.")
        if current.status == status:
            project.status = status
            return None
        check_transition(current.status, status)
        if status == S.ACTIVE and current.end_date is not None and current.end_date <= timezone.now():
            raise InvalidProjectTransition(f"Project {project.pk} ended on {current.end_date:%Y-%m-%d}.")
        transition_projects([project.pk], current.status, status, reason="status change requested", actor=actor)
        project.status = status
        if status == S.ACTIVE:
            return enqueue("project-match-creators", dedup_key=f"project-{project.pk}", project_id=project.pk)
    return None
