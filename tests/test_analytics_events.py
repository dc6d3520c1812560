"""POST /api/events/ and the batched enrichment (spec C §2.5.1, issue 11)."""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import psycopg
import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs.api import enqueue, get_queue, redis_connection
from jobs.rq_classes import JSONJob
from yesgoddess.analytics import enrichment
from yesgoddess.analytics.enrichment import FLUSH_JOB, flush_pending, parse_user_agent
from yesgoddess.analytics.models import Attribution, Event

from .conftest import SIMPLE, wait_until
from .license_factories import make_asset, make_brand, make_license, make_user

pytestmark = pytest.mark.django_db(transaction=True)

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.109 Safari/537.36"
)
SMART_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36"
)
CONSOLE = "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def api(client, user):
    client.force_login(user)

    def post(body, **headers):
        return client.post("/api/events/", json.dumps(body), content_type="application/json", **headers)

    return post


def queued_jobs(queue: str = "default") -> list[JSONJob]:
    return [JSONJob.fetch(job_id, connection=redis_connection()) for job_id in get_queue(queue).get_job_ids()]


def pending_count() -> int:
    return Event.objects.filter(enrich_pending=True).count()


def add_pending(n: int, **fields) -> list[Event]:
    """Events as the API stores them (pending), inserted directly."""
    now = timezone.now()
    props = fields.pop("props_json", {"userAgent": IPHONE})
    events = [
        Event(event_type="asset_viewed", source="web", occurred_at=now, props_json=props, enrich_pending=True, **fields)
        for _ in range(n)
    ]
    return Event.objects.bulk_create(events)


# --- the API --------------------------------------------------------------------------------


def test_an_event_is_recorded_pending_and_one_flush_is_queued(api, user):
    asset = make_asset(created_by=user)
    response = api(
        {"event_type": "asset_viewed", "source": "web", "ip_asset_id": asset.pk, "session_id": "s1", "props": {"a": 1}},
        HTTP_USER_AGENT=IPHONE,
    )
    assert response.status_code == 202, response.content
    event = Event.objects.get(pk=response.json()["id"])
    assert event.enrich_pending and event.enriched_at is None
    assert (event.event_type, event.source, event.ip_asset_id, event.session_id) == (
        "asset_viewed",
        "web",
        asset.pk,
        "s1",
    )
    assert (event.actor_type, event.actor_id, event.user_id) == ("user", str(user.pk), user.pk)
    # the request's User-Agent is kept for the enrichment when props have none
    assert event.props_json == {"a": 1, "userAgent": IPHONE}
    jobs = queued_jobs()
    assert [job.meta["job_name"] for job in jobs] == [FLUSH_JOB]


def test_props_are_stored_as_posted_with_the_header_user_agent_added(api):
    """The props' JSON text is spliced into the INSERT as validated: check what arrives."""
    posted = [
        {"event_type": "a", "source": "web"},
        {"event_type": "b", "source": "web", "props": {}},
        {"event_type": "c", "source": "web", "props": {"title": 'café ✓ "q" \\ 😀', "n": [1, 2.5, None, True]}},
        {"event_type": "d", "source": "web", "props": {"userAgent": DESKTOP, "k": {"x": "y"}}},
    ]
    response = api({"events": posted}, HTTP_USER_AGENT=IPHONE)
    assert response.status_code == 202, response.content
    stored = {e.event_type: e.props_json for e in Event.objects.filter(pk__in=response.json()["ids"])}
    assert stored == {
        "a": {"userAgent": IPHONE},
        "b": {"userAgent": IPHONE},
        "c": {"title": 'café ✓ "q" \\ 😀', "n": [1, 2.5, None, True], "userAgent": IPHONE},
        "d": {"userAgent": DESKTOP, "k": {"x": "y"}},
    }
    # the ids come back in the order of the events
    assert [Event.objects.get(pk=pk).event_type for pk in response.json()["ids"]] == ["a", "b", "c", "d"]


def test_many_events_queue_a_single_flush_job(api):
    for n in range(25):
        assert api({"event_type": "page_viewed", "source": "web", "props": {"n": n}}).status_code == 202
    assert api({"events": [{"event_type": "x", "source": "web"}] * 10}).status_code == 202
    assert Event.objects.count() == 35
    assert [job.meta["job_name"] for job in queued_jobs()] == [FLUSH_JOB]


