"""Objects the search index could not be updated for, and why (the flush's poison items)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SearchIndexFailure(models.Model):
    """One row per pending entry that failed ("asset:12", or a malformed entry as given).

    Written by the flush instead of retrying forever; removed when the object is indexed
    successfully later (a new save, the per-item job, or the weekly rebuild)."""

    key = models.CharField(max_length=255, unique=True)
    object_type = models.CharField(max_length=32, blank=True, default="", db_default="")
    object_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField()
    attempts = models.IntegerField(default=1, db_default=1)
    first_failed_at = models.DateTimeField(default=timezone.now, db_default=models.functions.Now())
    last_failed_at = models.DateTimeField(default=timezone.now, db_default=models.functions.Now())

    class Meta:
        db_table = "search_index_failures"

    def __str__(self) -> str:
        return f"{self.key}: {self.reason[:80]}"
