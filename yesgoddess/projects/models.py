"""Projects (spec B §8.12) and the record of which creators were matched to one.

Status changes go through `yesgoddess.projects.services.transition_projects` only (it
validates the move against the state machine and writes an audit row); a user's change is
`change_status`, which uses it and starts project matching on ACTIVE. New non-null
columns carry a database default too.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ProjectStatus(models.TextChoices):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    ARCHIVED = "ARCHIVED"


# Statuses a project keeps after its end date (project-expiry-check leaves them alone).
CLOSED_STATUSES = (ProjectStatus.COMPLETED, ProjectStatus.CANCELLED, ProjectStatus.ARCHIVED)


class Project(models.Model):
    """A brand's project, to which assets can be uploaded.

    `requirements` is {assetTypes?: [image, video, audio, document], deliverables?,
    exclusivity?, usage?, territory?, duration?, ...}.
    """

    status = models.CharField(max_length=16, choices=ProjectStatus.choices, default=ProjectStatus.DRAFT)
    brand = models.ForeignKey("brands.Brand", on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    budget_cents = models.BigIntegerField(default=0, db_default=0)
    start_date = models.DateTimeField(null=True, blank=True)
    end_date = models.DateTimeField(null=True, blank=True)
    requirements = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # project-expiry-check: when the job archived the project, and when the brand was told.
    auto_archived_at = models.DateTimeField(null=True, blank=True)
    archived_notice_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "projects"
        indexes = [
            models.Index(fields=["brand", "created_at"], name="project_brand_created_idx"),
            models.Index(
                fields=["end_date"],
                name="project_open_end_idx",
                condition=Q(end_date__isnull=False, deleted_at__isnull=True)
                & ~Q(status__in=["COMPLETED", "CANCELLED", "ARCHIVED"]),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MatchEmail(models.TextChoices):
    """What happened to the email of one match (the in-app notification always goes)."""

    PENDING = "PENDING"  # to be sent
    SENDING = "SENDING"  # claimed by a run; left here only if that run died mid-send
    SENT = "SENT"
    REFUSED = "REFUSED"  # the mail server refused it
    DIGEST = "DIGEST"  # the creator gets PROJECT emails in a daily/weekly digest
    OFF = "OFF"  # the creator turned PROJECT emails off
    NO_ADDRESS = "NO_ADDRESS"


class ProjectMatch(models.Model):
    """A creator matched to a project: one row per (project, creator), so nobody is
    matched, notified or emailed twice."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="matches")
    creator = models.ForeignKey("creators.Creator", on_delete=models.CASCADE, related_name="project_matches")
    matched_specialties = models.JSONField(default=list, db_default=[], blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(null=True, blank=True)  # the in-app notification
    email_status = models.CharField(max_length=16, choices=MatchEmail.choices, null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "project_matches"
        constraints = [models.UniqueConstraint(fields=["project", "creator"], name="project_match_once")]

    def __str__(self) -> str:
        return f"project {self.project_id} -> creator {self.creator_id}"
