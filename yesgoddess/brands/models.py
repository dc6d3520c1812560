from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Brand(models.Model):
    """A company that licenses creators' IP. `user` is its primary contact."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="brands")
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "brands"

    def __str__(self) -> str:
        return self.name
