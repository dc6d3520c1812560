"""scheduled-blog-publishing (spec C §2.14): every minute, publish due posts exactly once.
The work is in `yesgoddess.blog.services`."""

from __future__ import annotations

from yesgoddess.blog.services import publish_due_posts


def publish_scheduled_posts(*, post_id: int | None = None) -> dict[str, int]:
    """Publish every due post, or only `post_id` if it is due (operators)."""
    return publish_due_posts(post_id=post_id).as_counts()
