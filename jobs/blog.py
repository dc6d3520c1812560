"""scheduled-blog-publishing (spec C §2.14): every minute, publish due posts exactly once.

`post_id` publishes that one post if it is due (the original's "publish-specific-post"
for operators). The work is in `yesgoddess.blog.services`.
"""

from __future__ import annotations

from yesgoddess.blog.models import Post
from yesgoddess.blog.services import publish_due_posts

from .errors import JobInputError


def publish_scheduled_posts(*, post_id: int | None = None) -> dict[str, int]:
    if post_id is not None and not Post.objects.filter(pk=post_id).exists():
        raise JobInputError(f"Post {post_id} does not exist.")
    return publish_due_posts(post_id=post_id).as_counts()
