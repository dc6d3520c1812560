from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Creator(models.Model):
    """A creator profile: the owner side of IP ownership and royalties."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="creator")
    display_name = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "creators"

    def __str__(self) -> str:
        return self.display_name