def test_a_batch_is_recorded_in_one_request(api):
    asset = make_asset(status="PUBLISHED")
    body = {"events": [{"event_type": "asset_viewed", "source": "web", "ip_asset_id": asset.pk}] * 3}
    response = api(body)
    assert response.status_code == 202
    assert response.json()["count"] == 3
    assert sorted(Event.objects.values_list("pk", flat=True)) == sorted(response.json()["ids"])


def test_a_batch_with_one_bad_event_records_nothing(api):
    body = {"events": [{"event_type": "a", "source": "web"}, {"event_type": "b", "source": "web", "ip_asset_id": 999}]}
    response = api(body)
    assert response.status_code == 400
    assert response.json()["error"] == "events[1]: ip_asset_id 999 does not exist or is not visible to you."
    assert Event.objects.count() == 0 and queued_jobs() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "web"}, "event_type is required"),
        ({"event_type": "x"}, "source is required"),
        ({"event_type": "", "source": "web"}, "event_type must be a non-empty string"),
        ({"event_type": "x" * 101, "source": "web"}, "longer than 100"),
        ({"event_type": "x", "source": "web", "occurred_at": "yesterday"}, "ISO 8601"),
        ({"event_type": "x", "source": "web", "occurred_at": "2999-01-01T00:00:00Z"}, "in the future"),
        ({"event_type": "x", "source": "web", "occurred_at": "2000-01-01T00:00:00Z"}, "minutes ago"),
        ({"event_type": "x", "source": "web", "ip_asset_id": 424242}, "ip_asset_id 424242 does not exist"),
        ({"event_type": "x", "source": "web", "license_id": "7"}, "license_id must be a positive integer"),
        ({"event_type": "x", "source": "web", "post_id": 5}, "post_id 5 does not exist"),
        ({"event_type": "x", "source": "web", "props": [1, 2]}, "props must be a JSON object"),
        ({"event_type": "x", "source": "web", "props": {"userAgent": 5}}, "props.userAgent must be a string"),
        ({"event_type": "x", "source": "web", "props": {"a": "\u0000"}}, "NUL"),
        ({"event_type": "x", "source": "web", "props": {"a": "x" * 20000}}, "larger than"),
        ({"event_type": "x", "source": "web", "props": {"a": float("nan")}}, "NaN"),
        ({"event_type": "x", "source": "web", "props": {"a": "\ud800"}}, "invalid Unicode"),
        ({"event_type": "\ud800", "source": "web"}, "event_type is not valid Unicode"),
        ({"event_type": "x", "source": "web", "session_id": 12}, "session_id must be a non-empty string"),
        ({"event_type": "x", "source": "web", "colour": "red"}, "unknown field(s): colour"),
        ({"event_type": "x", "source": "web", "actor_id": "other"}, "only staff or a service token may set actor_id"),
        ({"events": []}, "events must be a non-empty list"),
        ({"events": [{"event_type": "x", "source": "web"}] * 501}, "at most 500 events"),
        ({"events": [{"event_type": "x", "source": "web"}], "extra": 1}, "nothing else"),
    ],
)
def test_bad_input_is_refused_with_400(api, body, message):
    response = api(body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert Event.objects.count() == 0


def test_a_slightly_fast_client_clock_is_read_as_now_and_a_recent_event_is_kept(api):
    now = timezone.now()
    ahead = (now + timedelta(minutes=2)).isoformat()
    recent = (now - timedelta(minutes=30)).replace(tzinfo=None).isoformat()  # no offset: UTC
    first = Event.objects.get(pk=api({"event_type": "x", "source": "web", "occurred_at": ahead}).json()["id"])
    second = Event.objects.get(pk=api({"event_type": "x", "source": "web", "occurred_at": recent}).json()["id"])
    assert now - timedelta(seconds=1) <= first.occurred_at <= timezone.now()
    assert abs(second.occurred_at - (now - timedelta(minutes=30))) < timedelta(milliseconds=1)


def test_anonymous_requests_are_refused(client):
    response = client.post("/api/events/", "{}", content_type="application/json")
    assert response.status_code == 401


def test_staff_may_record_an_event_for_a_visitor(client):
    staff = make_user(is_staff=True)
    client.force_login(staff)
    body = {"event_type": "x", "source": "server", "actor_type": "visitor", "actor_id": "v-9", "user_id": None}
    response = client.post("/api/events/", json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    event = Event.objects.get()
    assert (event.actor_type, event.actor_id, event.user_id) == ("visitor", "v-9", None)


def test_an_idempotency_key_records_a_retried_post_once(api):
    body = {"event_type": "x", "source": "web"}
    first = api(body, HTTP_IDEMPOTENCY_KEY="k1")
    second = api(body, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.json() == second.json() and Event.objects.count() == 1


# --- user agents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "device", "browser", "os"),
    [
        (IPHONE, "mobile", "Mobile Safari", "iOS"),
        (IPAD, "tablet", "Mobile Safari", "iOS"),
        (ANDROID_TABLET, "tablet", "Chrome", "Android"),
        (DESKTOP, "desktop", "Chrome", "Windows"),
        (SMART_TV, "tv", None, None),
        (CONSOLE, "console", None, None),
        ("curl/8.0", "desktop", "curl", None),
    ],
)
def test_user_agents_are_parsed_and_the_device_type_normalised(agent, device, browser, os):
    parsed = parse_user_agent(agent)
    assert parsed["device"]["type"] == device
    if browser:
        assert parsed["browser"]["name"] == browser
    if os:
        assert parsed["os"]["name"] == os


def test_versions_and_brand_are_reported():
    parsed = parse_user_agent(IPHONE)
    assert parsed == {
        "device": {"type": "mobile", "brand": "Apple", "model": "iPhone"},
        "browser": {"name": "Mobile Safari", "version": "17.0"},
        "os": {"name": "iOS", "version": "17.0"},
    }


# --- the flush ---------------------------------------------------------------------------------


def test_a_flush_merges_every_enrichment_key_and_writes_the_attribution(api, user):
    license = make_license(brand=make_brand(user=user))
    asset = license.ip_asset
    session = {
        "event_type": "asset_viewed",
        "source": "web",
        "ip_asset_id": asset.pk,
        "license_id": license.pk,
        "session_id": "sess-1",
        "props": {
            "userAgent": IPHONE,
            "referrer": "https://www.google.com/search?q=x",
            "utmSource": "newsletter",
            "utmMedium": "email",
            "utmCampaign": "spring",
            "landingPage": "/assets/1",
            "mine": True,
        },
    }
    first = api(session).json()["id"]
    later = {"event_type": "asset_downloaded", "source": "web", "session_id": "sess-1", "props": {"userAgent": DESKTOP}}
    second = api(later).json()["id"]

    result = flush_pending()
    assert result == {"selected": 2, "enriched": 2, "failed": 0, "attributions": 2, "requeued": 0}
    event = Event.objects.get(pk=first)
    props = event.props_json
    assert not event.enrich_pending and event.enriched_at is not None and event.enrichment_error is None
    assert props["mine"] is True and props["userAgent"] == IPHONE
    assert props["device"] == {"type": "mobile", "brand": "Apple", "model": "iPhone"}
    assert props["browser"] == {"name": "Mobile Safari", "version": "17.0"}
    assert props["os"] == {"name": "iOS", "version": "17.0"}
    assert props["session"]["referrer"] == "https://www.google.com/search?q=x"
    assert props["session"]["durationMs"] == 0
    assert props["campaign"] == {
        "source": "newsletter",
        "medium": "email",
        "campaign": "spring",
        "term": None,
        "content": None,
    }
    assert props["asset_snapshot"]["id"] == asset.pk and props["asset_snapshot"]["title"] == asset.title
    assert props["license_snapshot"]["id"] == license.pk
    assert props["license_snapshot"]["feeCents"] == license.fee_cents
    attribution = Attribution.objects.get(event_id=first)
    assert (attribution.device_type, attribution.browser, attribution.os) == ("mobile", "Mobile Safari", "iOS")
    assert (attribution.utm_source, attribution.utm_medium, attribution.utm_campaign) == (
        "newsletter",
        "email",
        "spring",
    )
    assert attribution.referrer == "https://www.google.com/search?q=x" and attribution.landing_page == "/assets/1"

    # the session's second event: its own device, the session's campaign and a duration
    event = Event.objects.get(pk=second)
    assert event.props_json["device"]["type"] == "desktop"
    assert event.props_json["campaign"]["source"] == "newsletter"
    started = Event.objects.get(pk=first).occurred_at
    expected_ms = round((event.occurred_at - started).total_seconds() * 1000)
    assert event.props_json["session"]["durationMs"] == expected_ms
    assert Attribution.objects.get(event_id=second).device_type == "desktop"


def test_enrichment_never_overwrites_a_key_the_event_has():
    asset = make_asset()
    props = {"userAgent": IPHONE, "device": "my own", "os": {"name": "custom"}, "asset_snapshot": None}
    (event,) = add_pending(1, ip_asset=asset, props_json=props)
    flush_pending()
    event.refresh_from_db()
    assert event.props_json["device"] == "my own"
    assert event.props_json["os"] == {"name": "custom"}
    assert event.props_json["asset_snapshot"] is None
    assert event.props_json["browser"] == {"name": "Mobile Safari", "version": "17.0"}


def test_enriching_an_event_twice_changes_nothing(run_worker):
    asset = make_asset()
    (event,) = add_pending(1, ip_asset=asset, session_id="s")
    flush_pending()
    event.refresh_from_db()
    before = (event.props_json, event.enriched_at, list(Attribution.objects.values()))
    enqueue("analytics-jobs.enrich-event", event_id=event.pk)
    run_worker("default", worker_class=SIMPLE)
    event.refresh_from_db()
    assert (event.props_json, event.enriched_at, list(Attribution.objects.values())) == before


def test_a_poison_event_is_recorded_with_its_reason_and_the_rest_are_enriched():
    good = add_pending(3)
    (not_an_object,) = add_pending(1, props_json=["a", "list"])
    (bad_agent,) = add_pending(1, props_json={"userAgent": 42})
    result = flush_pending()
    assert result["selected"] == 5 and result["enriched"] == 3 and result["failed"] == 2
    not_an_object.refresh_from_db()
    bad_agent.refresh_from_db()
    assert not_an_object.enrichment_error == "props_json is a JSON list, not an object"
    assert not_an_object.props_json == ["a", "list"] and not not_an_object.enrich_pending
    assert bad_agent.enrichment_error == "props_json.userAgent is a JSON int, not a string"
    assert bad_agent.enriched_at is None and not bad_agent.enrich_pending
    assert all(e.enriched_at and "device" in e.props_json for e in Event.objects.filter(pk__in=[g.pk for g in good]))
    assert pending_count() == 0
    assert flush_pending()["selected"] == 0  # poison is not met again


def test_an_event_the_database_refuses_does_not_hold_back_the_batch(monkeypatch):
    events = add_pending(4)
    poison = events[2].pk
    real_write = enrichment._write

    def write(cursor, now, updates, attributions):
        if any(event_id == poison and error is None for event_id, _, error in updates):
            raise DatabaseError("value too long for type character varying(50)")
        return real_write(cursor, now, updates, attributions)

    monkeypatch.setattr(enrichment, "_write", write)
    result = flush_pending()
    assert (result["enriched"], result["failed"]) == (3, 1)
    refused = Event.objects.get(pk=poison)
    assert "value too long" in refused.enrichment_error and not refused.enrich_pending
    assert Attribution.objects.count() == 3 and pending_count() == 0


def test_a_flush_takes_at_most_the_batch_size_and_queues_the_next(settings):
    settings.ANALYTICS_ENRICH_BATCH = 5
    add_pending(12)
    first = flush_pending()
    assert (first["selected"], first["requeued"]) == (5, 1)
    assert [job.meta["job_name"] for job in queued_jobs()] == [FLUSH_JOB]
    assert flush_pending()["selected"] == 5
    last = flush_pending()
    assert (last["selected"], last["requeued"]) == (2, 0)
    assert pending_count() == 0


def test_the_queries_of_a_flush_do_not_grow_with_the_batch(django_assert_max_num_queries):
    assets = [make_asset() for _ in range(3)]
    license = make_license()
    for n in range(60):
        add_pending(1, ip_asset=assets[n % 3], license=license, session_id=f"s{n % 7}")
    with django_assert_max_num_queries(12):
        assert flush_pending()["enriched"] == 60


def test_events_are_enriched_end_to_end_by_a_real_worker_in_few_jobs(api, run_worker, settings):
    asset = make_asset(status="PUBLISHED")
    for n in range(5):
        body = {"events": [{"event_type": "asset_viewed", "source": "web", "ip_asset_id": asset.pk}] * 20}
        assert api(body, HTTP_USER_AGENT=DESKTOP).status_code == 202
        assert len(queued_jobs()) == 1, n
    result = run_worker("default", worker_class=SIMPLE, timeout=120)
    assert pending_count() == 0
    assert Event.objects.filter(enriched_at__isnull=False).count() == 100
    assert Attribution.objects.filter(device_type="desktop").count() == 100
    assert result.stdout.count("job=analytics-jobs.enrich-events") + result.stderr.count(
        "job=analytics-jobs.enrich-events"
    ) in (1, 2)


def test_the_per_item_job_enriches_by_id_and_a_missing_id_fails_once(run_worker):
    (event,) = add_pending(1)
    good = enqueue("analytics-jobs.enrich-event", event_id=event.pk)
    missing = enqueue("analytics-jobs.enrich-event", event_id=987654)
    run_worker("default", worker_class=SIMPLE)
    event.refresh_from_db()
    assert event.enriched_at is not None and not event.enrich_pending
    assert JSONJob.fetch(good, connection=redis_connection()).get_status() == "finished"
    failed = JSONJob.fetch(missing, connection=redis_connection())
    assert failed.get_status() == "failed" and failed.retries_left == 0
    assert "event 987654 does not exist" in failed.latest_result().exc_string


# --- crashes and concurrency (a real worker blocked mid-flush) ------------------------------------


class FlushBlocker:
    """Holds an uncommitted attribution row for one event: a flush that reaches that event's
    attribution upsert waits (its batch locked, nothing committed) until `release()`."""

    def __init__(self, event_id: int) -> None:
        db = connection.settings_dict
        self.conn = psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], password=db["PASSWORD"] or None
        )
        self.conn.execute("INSERT INTO attribution (event_id, created_at) VALUES (%s, now())", [event_id])

    def waiting_backend(self) -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE '%%INSERT INTO attribution%%'"
            )
            row = cursor.fetchone()
        return row[0] if row else None

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is not None


