"""scheduled-blog-publishing: due posts published exactly once (also with two publishers
racing), published_at = scheduled_for, the author notified once, search updated."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections

from jobs.api import enqueue
from jobs.handlers.blog import publish_scheduled_posts
from jobs.registry import get_spec
from jobs.schedule import SCHEDULE
from yesgoddess.blog import services as blog_services
from yesgoddess.blog.models import Post, PostStatus
from yesgoddess.blog.services import publish_due_posts, publish_post
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.redis import redis_connection
from yesgoddess.notifications.models import Notification
from yesgoddess.search import pending, services

from .license_factories import make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 5, 4, 12, 0, 30, tzinfo=UTC)


def post(slug: str, *, status: str = PostStatus.SCHEDULED, due_in: timedelta | None = timedelta(minutes=-5), **f):
    author = f.pop("author", None) or make_user()
    return Post.objects.create(
        title=f.pop("title", f"Post {slug}"),
        slug=slug,
        content=f.pop("content", "Body text"),
        author=author,
        status=status,
        scheduled_for=NOW + due_in if due_in is not None else None,
        **f,
    )


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def test_due_posts_are_published_once_with_their_scheduled_time():
    due = post("due")
    just_due = post("just-due", due_in=timedelta(0))
    later = post("later", due_in=timedelta(minutes=1))
    draft = post("draft", status=PostStatus.DRAFT)
    deleted = post("deleted", deleted_at=NOW - timedelta(days=1))
    with at(NOW):
        counts = publish_scheduled_posts()
    assert counts == {"due": 2, "published": 2, "taken_by_other": 0}
    for p in (due, just_due):
        p.refresh_from_db()
        assert p.status == PostStatus.PUBLISHED
        assert p.published_at == p.scheduled_for
    for p, status in ((later, PostStatus.SCHEDULED), (draft, PostStatus.DRAFT), (deleted, PostStatus.SCHEDULED)):
        p.refresh_from_db()
        assert p.status == status and p.published_at is None
    with at(NOW):
        assert publish_scheduled_posts() == {"due": 0, "published": 0, "taken_by_other": 0}
    assert Notification.objects.count() == 2


def test_the_author_is_notified_in_app():
    p = post("hello", title="Hello world")
    with at(NOW):
        publish_scheduled_posts()
    note = Notification.objects.get()
    assert note.user_id == p.author_id
    assert note.type == Notification.Type.BLOG
    assert "Hello world" in note.message
    assert note.action_url.endswith("/blog/hello")
    assert note.metadata["post_id"] == p.pk


def test_oldest_schedule_first_and_more_than_one_batch(monkeypatch):
    monkeypatch.setattr("yesgoddess.blog.services.BATCH", 3)
    author = make_user()
    posts = [post(f"p{n}", author=author, due_in=timedelta(minutes=-n)) for n in range(1, 8)]
    published: list[int] = []
    real = blog_services.publish_post

    def spy(post_id, now):
        published.append(post_id)
        return real(post_id, now)

    monkeypatch.setattr("yesgoddess.blog.services.publish_post", spy)
    with at(NOW):
        report = publish_due_posts()
    assert report.published == 7
    assert published == [p.pk for p in reversed(posts)]


def test_post_specific_run_for_operators():
    one = post("one")
    other = post("other")
    not_due = post("not-due", due_in=timedelta(hours=1))
    with at(NOW):
        assert publish_scheduled_posts(post_id=one.pk)["published"] == 1
        assert publish_scheduled_posts(post_id=not_due.pk)["published"] == 0
        with pytest.raises(InvalidInput):
            publish_scheduled_posts(post_id=987654)
    other.refresh_from_db()
    assert other.status == PostStatus.SCHEDULED


@pytest.mark.django_db(transaction=True)
def test_two_publishers_at_once_publish_each_post_once():
    author = make_user()
    posts = [post(f"race-{n}", author=author) for n in range(30)]
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def publisher() -> None:
        try:
            barrier.wait()
            reports.append(publish_due_posts(now=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publisher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.published for r in reports) == 30
    assert sum(r.published + r.taken_by_other for r in reports) == sum(r.due for r in reports)
    assert Post.objects.filter(status=PostStatus.PUBLISHED).count() == 30
    assert Notification.objects.filter(user=author).count() == 30
    assert len(set(Notification.objects.values_list("metadata__post_id", flat=True))) == 30
    assert {p.pk for p in posts} == set(Post.objects.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_publishing_updates_the_search_index(settings, client):
    settings.SEARCH_FLUSH_DELAY_SECONDS = 0
    p = post("searchable", title="Zeppelin adventures")
    services.flush_pending()  # the save before publishing
    reader = make_user()
    client.force_login(reader)
    assert client.get("/api/search", {"q": "zeppelin"}).json()["results"] == []  # scheduled: not public yet
    with at(NOW):
        publish_scheduled_posts()
    assert redis_connection().zscore(pending.PENDING, f"post:{p.pk}") is not None
    services.flush_pending()
    results = client.get("/api/search", {"q": "zeppelin"}).json()["results"]
    assert [(r["type"], r["id"]) for r in results] == [("post", p.pk)]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_a_real_worker(run_worker):
    p = post("worker", due_in=None)
    Post.objects.filter(pk=p.pk).update(scheduled_for=datetime.now(UTC) - timedelta(minutes=1))
    enqueue("scheduled-blog-publishing")
    run_worker("scheduled", worker_class="jobs.rq_classes.DjangoSimpleWorker")
    p.refresh_from_db()
    assert p.status == PostStatus.PUBLISHED
    assert Notification.objects.filter(user_id=p.author_id).count() == 1


def test_registry_and_cron_entry():
    spec = get_spec("scheduled-blog-publishing")
    assert spec.queue == "scheduled" and spec.result_ttl <= 3600 and spec.required_arguments() == []
    (entry,) = [e for e in SCHEDULE if e.job == "scheduled-blog-publishing"]
    assert entry.cron == "* * * * *"
    (rebuild,) = [e for e in SCHEDULE if e.job == "search-index-update.rebuild"]
    assert rebuild.cron == "0 3 * * 0"


def test_claim_is_a_conditional_update():
    p = post("cond")
    assert publish_post(p.pk, NOW) is True
    assert publish_post(p.pk, NOW) is False
    with connection.cursor() as cursor:
        cursor.execute("SELECT status FROM posts WHERE id = %s", [p.pk])
        assert cursor.fetchone()[0] == "PUBLISHED"
