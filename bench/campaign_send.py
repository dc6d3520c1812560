"""email-campaign: 10,000 recipients to a real SMTP server on loopback (aiosmtpd, in its
own process), our batch job against naive sends, in the same run, rate limit off.

- ours: the `email-campaign` chain run by real RQ workers (DjangoSimpleWorker; `--workers`,
  default 2, with EMAIL_CAMPAIGN_PARALLEL_BATCHES set to match, so helper batch jobs run
  on the second worker): claim a batch of `batch_size` recipients, render, send over
  EMAIL_SEND_CONNECTIONS connections, settle, queue the next batch job. Timed from the
  campaign's send_started_at to send_completed_at (the workers' start-up excluded), and
  wall time including it.
- naive: what a straightforward loop does (the original's per-recipient
  sendTransactional): for each recipient its own suppression/opt-out check, the same
  rendered message sent over a new SMTP connection, its own status update.
- connection-only: the same pre-rendered messages, one new connection per message and no
  database work of its own (the email backend still records its SENT events per
  connection): what connection reuse alone is worth.

Rounds of the three, medians reported (the machine may be shared: a round's phases run
one after the other, so a ratio is only as steady as the load).
Usage: python bench/campaign_send.py [--recipients 10000] [--batch 200] [--naive 2000] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from datetime import datetime

import _common
from _common import PYTHON, ROOT, child_env, setup_django

_common.BENCH_DB = "yesgoddess_bench_campaigns"
_common.BENCH_DB_URL = f"postgres://postgres@127.0.0.1:5432/{_common.BENCH_DB}"
# Its own Redis database: the worker must not meet other benchmarks' jobs.
REDIS_URL = "redis://127.0.0.1:6379/5"
SIMPLE = "jobs.rq_classes.DjangoSimpleWorker"


class Server:
    """tests/smtp_server.py in a child process; `stats()` asks it for its counts."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "tests/smtp_server.py"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        line = self.process.stdout.readline().split()
        assert line and line[0] == "READY", line
        self.port = int(line[1])

    def command(self, word: str) -> dict:
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stats(self) -> dict:
        return self.command("stats")

    def reset(self) -> None:
        self.command("reset")

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def make_campaign(recipients: int, batch: int, tag: str) -> int:
    from django.db import connection

    from yesgoddess.campaigns import services

    campaign = services.create_campaign(
        name=f"bench {tag}",
        subject="Spring licensing is open",
        template="campaign_announcement",
        content={
            "headline": "Spring licensing is open",
            "body": "Brands are looking for new work this season.\nShow yours before the briefs close.",
            "cta_label": "See briefs",
            "cta_url": "https://app.example/briefs",
        },
        batch_size=batch,
        messages_per_hour=10_000_000,  # the highest: no pause between batches, helpers allowed
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaign_recipients (campaign_id, email, status, personalization, error, message_id, "
            "created_at) SELECT %s, 'r' || g || '-' || %s || '@example.com', 'PENDING', "
            "jsonb_build_object('user_name', 'Reader ' || g), '', '', now() FROM generate_series(1, %s) g",
            [campaign.pk, tag, recipients],
        )
        cursor.execute("ANALYZE campaign_recipients")
    services.refresh_counters(campaign.pk)
    return campaign.pk


def run_ours(campaign_id: int, db_url: str, port: int, workers: int) -> dict:
    """The campaign sent by `workers` SimpleWorker processes on `bulk` (with more than
    one, EMAIL_CAMPAIGN_PARALLEL_BATCHES = workers: helper batch jobs run alongside the
    chain). Workers run until the campaign completes (a burst worker could leave while
    the chain's next job is being queued), then are stopped."""
    from yesgoddess.campaigns import services
    from yesgoddess.campaigns.models import EmailCampaign
    from yesgoddess.core.redis import redis_connection

    redis_connection().flushdb()
    services.send(campaign_id)
    env = child_env(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS_URL,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        EMAIL_RATE_LIMIT_PER_SECOND="0",
        EMAIL_CAMPAIGN_PARALLEL_BATCHES=str(workers),
        LOG_LEVEL="WARNING",
    )
    began = time.perf_counter()
    processes = [
        subprocess.Popen(
            [PYTHON, "manage.py", "rqworker", "--worker-class", SIMPLE, "bulk"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 1800
        while EmailCampaign.objects.get(pk=campaign_id).status != "COMPLETED":
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise SystemExit("the campaign did not complete")
            time.sleep(0.05)
        wall = time.perf_counter() - began
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    campaign = EmailCampaign.objects.get(pk=campaign_id)
    sending: datetime = campaign.send_completed_at - campaign.send_started_at
    return {"seconds": sending.total_seconds(), "wall": wall, "sent": campaign.sent_count}


def run_naive(campaign_id: int, limit: int) -> dict:
    from django.core.mail import get_connection

    from yesgoddess.campaigns import services
    from yesgoddess.campaigns.models import CampaignRecipient, EmailCampaign
    from yesgoddess.emailing.services import blocked

    campaign = EmailCampaign.objects.get(pk=campaign_id)
    rows = list(CampaignRecipient.objects.filter(campaign_id=campaign_id).order_by("pk")[:limit])
    began = time.perf_counter()
    sent = 0
    for row in rows:
        if blocked([row.email], services.CATEGORY):
            continue
        message, message_id = services.campaign_message(campaign, row)
        with get_connection() as connection:  # a new SMTP connection per message
            sent += connection.send_messages([message])
        CampaignRecipient.objects.filter(pk=row.pk).update(status="SENT", message_id=message_id)
    return {"seconds": time.perf_counter() - began, "sent": sent}


def run_connection_only(campaign_id: int, limit: int) -> dict:
    from django.core.mail import get_connection

    from yesgoddess.campaigns import services
    from yesgoddess.campaigns.models import CampaignRecipient, EmailCampaign

    campaign = EmailCampaign.objects.get(pk=campaign_id)
    rows = CampaignRecipient.objects.filter(campaign_id=campaign_id).order_by("pk")[:limit]
    messages = [services.campaign_message(campaign, row)[0] for row in rows]
    began = time.perf_counter()
    sent = 0
    for message in messages:
        with get_connection() as connection:
            sent += connection.send_messages([message])
    return {"seconds": time.perf_counter() - began, "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--naive", type=int, default=2_000, help="messages per naive run (a rate: a sample is enough)")
    parser.add_argument("--rounds", type=int, default=3, help="ours, naive, connection-only, repeated; medians")
    parser.add_argument("--workers", type=int, default=2, help="bulk workers sending ours (1: the chain alone)")
    options = parser.parse_args()

    server = Server()
    db_url = _common.prepare_bench_db()
    setup_django(
        DATABASE_URL=db_url,
        REDIS_URL=REDIS_URL,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(server.port),
        EMAIL_RATE_LIMIT_PER_SECOND="0",
        EMAIL_BATCH_SIZE=str(options.batch),
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE deferred_emails, email_digests, campaign_recipients, email_campaigns CASCADE")

    def rate(figures: dict) -> float:
        return figures["sent"] / figures["seconds"]

    print(
        f"email-campaign: {options.recipients} recipients per campaign, batch_size {options.batch}, "
        f"{options.workers} bulk worker(s), "
        f"loopback aiosmtpd in its own process; naive runs of {options.naive} messages; {options.rounds} rounds"
    )
    ratios, wall_ratios, ours_rates, naive_rates, bare_rates = [], [], [], [], []
    try:
        for round_no in range(1, options.rounds + 1):
            ours_id = make_campaign(options.recipients, options.batch, f"ours{round_no}")
            server.reset()
            ours = run_ours(ours_id, db_url, server.port, options.workers)
            ours_server = server.stats()

            naive_id = make_campaign(options.naive, options.batch, f"naive{round_no}")
            server.reset()
            naive = run_naive(naive_id, options.naive)
            naive_server = server.stats()

            server.reset()
            bare = run_connection_only(naive_id, options.naive)
            bare_server = server.stats()

            wall_rate = ours["sent"] / ours["wall"]
            ratios.append(rate(ours) / rate(naive))
            wall_ratios.append(wall_rate / rate(naive))
            ours_rates.append(rate(ours))
            naive_rates.append(rate(naive))
            bare_rates.append(rate(bare))
            print(
                f"  round {round_no}: ours {ours['sent']} msgs in {ours['seconds']:.2f} s = {rate(ours):,.0f} msg/s "
                f"(with worker start-up {wall_rate:,.0f}), {ours_server['connections']} connections; "
                f"naive {rate(naive):,.0f} msg/s, {naive_server['connections']} connections; "
                f"connection-only {rate(bare):,.0f} msg/s, {bare_server['connections']} connections; "
                f"ours/naive {ratios[-1]:.1f}x"
            )
    finally:
        server.stop()
    print(
        f"  median: ours {_common.median(ours_rates):,.0f} msg/s, naive {_common.median(naive_rates):,.0f} msg/s, "
        f"connection-only {_common.median(bare_rates):,.0f} msg/s; ours/naive {_common.median(ratios):.1f}x "
        f"(with worker start-up {_common.median(wall_ratios):.1f}x), "
        f"ours/connection-only {_common.median(ours_rates) / _common.median(bare_rates):.1f}x"
    )
    print("goal: ours >= 5x naive")


if __name__ == "__main__":
    main()
