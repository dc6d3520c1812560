from __future__ import annotations

from django.db import models
from django.utils import timezone


class Project(models.Model):
    """A brand's project, to which assets can be uploaded."""

    brand = models.ForeignKey("brands.Brand", on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "projects"

    def __str__(self) -> str:
        return self.name