def test_events_arriving_while_a_flush_runs_are_taken_by_the_next_flush(api, background_worker):
    first = [api({"event_type": "a", "source": "web", "props": {"userAgent": IPHONE}}).json()["id"] for _ in range(3)]
    (first_flush,) = get_queue("default").get_job_ids()
    blocker = FlushBlocker(first[0])
    worker = background_worker("default", worker_class=SIMPLE, with_scheduler=False)
    try:
        wait_until(blocker.waiting_backend, what="the flush to reach the blocked upsert")
        later = [
            api({"event_type": "b", "source": "web", "props": {"userAgent": DESKTOP}}).json()["id"] for _ in range(4)
        ]
        (second_flush,) = get_queue("default").get_job_ids()  # queued although a flush is running
        assert Event.objects.filter(pk__in=first + later, enrich_pending=True).count() == 7
    finally:
        blocker.release()
    wait_until(lambda: pending_count() == 0, what="every event enriched")
    conn = redis_connection()
    wait_until(lambda: JSONJob.fetch(second_flush, connection=conn).get_status() == "finished", what="2nd flush")
    worker.kill()
    assert JSONJob.fetch(first_flush, connection=conn).return_value()["selected"] == 3
    assert JSONJob.fetch(second_flush, connection=conn).return_value()["selected"] == 4
    assert Attribution.objects.count() == 7


