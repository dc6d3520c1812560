"""Project status changes and the creator matching rule (spec B §4, DECISIONS.md).

`change_status` is the one way a view or service moves a project: it validates the
move, writes an audit row, and when the project becomes ACTIVE enqueues
project-match-creators (after commit, deduplicated per project). The asset type ->
specialty mapping lives here; the matching workflow that applies it is
`yesgoddess.projects.matching`.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        if status not in ALLOWED_TRANSITIONS[current.status]:
            raise InvalidProjectTransition(f"A {current.status} project cannot become {status}.")
        if status == S.ACTIVE and current.end_date is not None and current.end_date <= timezone.now():
            raise InvalidProjectTransition(f"Project {project.pk} ended on {current.end_date:%Y-%m-%d}.")
        Project.objects.filter(pk=project.pk).update(status=status)
        AuditEvent.objects.create(
            action="project_status_changed",
            entity_type="project",
            entity_id=str(project.pk),
            actor=actor if getattr(actor, "pk", None) else None,
            before={"status": current.status},
            after={"status": status},
        )
        project.status = status
        if status == S.ACTIVE:
            return enqueue("project-match-creators", dedup_key=f"project-{project.pk}", project_id=project.pk)
    return None
