"""Analytics ingest: events posted to `POST /api/events/` (Django test client, in this
process) and enriched by two real worker processes (`rqworker --worker-class
jobs.rq_classes.DjangoSimpleWorker default`): batched flushes (ours, issue 11) against
one `analytics-jobs.enrich-event` job per event, through the same workers, in the same run.

Events: `asset_viewed` of one of 100 assets (a third with one of 50 licenses), one of
5,000 sessions (the first event of a session carries a referrer and utm values), one of
30 real user agents; posted `--per-request` at a time (`{"events": [...]}`).

Two measures per mode:
- end to end: the workers run while the events are posted; from the first post until
  every event is enriched (polled every 50 ms);
- drain: the events are posted with no worker running, then the two workers start; from
  the first job's start until every event is enriched (the workers' own throughput).
One-job-per-event posts the same events through the same view, with `record_events`
swapped for one that enqueues `analytics-jobs.enrich-event` per event (after commit).
Its own database (`yesgoddess_bench_ingest`, events truncated between phases).
Usage: python bench/analytics_ingest.py [--events 100000] [--baseline-events 10000] [--per-request 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime

from _common import PYTHON, ROOT, child_env, median, prepare_bench_db, setup_django

BENCH_DB = "yesgoddess_bench_ingest"
AGENTS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{n} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.{n} Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{n}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{n}) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{n} "
    "Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 1{n}; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12{n}.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_{n} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.{n} "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:12{n}.0) Gecko/20100101 Firefox/12{n}.0",
]
USER_AGENTS = [agent.format(n=n) for agent in AGENTS for n in range(5)]


class Bench:
    def __init__(self, db_url: str) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        from yesgoddess.assets.models import IpAsset
        from yesgoddess.brands.models import Brand
        from yesgoddess.core.redis import redis_connection
        from yesgoddess.licensing.models import License

        self.db_url = db_url
        self.redis = redis_connection()
        user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
        brand, _ = Brand.objects.get_or_create(user=user, name="Bench")
        fields = {"type": "IMAGE", "file_size": 1, "mime_type": "image/jpeg", "created_by": user}
        self.assets = [
            IpAsset.objects.get_or_create(storage_key=f"bench/ingest/{n}", defaults={"title": f"A{n}", **fields})[0]
            for n in range(100)
        ]
        start = datetime(2025, 1, 1, tzinfo=UTC)
        self.licenses = {}
        for asset in self.assets[:50]:
            license = License.objects.filter(ip_asset=asset).first() or License.objects.create(
                brand=brand, ip_asset=asset, start_date=start, end_date=start.replace(year=2030), status="ACTIVE"
            )
            self.licenses[asset.pk] = license.pk
        self.client = Client()
        self.client.force_login(user)
        self.rng = random.Random(11)
        self.workers: list[subprocess.Popen] = []

    # --- events --------------------------------------------------------------------------

    def event(self, n: int) -> dict:
        asset = self.assets[self.rng.randrange(len(self.assets))]
        session = self.rng.randrange(5000)
        props = {"userAgent": USER_AGENTS[self.rng.randrange(len(USER_AGENTS))], "n": n}
        if n < 5000:  # the sessions' first events carry where the visitor came from
            session = n
            props |= {"referrer": "https://www.google.com/search?q=bench", "utmSource": "news", "utmMedium": "email"}
        body = {"event_type": "asset_viewed", "source": "web", "ip_asset_id": asset.pk, "session_id": f"b{session}"}
        if asset.pk in self.licenses and self.rng.random() < 0.66:
            body["license_id"] = self.licenses[asset.pk]
        return body | {"props": props}

    def post_all(self, count: int, per_request: int) -> float:
        import json

        began = time.perf_counter()
        for first in range(0, count, per_request):
            body = {"events": [self.event(n) for n in range(first, min(count, first + per_request))]}
            response = self.client.post("/api/events/", json.dumps(body), content_type="application/json")
            assert response.status_code == 202, response.content[:300]
        return time.perf_counter() - began

    # --- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE events CASCADE")
            cursor.execute("VACUUM ANALYZE events, attribution")
        self.redis.flushdb()

    def pending(self) -> bool:
        """Whether any event is pending. Not count(*): the statistics (taken when every
        event was pending) make that a parallel scan, ~6 ms of CPU per poll."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM events WHERE enrich_pending)")
            return cursor.fetchone()[0]

    def wait_enriched(self, timeout: float = 1800) -> float:
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for the enrichment")
            time.sleep(0.05)
        return time.time()

    def check(self, count: int) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE enriched_at IS NOT NULL AND props_json ? 'device' "
                "AND props_json ? 'session' AND props_json ? 'asset_snapshot'), "
                "(SELECT count(*) FROM attribution) FROM events"
            )
            total, enriched, attributions = cursor.fetchone()
        assert total == enriched == attributions == count, (total, enriched, attributions, count)

    # --- workers -------------------------------------------------------------------------

    def start_workers(self, n: int = 2) -> None:
        from rq import Worker

        args = [PYTHON, "manage.py", "rqworker", "--worker-class", "jobs.rq_classes.DjangoSimpleWorker", "default"]
        env = child_env(DATABASE_URL=self.db_url, REDIS_URL=os.environ["REDIS_URL"], LOG_LEVEL="WARNING")
        self.workers = [
            subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(n)
        ]
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=self.redis)) < n:
            if time.monotonic() > deadline:
                raise SystemExit("workers did not start")
            time.sleep(0.1)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=60)
        self.workers = []

    def first_job_start(self, job_ids: list[str]) -> float:
        from jobs.rq_classes import JSONJob

        starts = []
        for job_id in job_ids:
            job = JSONJob.fetch(job_id, connection=self.redis)
            if job.started_at:
                starts.append(job.started_at.replace(tzinfo=UTC).timestamp())
        return min(starts)

    # --- modes ---------------------------------------------------------------------------

    def end_to_end(self, count: int, per_request: int) -> tuple[float, float]:
        self.reset()
        self.start_workers()
        try:
            began = time.time()
            posting = self.post_all(count, per_request)
            ended = self.wait_enriched()
        finally:
            self.stop_workers()
        self.check(count)
        return count / (ended - began), count / posting

    def drain(self, count: int, per_request: int) -> float:
        from jobs.api import get_queue

        self.reset()
        self.post_all(count, per_request)
        queued = get_queue("default").get_job_ids()
        self.start_workers()
        try:
            ended = self.wait_enriched()
        finally:
            self.stop_workers()
        self.check(count)
        return count / (ended - self.first_job_start(queued[:50]))


