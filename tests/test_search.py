"""Search: vectors and ranking, the API, and the batched on-change updates (issue 11):
save -> pending -> one flush -> vector; bursts, re-queue, arrivals during a flush, a
flush that dies (simulated and a real SIGKILL), poison objects, the per-item job and
the weekly rebuild."""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone

from jobs.api import get_queue, redis_connection
from jobs.handlers.search import flush_failed, rebuild_search_index, update_search_item
from jobs.registry import get_spec
from yesgoddess.blog.models import Post
from yesgoddess.core.errors import InvalidInput
from yesgoddess.search import pending, services
from yesgoddess.search.models import SearchIndexFailure
from yesgoddess.search.registry import SEARCHABLE

from .conftest import wait_until
from .license_factories import make_asset, make_brand, make_creator, make_project, make_user

pytestmark = pytest.mark.django_db


def vector(table: str, pk: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT search_vector::text FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def vectors(table: str) -> dict[int, str | None]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, search_vector::text FROM {table} ORDER BY id")
        return dict(cursor.fetchall())


def index_all() -> None:
    services.rebuild()


def asset(title: str, description: str | None = None, status: str = "APPROVED", **fields):
    return make_asset(title=title, description=description, status=status, **fields)


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("staffer", "staff@example.test", "pw", is_staff=True)


@pytest.fixture
def member():
    return make_user()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def find(user, **params) -> dict:
    response = client_for(user).get("/api/search", params)
    assert response.status_code == 200, response.content
    return response.json()


def ids(body: dict) -> list[tuple[str, int]]:
    return [(hit["type"], hit["id"]) for hit in body["results"]]


# --- vectors, ranking and the API -------------------------------------------------------


def test_title_match_ranks_above_description_above_tags(staff):
    in_tags = asset("Hills", "green slopes", metadata={"tags": ["sunset", "evening"]})
    in_description = asset("Harbour", "boats under a red sunset")
    in_title = asset("Sunset over the bay")
    other = asset("Forest", "tall trees")
    index_all()
    body = find(staff, q="sunset")
    assert ids(body) == [("asset", in_title.pk), ("asset", in_description.pk), ("asset", in_tags.pk)]
    ranks = [hit["rank"] for hit in body["results"]]
    assert ranks[0] > ranks[1] > ranks[2] > 0
    assert ("asset", other.pk) not in ids(body)


def test_finds_by_title_description_and_tags_with_stemming(staff):
    a = asset("Running shoes", "photographed outdoors")
    b = asset("Track", "the team runs at dawn", metadata={"tags": ["athletics"], "extracted": {"tags": {"gps": "x"}}})
    index_all()
    assert ids(find(staff, q="run")) == [("asset", a.pk), ("asset", b.pk)]
    assert ids(find(staff, q="athletics")) == [("asset", b.pk)]
    assert ids(find(staff, q="photograph")) == [("asset", a.pk)]
    assert find(staff, q="gps")["results"] == []  # extracted file tags are not searchable text


def test_accents_are_folded(staff):
    a = asset("Café terrace", "crème brûlée")
    index_all()
    assert ids(find(staff, q="cafe")) == [("asset", a.pk)]
    assert ids(find(staff, q="creme brulee")) == [("asset", a.pk)]


def test_deleted_objects_are_never_found(staff):
    kept = asset("Mountain lake")
    gone = asset("Mountain road")
    index_all()
    # Soft-deleted without any reindex: the query's own filter hides it.
    type(gone).objects.filter(pk=gone.pk).update(deleted_at=timezone.now())
    assert ids(find(staff, q="mountain")) == [("asset", kept.pk)]
    # And its vector is cleared the next time it is indexed.
    index_all()
    assert vector("ip_assets", gone.pk) is None
    assert vector("ip_assets", kept.pk) is not None


def test_type_filter_and_every_searchable_type(staff):
    user = make_user()
    a = asset("Neon city")
    brand = make_brand(name="Neon Drinks", description="energy drinks", verification_status="verified")
    project = make_project(brand, name="Neon launch", description="a campaign", status="ACTIVE")
    creator = make_creator("Neon Artist")
    post = Post.objects.create(title="Neon nights", slug="neon-nights", content="x", author=user, status="PUBLISHED")
    index_all()
    everything = find(staff, q="neon")
    assert {(hit["type"], hit["id"]) for hit in everything["results"]} == {
        ("asset", a.pk),
        ("brand", brand.pk),
        ("project", project.pk),
        ("creator", creator.pk),
        ("post", post.pk),
    }
    by_type = {hit["type"]: hit for hit in everything["results"]}
    assert by_type["post"]["url"].endswith("/blog/neon-nights")
    assert by_type["asset"]["url"].endswith(f"/assets/{a.pk}")
    assert by_type["creator"]["title"] == "Neon Artist"
    assert ids(find(staff, q="neon", type="project")) == [("project", project.pk)]
    assert ids(find(staff, q="neon", type="brand")) == [("brand", brand.pk)]


def test_posts_rank_title_then_content_then_excerpt(staff):
    author = make_user()

    def post(slug: str, **fields) -> Post:
        fields = {"title": "Untitled", "content": "", "excerpt": "", **fields}
        return Post.objects.create(slug=slug, author=author, status="PUBLISHED", **fields)

    excerpt = post("e", excerpt="notes on licensing")
    content = post("c", content="all about licensing deals")
    title = post("t", title="Licensing explained")
    index_all()
    expected = [("post", title.pk), ("post", content.pk), ("post", excerpt.pk)]
    assert ids(find(staff, q="licensing", type="post")) == expected


def test_results_carry_escaped_highlights(staff):
    a = asset("Storm", 'A <script>alert("x")</script> R&D thunderstorm over the sea, lightning everywhere')
    index_all()
    hit = find(staff, q="lightning")["results"][0]
    assert hit["id"] == a.pk and hit["title"] == "Storm" and hit["type"] == "asset"
    assert "<mark>lightning</mark>" in hit["snippet"]
    assert set(re.findall(r"<[^>]*>", hit["snippet"])) == {"<mark>", "</mark>"}
    assert "R&amp;D" in hit["snippet"] and "&quot;x&quot;" in hit["snippet"]


def test_bad_queries_are_refused_and_stop_words_find_nothing(staff):
    client = client_for(staff)
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search", {"q": "   "}).status_code == 400
    assert client.get("/api/search", {"q": "x" * 300}).status_code == 400
    assert client.get("/api/search", {"q": "sea", "type": "planet"}).status_code == 400
    assert client.get("/api/search", {"q": "sea", "page": "zero"}).status_code == 400
    assert client.get("/api/search", {"q": "sea", "page_size": "500"}).status_code == 400
    assert client.get("/api/search", {"q": "a\x00b"}).status_code == 400
    assert client.post("/api/search", {"q": "sea"}).status_code == 405
    assert Client().get("/api/search", {"q": "sea"}).status_code == 401
    # Web-search syntax never raises, whatever the user types.
    for q in ["the and of", '"unterminated', "-", "sea or", "!!! ((", "a & b | c"]:
        response = client.get("/api/search", {"q": q})
        assert response.status_code == 200, q
    assert client.get("/api/search", {"q": "the and of"}).json()["results"] == []


def test_pagination(staff):
    for n in range(5):
        asset(f"Lantern {n}")
    index_all()
    first = find(staff, q="lantern", page_size=2)
    second = find(staff, q="lantern", page_size=2, page=2)
    third = find(staff, q="lantern", page_size=2, page=3)
    assert first["has_more"] and second["has_more"] and not third["has_more"]
    seen = ids(first) + ids(second) + ids(third)
    assert len(seen) == len(set(seen)) == 5


def test_members_see_public_and_own_rows_staff_see_all(staff, member):
    public = asset("Aurora public", status="PUBLISHED")
    draft = asset("Aurora draft", status="DRAFT")
    own_draft = asset("Aurora mine", status="DRAFT", created_by=member)
    brand = make_brand(name="Aurora Co", user=member)  # pending verification, but the member's own
    other_brand = make_brand(name="Aurora Other")  # pending, someone else's
    index_all()
    seen = set(ids(find(member, q="aurora")))
    assert seen == {("asset", public.pk), ("asset", own_draft.pk), ("brand", brand.pk)}
    assert set(ids(find(staff, q="aurora"))) == seen | {("asset", draft.pk), ("brand", other_brand.pk)}


# --- save -> pending -> flush ----------------------------------------------------------


def queued_flushes() -> int:
    queue = get_queue(get_spec("search-index-update").queue)
    return sum(1 for job in queue.get_jobs() if job.args and job.args[0] == "search-index-update")


@pytest.fixture
def at_once(settings):
    settings.SEARCH_FLUSH_DELAY_SECONDS = 0
    return settings


@pytest.mark.django_db(transaction=True)
def test_save_marks_pending_and_queues_one_flush_that_indexes(at_once):
    a = asset("Quiet river")
    assert vector("ip_assets", a.pk) is None
    assert redis_connection().zscore(pending.PENDING, f"asset:{a.pk}") is not None
    assert queued_flushes() == 1
    counts = services.flush_pending()
    assert counts["claimed"] == 1 and counts["changed"] == 1 and counts["failed"] == 0
    assert "'river':" in vector("ip_assets", a.pk)
    assert pending.status().total == 0
    # Saving again without changing the text marks it, and the flush writes nothing.
    a.save()
    assert services.flush_pending()["changed"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_saves_is_one_flush(at_once):
    objects = [asset(f"Burst {n}") for n in range(10)]
    for _ in range(3):
        for obj in objects:
            obj.description = f"changed {time.monotonic()}"
            obj.save()
    assert queued_flushes() == 1
    assert pending.status().total == 10
    assert services.flush_pending()["claimed"] == 10
    assert all(vector("ip_assets", obj.pk) for obj in objects)


@pytest.mark.django_db(transaction=True)
def test_with_a_delay_the_flush_is_scheduled_not_queued(settings):
    settings.SEARCH_FLUSH_DELAY_SECONDS = 2
    asset("Delayed")
    asset("Delayed too")
    queue = get_queue("default")
    assert queued_flushes() == 0
    assert len(queue.scheduled_job_registry.get_job_ids()) == 1


@pytest.mark.django_db(transaction=True)
def test_rollback_marks_nothing_and_unrelated_saves_are_ignored(at_once):
    with pytest.raises(RuntimeError), transaction.atomic():
        asset("Rolled back")
        raise RuntimeError
    assert pending.status().total == 0
    a = make_asset(title="Scanned")
    services.flush_pending()
    a.scan_status = "CLEAN"
    a.save(update_fields=["scan_status"])
    assert pending.status().total == 0
    a.title = "Renamed"
    a.save(update_fields=["title"])
    assert pending.status().total == 1


@pytest.mark.django_db(transaction=True)
def test_flush_takes_a_batch_and_requeues_itself_while_objects_remain(at_once):
    objects = [asset(f"Batch {n}") for n in range(5)]
    get_queue("default").empty()
    counts = services.flush_pending(batch=2)
    assert counts["claimed"] == 2 and counts["next"] == 1
    assert queued_flushes() == 1
    assert pending.status().total == 3
    services.flush_pending(batch=2)
    services.flush_pending(batch=2)
    assert pending.status().total == 0
    assert all(vector("ip_assets", obj.pk) for obj in objects)


@pytest.mark.django_db(transaction=True)
def test_objects_saved_during_a_flush_are_taken_by_the_next(at_once, monkeypatch):
    first = asset("Early bird")
    get_queue("default").empty()
    late = {}
    real = services.index_objects

    def index_and_meanwhile_save(by_type):
        changed = real(by_type)
        late["asset"] = asset("Late arrival")  # committed while this flush runs
        first.title = "Early bird, edited"  # an object of this very batch, saved again
        first.save()
        return changed

    monkeypatch.setattr(services, "index_objects", index_and_meanwhile_save)
    services.flush_pending()
    monkeypatch.undo()
    state = pending.status()
    assert state.total == 2 and state.claimable == 2  # the ack left the re-saved object pending
    assert queued_flushes() == 1  # the flush had started: the save queued the next one
    services.flush_pending()
    assert "'late':" in vector("ip_assets", late["asset"].pk)
    assert "'edit':" in vector("ip_assets", first.pk)
    assert pending.status().total == 0


@pytest.mark.django_db(transaction=True)
def test_a_flush_that_dies_midway_loses_nothing(at_once, monkeypatch):
    at_once.SEARCH_FLUSH_LEASE_SECONDS = 1
    objects = [asset(f"Fragile {n}") for n in range(4)]
    brand = make_brand(name="Fragile brand")

    def die(by_type):
        services.update_vectors(SEARCHABLE["brand"], by_type["brand"])  # half the work done...
        raise RuntimeError("worker lost")  # ...then the process goes away

    monkeypatch.setattr(services, "index_objects", die)
    with pytest.raises(RuntimeError):
        services.flush_pending()
    monkeypatch.undo()
    state = pending.status()
    assert state.total == 5 and state.claimable == 0  # leased, not lost
    # The final-failure hook queues one delayed flush for when the lease ends.
    get_queue("default").empty()
    flush_failed({}, "RuntimeError: worker lost", "job-1")
    assert len(get_queue("default").scheduled_job_registry.get_job_ids()) == 1
    assert services.flush_pending()["claimed"] == 0  # still leased
    time.sleep(1.1)
    counts = services.flush_pending(recovery=True)
    assert counts["claimed"] == 5
    assert counts["changed"] == 4  # the brand was already written; writing it again changes nothing
    assert all(vector("ip_assets", obj.pk) for obj in objects) and vector("brands", brand.pk)
    assert pending.status().total == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_flush_loses_nothing(at_once, background_worker):
    """SIGKILL the worker while its flush waits on a row lock, then let a new worker run."""
    objects = [asset(f"Killed {n}") for n in range(6)]
    assert queued_flushes() == 1
    env = {"SEARCH_FLUSH_LEASE_SECONDS": "2", "SEARCH_FLUSH_DELAY_SECONDS": "0"}
    locker = connections.create_connection("default")
    try:
        locker.set_autocommit(False)
        with locker.cursor() as cursor:
            cursor.execute("SELECT id FROM ip_assets WHERE id = %s FOR UPDATE", [objects[3].pk])
        # Without RQ's scheduler: a killed worker's scheduler lock would hold up the next one's.
        worker = background_worker(
            "default", worker_class="jobs.rq_classes.DjangoSimpleWorker", with_scheduler=False, env=env
        )

        def blocked_backend():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE 'UPDATE ip_assets%%'"
                )
                row = cursor.fetchone()
                return row and row[0]

        backend = wait_until(blocked_backend, timeout=60, what="the flush to block on the row lock")
        worker.kill(signal.SIGKILL)
        with connection.cursor() as cursor:  # the server would notice the dead client later
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
        locker.rollback()
    finally:
        locker.close()
    assert all(vector("ip_assets", obj.pk) is None for obj in objects)
    assert pending.status().total == 6  # claimed by the dead flush, still there
    # Life goes on: another object is saved, a new worker runs its flush, which sees the
    # leased objects and schedules the recovery flush that takes them when the lease ends.
    newcomer = asset("Newcomer")
    second = background_worker("default", worker_class="jobs.rq_classes.DjangoSimpleWorker", env=env)
    try:
        wait_until(lambda: pending.status().total == 0, timeout=60, what="every pending object to be indexed")
    except AssertionError:
        print(second.kill())
        print(pending.status(), redis_connection().zrange(pending.PENDING, 0, -1, withscores=True))
        raise
    assert all(vector("ip_assets", obj.pk) for obj in [*objects, newcomer])


@pytest.mark.django_db(transaction=True)
def test_a_poison_object_is_recorded_and_does_not_block_the_batch(at_once):
    good = [asset(f"Healthy {n}") for n in range(5)]
    # More distinct words than a tsvector can hold (1 MB): indexing this row fails.
    huge = " ".join(f"w{n:07d}x{n * 7919 % 100000:05d}" for n in range(70_000))
    bad = asset("Poison", huge)
    redis_connection().zadd(pending.PENDING, {"widget:3": 0, "asset:abc": 0})
    counts = services.flush_pending()
    assert counts["claimed"] == 8 and counts["failed"] == 3
    assert all(vector("ip_assets", obj.pk) for obj in good)
    assert vector("ip_assets", bad.pk) is None
    failures = {f.key: f for f in SearchIndexFailure.objects.all()}
    assert set(failures) == {f"asset:{bad.pk}", "widget:3", "asset:abc"}
    assert "too long" in failures[f"asset:{bad.pk}"].reason
    assert failures[f"asset:{bad.pk}"].object_id == bad.pk
    assert pending.status().total == 0  # nothing left to block the next flush
    # Fixed and saved again: indexed, and the failure record goes away.
    bad.description = "cured"
    bad.save()
    services.flush_pending()
    assert "'cure':" in vector("ip_assets", bad.pk)
    assert not SearchIndexFailure.objects.filter(key=f"asset:{bad.pk}").exists()


def test_per_item_job_for_operators(staff):
    a = asset("Operator pick")
    assert update_search_item(object_type="asset", object_id=a.pk) == {"changed": 1}
    assert ids(find(staff, q="operator")) == [("asset", a.pk)]
    with pytest.raises(InvalidInput):
        update_search_item(object_type="widget", object_id=1)
    with pytest.raises(InvalidInput):
        rebuild_search_index(object_type="widget")


def test_rebuild_equals_per_object_updates_and_a_second_run_changes_nothing(monkeypatch):
    user = make_user()
    assets = [asset(f"Asset {n}", f"description {n}", metadata={"tags": [f"tag{n}"]}) for n in range(7)]
    brand = make_brand(name="Rebuild brand", description="desc", industry="beverages")
    make_project(brand, name="Rebuild project", description="about it")
    creator = make_creator("Rebuild Creator")
    type(creator).objects.filter(pk=creator.pk).update(specialties=["photography", "motion-graphics"])
    Post.objects.create(title="Rebuild post", slug="rb", content="body", excerpt="ex", tags=["t1"], author=user)
    deleted = asset("Deleted asset", deleted_at=timezone.now())
    for spec in SEARCHABLE.values():
        ids_ = list(spec.model._base_manager.values_list("pk", flat=True))
        services.update_vectors(spec, ids_)
    per_object = {spec.table: vectors(spec.table) for spec in SEARCHABLE.values()}
    assert per_object["ip_assets"][deleted.pk] is None
    assert all(v for pk, v in per_object["ip_assets"].items() if pk != deleted.pk)
    for spec in SEARCHABLE.values():
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {spec.table} SET search_vector = NULL")
    monkeypatch.setattr(services, "REBUILD_START_ROWS", 2)
    monkeypatch.setattr(services, "REBUILD_MIN_ROWS", 2)
    report = services.rebuild(target_seconds=0.000001)  # batches of 2 rows
    assert report.statements == 4 + 4  # 7 assets + deleted one in batches of 2, one per other type
    assert {spec.table: vectors(spec.table) for spec in SEARCHABLE.values()} == per_object
    assert report.changed == sum(1 for t in per_object.values() for v in t.values() if v is not None)
    again = rebuild_search_index()
    assert again["changed"] == 0 and again["rows"] == report.rows
    assert len(assets) == 7


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_a_real_worker(at_once, run_worker, staff):
    a = asset("Worker indexed")
    run_worker("default", worker_class="jobs.rq_classes.DjangoSimpleWorker")
    assert ids(find(staff, q="worker")) == [("asset", a.pk)]
    assert pending.status().total == 0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_quiet_save_is_searchable_within_seconds(settings, background_worker, staff):
    """Low traffic: the flush runs SEARCH_FLUSH_DELAY_SECONDS after the save (RQ's scheduler
    in the worker moves it), so an object waits a second or two, not until a batch fills."""
    settings.SEARCH_FLUSH_DELAY_SECONDS = 1
    background_worker("default", worker_class="jobs.rq_classes.DjangoSimpleWorker")
    time.sleep(3)  # the worker is up and its scheduler holds the queue's lock
    saved_at = time.monotonic()
    a = asset("Lighthouse")
    wait_until(lambda: vector("ip_assets", a.pk), timeout=20, what="the asset to be indexed")
    waited = time.monotonic() - saved_at
    assert waited < 4, waited
    assert ids(find(staff, q="lighthouse")) == [("asset", a.pk)]


def test_registry_entries():
    flush = get_spec("search-index-update")
    assert flush.queue == "default" and flush.on_failure == "jobs.handlers.search.flush_failed"
    assert flush.required_arguments() == []
    assert get_spec("search-index-update.rebuild").queue == "scheduled"
    assert get_spec("search-index-update.item").required_arguments() == ["object_type", "object_id"]


def test_marking_concurrently_from_threads_is_one_flush(at_once):
    """Marks from several threads at once still queue exactly one flush."""
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def mark(n: int) -> None:
        try:
            barrier.wait()
            services._push([pending.member("asset", n)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=mark, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert queued_flushes() == 1 and pending.status().total == 8
