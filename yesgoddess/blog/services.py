"""Publishing scheduled posts (spec C §2.14, defects fixed).

A due post (SCHEDULED, `scheduled_for` passed, not deleted) is claimed with a
conditional UPDATE (`WHERE status = 'SCHEDULED'`): of two publishers racing for it, one
updates the row and the other finds it already published, so a post is published, its
author notified and its search entry refreshed exactly once. The claim and the in-app
notification commit together; the search mark follows the commit.

The job scheduled-blog-publishing runs `publish_due_posts` every minute; with `post_id`
it publishes that one post if it is due (the original's "publish-specific-post", for
operators).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from yesgoddess.core.errors import InvalidInput
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import notify
from yesgoddess.search.services import mark_for_reindex

from .models import Post, PostStatus

log = logging.getLogger(__name__)

BATCH = 100

CLAIM_SQL = f"""
UPDATE {Post._meta.db_table}
SET status = %(published)s, published_at = COALESCE(scheduled_for, %(now)s), updated_at = %(now)s
WHERE id = %(id)s AND status = %(scheduled)s AND deleted_at IS NULL AND scheduled_for <= %(now)s
RETURNING id, title, slug, author_id, published_at
"""


@dataclass
class PublishReport:
    due: int = 0
    published: int = 0
    taken_by_other: int = 0

    def as_counts(self) -> dict[str, int]:
        return {"due": self.due, "published": self.published, "taken_by_other": self.taken_by_other}


def due_posts(now: datetime):
    return Post.objects.filter(status=PostStatus.SCHEDULED, scheduled_for__lte=now, deleted_at__isnull=True)


def publish_post(post_id: int, now: datetime) -> bool:
    """Publish one due post if it is still SCHEDULED; True if this call published it."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                CLAIM_SQL,
                {"id": post_id, "now": now, "published": PostStatus.PUBLISHED, "scheduled": PostStatus.SCHEDULED},
            )
            row = cursor.fetchone()
        if row is None:
            return False
        _, title, slug, author_id, published_at = row
        notify(
            [author_id],
            type=Notification.Type.BLOG,
            title="Your post is live",
            message=f'"{title}" was published as scheduled.',
            action_url=f"{settings.APP_URL}/blog/{slug}",
            metadata={"post_id": post_id, "published_at": published_at.isoformat()},
        )
        mark_for_reindex("post", [post_id])
    log.info("post %s published (scheduled for %s)", post_id, published_at.isoformat())
    return True


def publish_due_posts(now: datetime | None = None, post_id: int | None = None) -> PublishReport:
    """Publish every post due at `now`, oldest schedule first (or only `post_id`, which
    must exist: Post.DoesNotExist otherwise)."""
    if post_id is not None and not Post.objects.filter(pk=post_id).exists():
        raise InvalidInput(f"Post {post_id} does not exist.")
    now = now or timezone.now()
    report = PublishReport()
    after: tuple[datetime, int] | None = None
    while True:
        due = due_posts(now)
        if post_id is not None:
            due = due.filter(pk=post_id)
        if after is not None:
            due = due.filter(Q(scheduled_for__gt=after[0]) | Q(scheduled_for=after[0], pk__gt=after[1]))
        batch = list(due.order_by("scheduled_for", "pk").values_list("pk", "scheduled_for")[:BATCH])
        if not batch:
            return report
        for pk, _ in batch:
            report.due += 1
            if publish_post(pk, now):
                report.published += 1
            else:
                report.taken_by_other += 1
        after = (batch[-1][1], batch[-1][0])