def one_job_per_event():
    """`record_events` as a one-job-per-event system would do it (swapped into the view)."""
    from django.db import transaction

    from jobs.api import enqueue
    from yesgoddess.analytics.ingest import NewEvent, insert_events, remember_sessions

    def record_events(events: list[NewEvent]) -> list[int]:
        remember_sessions(events)
        with transaction.atomic():
            insert_events(events)
            for event in events:
                enqueue("analytics-jobs.enrich-event", event_id=event.id)
        return [event.id for event in events]

    return record_events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--baseline-events", type=int, default=10_000, help="events of the one-job-per-event runs")
    parser.add_argument("--per-request", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the batched runs (the median is reported)")
    options = parser.parse_args()
    db_url = prepare_bench_db(BENCH_DB)
    setup_django(DATABASE_URL=db_url)
    from django.conf import settings

    import yesgoddess.analytics.views as views

    bench = Bench(db_url)
    print(
        f"analytics ingest: {options.events:,} events posted {options.per_request} per request, "
        f"enriched by 2 SimpleWorkers (flush batch {settings.ANALYTICS_ENRICH_BATCH}), {options.rounds} rounds; "
        f"one-job-per-event with {options.baseline_events:,} events"
    )
    rounds = []
    for n in range(options.rounds):
        e2e, post = bench.end_to_end(options.events, options.per_request)
        drain = bench.drain(options.events, options.per_request)
        rounds.append((e2e, post, drain))
        print(f"  round {n + 1}: end to end {e2e:,.0f} ev/s (posting {post:,.0f}), drain {drain:,.0f} ev/s")
    batched_e2e, batched_post, batched_drain = (median([r[i] for r in rounds]) for i in range(3))
    original = views.record_events
    views.record_events = one_job_per_event()
    try:
        single_e2e, single_post = bench.end_to_end(options.baseline_events, options.per_request)
        single_drain = bench.drain(options.baseline_events, options.per_request)
    finally:
        views.record_events = original
    bench.reset()
    print(f"{'mode':22} {'end to end ev/s':>16} {'posting ev/s':>13} {'drain ev/s':>11}")
    print(f"{'batched (median)':22} {batched_e2e:16,.0f} {batched_post:13,.0f} {batched_drain:11,.0f}")
    print(f"{'one job per event':22} {single_e2e:16,.0f} {single_post:13,.0f} {single_drain:11,.0f}")
    print(f"{'ratio':22} {batched_e2e / single_e2e:15.1f}x {'':13} {batched_drain / single_drain:10.1f}x")
    print("goals: >= 5,000 events/s enriched, >= 10x one job per event")


if __name__ == "__main__":
    main()
