"""Blog posts (spec C §4.8): the fields the publishing, analytics and search jobs use."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class PostStatus(models.TextChoices):
    DRAFT = "DRAFT"
    SCHEDULED = "SCHEDULED"
    PUBLISHED = "PUBLISHED"
    ARCHIVED = "ARCHIVED"


class Post(models.Model):
    title = models.CharField(max_length=500)
    slug = models.CharField(max_length=600, unique=True)
    content = models.TextField(blank=True, default="")
    excerpt = models.CharField(max_length=1000, null=True, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="posts")
    status = models.CharField(max_length=16, choices=PostStatus.choices, default=PostStatus.DRAFT)
    published_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    view_count = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "posts"
        indexes = [
            models.Index(fields=["status", "-published_at"], name="post_status_published_idx"),
            models.Index(
                fields=["scheduled_for"],
                name="post_due_idx",
                condition=Q(status="SCHEDULED", deleted_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.title
