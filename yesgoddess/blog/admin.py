"""Blog posts in the operator's admin. Publishing is the scheduled-blog-publishing job's
(SCHEDULED -> PUBLISHED at `scheduled_for`), so status and published_at are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from yesgoddess.core.admin_tools import admin_link, link_job_argument

from .models import Post

link_job_argument("post_id", Post)


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "author_link", "status", "scheduled_for", "published_at", "view_count")
    list_filter = ("status", ("deleted_at", admin.EmptyFieldListFilter))
    search_fields = ("=id", "title", "slug")
    list_select_related = ("author",)
    raw_id_fields = ("author",)
    date_hierarchy = "created_at"
    readonly_fields = ("status", "published_at", "view_count", "created_at", "updated_at", "deleted_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="author", ordering="author__username")
    def author_link(self, post: Post) -> str:
        return admin_link(post.author)