def test_a_worker_killed_mid_flush_loses_nothing_and_duplicates_nothing(api, background_worker, run_worker):
    ids = [
        api({"event_type": "a", "source": "web", "props": {"userAgent": IPHONE, "k": n}}).json()["id"] for n in range(5)
    ]
    blocker = FlushBlocker(ids[0])
    worker = background_worker("default", worker_class=SIMPLE, with_scheduler=False)
    try:
        pid = wait_until(blocker.waiting_backend, what="the flush to reach the blocked upsert")
        worker.kill(signal.SIGKILL)
    finally:
        blocker.release()
    # PostgreSQL ends the dead worker's session (and rolls its batch back) once it notices.
    wait_until(lambda: not backend_alive(pid), what="the killed worker's session to end")
    assert pending_count() == 5 and Attribution.objects.count() == 0
    ids.append(api({"event_type": "b", "source": "web", "props": {"userAgent": IPHONE}}).json()["id"])
    run_worker("default", worker_class=SIMPLE)
    assert pending_count() == 0
    assert Attribution.objects.count() == 6 and set(Attribution.objects.values_list("event_id", flat=True)) == set(ids)
    for event in Event.objects.filter(pk__in=ids[:5]).order_by("pk"):
        assert event.props_json["k"] == ids.index(event.pk) and event.props_json["device"]["type"] == "mobile"
        assert event.enriched_at is not None and event.enrichment_error is None


