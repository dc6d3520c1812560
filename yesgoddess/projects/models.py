from __future__ import annotations

from django.db import models
from django.utils import timezone


class ProjectStatus(models.TextChoices):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    ARCHIVED = "ARCHIVED"


class Project(models.Model):
    """A brand's project, to which assets can be uploaded."""

    status = models.CharField(max_length=16, choices=ProjectStatus.choices, default=ProjectStatus.DRAFT)
    brand = models.ForeignKey("brands.Brand", on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "projects"

    def __str__(self) -> str:
        return self.name