def test_the_sweep_queues_a_flush_only_for_pending_events():
    from jobs.handlers.analytics import sweep_pending_events

    assert sweep_pending_events() == {"pending": 0, "queued": 0}
    add_pending(2)  # recorded, but their flush was lost
    assert sweep_pending_events() == {"pending": 1, "queued": 1}
    assert sweep_pending_events() == {"pending": 1, "queued": 0}  # one is queued already
    assert [job.meta["job_name"] for job in queued_jobs()] == [FLUSH_JOB]


def test_a_session_keeps_its_first_context_and_each_batch_renews_its_lifetime(api):
    """The first event of a session writes its context; later ones (in the same batch or
    a later one) leave it as it was and renew its time to live."""
    first = {"referrer": "https://first.example/", "utmSource": "news"}
    later = {"referrer": "https://later.example/", "utmSource": "ads"}
    base = {"event_type": "asset_viewed", "source": "web"}
    assert (
        api({"events": [{**base, "session_id": "k1", "props": first}, {**base, "session_id": "k2"}]}).status_code == 202
    )
    key = enrichment.SESSION_KEY.format("k1")
    conn = redis_connection()
    conn.expire(key, 60)  # time has passed
    assert api({"events": [{**base, "session_id": "k1", "props": later}]}).status_code == 202

    stored = json.loads(conn.get(key))
    assert stored["referrer"] == "https://first.example/" and stored["utmSource"] == "news"
    assert enrichment.SESSION_TTL - 5 <= conn.ttl(key) <= enrichment.SESSION_TTL
    assert json.loads(conn.get(enrichment.SESSION_KEY.format("k2")))["sessionStartTime"]

    # known and new sessions in one batch: each new one gets its own first event's context
    third = {"referrer": "https://third.example/"}
    body = [
        {**base, "session_id": "k1", "props": later},
        {**base, "session_id": "k3", "props": third},
        {**base, "session_id": "k2", "props": later},
        {**base, "session_id": "k4"},
        {**base, "session_id": "k3", "props": later},
    ]
    assert api({"events": body}).status_code == 202
    contexts = {k: json.loads(conn.get(enrichment.SESSION_KEY.format(k))) for k in ("k1", "k2", "k3", "k4")}
    assert contexts["k1"]["referrer"] == "https://first.example/"
    assert "referrer" not in contexts["k2"] and "referrer" not in contexts["k4"]
    assert contexts["k3"]["referrer"] == "https://third.example/"


def test_the_partial_reference_indexes_serve_lookups_by_id():
    """The (reference, occurred_at) indexes hold only events that have the reference, and
    a lookup by one id still uses them."""
    license = make_license()
    add_pending(3, license=license)
    add_pending(2)
    query = Event.objects.filter(license=license).order_by("occurred_at")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute(f"EXPLAIN {query.query}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' AND indexname IN "
            "('event_license_occurred_idx', 'event_asset_occurred_idx', 'event_project_occurred_idx', "
            "'event_post_occurred_idx')"
        )
        definitions = dict(cursor.fetchall())
    assert "event_license_occurred_idx" in plan, plan
    assert list(query.values_list("license_id", flat=True)) == [license.pk] * 3
    assert len(definitions) == 4
    for name, definition in definitions.items():
        assert definition.endswith("IS NOT NULL)"), (name, definition)
