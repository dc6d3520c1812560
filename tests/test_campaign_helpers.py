"""email-campaign.helper: batches of one campaign sent by several `bulk` workers at once
(EMAIL_CAMPAIGN_PARALLEL_BATCHES), each recipient once, the chain completing last."""

from __future__ import annotations

from collections import Counter

import pytest

from jobs.api import get_queue
from jobs.handlers import campaigns as campaign_jobs
from jobs.rq_classes import JSONJob
from yesgoddess.campaigns import sending
from yesgoddess.campaigns.models import CampaignStatus, EmailCampaign, RecipientStatus
from yesgoddess.core.errors import InvalidInput

from .conftest import SIMPLE, wait_until, worker_env
from .smtp_server import SmtpServer
from .test_campaigns import make_campaign, start, statuses

pytestmark = pytest.mark.django_db(transaction=True)  # jobs reach Redis as they are enqueued

FAST = 10_000_000  # messages per hour: no pause between batches


def queued_names(queue_name: str = "bulk") -> Counter:
    queue = get_queue(queue_name)
    return Counter(JSONJob.fetch(i, connection=queue.connection).meta["job_name"] for i in queue.job_ids)


@pytest.fixture
def smtp(settings):
    with SmtpServer() as server:
        yield server.use_for_django(settings)


def test_helpers_are_queued_only_when_the_rate_allows_and_more_than_a_batch_waits(smtp, settings):
    settings.EMAIL_CAMPAIGN_PARALLEL_BATCHES = 3
    paced = make_campaign([f"p{i}@example.com" for i in range(20)], batch_size=4, messages_per_hour=1000)
    start(paced)
    assert campaign_jobs.send_campaign_batch(campaign_id=paced.pk)["helpers"] == []

    fast = make_campaign([f"f{i}@example.com" for i in range(20)], batch_size=4, messages_per_hour=FAST)
    start(fast)
    result = campaign_jobs.send_campaign_batch(campaign_id=fast.pk)
    assert len(result["helpers"]) == 2
    # the fast chain's next run and two helpers (the paced chain's next run is scheduled)
    assert queued_names() == {"email-campaign": 1, "email-campaign.helper": 2}
    # Queued again while they wait: deduplicated per slot.
    assert campaign_jobs.send_campaign_batch(campaign_id=fast.pk)["helpers"] == result["helpers"]

    small = make_campaign([f"s{i}@example.com" for i in range(6)], batch_size=4, messages_per_hour=FAST)
    start(small)
    assert campaign_jobs.send_campaign_batch(campaign_id=small.pk)["helpers"] == []  # 2 left: one batch


def test_a_helper_sends_one_batch_and_the_chain_completes_only_after_it(smtp, settings, monkeypatch):
    settings.EMAIL_CAMPAIGN_PARALLEL_BATCHES = 2
    monkeypatch.setattr(sending, "HELPER_WAIT", 0.3)
    emails = [f"h{i}@example.com" for i in range(12)]
    campaign = make_campaign(emails, batch_size=4, messages_per_hour=FAST)
    start(campaign)

    first = campaign_jobs.send_campaign_batch(campaign_id=campaign.pk)
    [helper_id] = first["helpers"]
    helper = campaign_jobs.send_campaign_helper_batch(campaign_id=campaign.pk)
    assert (helper["sent"], helper["pending"]) == (4, 4)
    last = campaign_jobs.send_campaign_batch(campaign_id=campaign.pk)
    assert last["pending"] == 0
    # The helper's job is still queued (it ran inline above, not through a worker): the
    # chain does not complete while a helper may be sending, it looks again later.
    assert last["waiting_for_helpers"] is True and last["status"] == CampaignStatus.SENDING
    assert EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.SENDING

    JSONJob.fetch(helper_id, connection=get_queue("bulk").connection).delete()  # the helper has ended
    done = campaign_jobs.send_campaign_batch(campaign_id=campaign.pk)
    assert done["status"] == CampaignStatus.COMPLETED
    assert smtp.received_by() == Counter(emails)
    assert statuses(campaign) == {RecipientStatus.SENT: 12}


def test_a_helper_of_a_campaign_that_is_not_sending_sends_nothing(smtp, settings):
    campaign = make_campaign(["a@example.com", "b@example.com"], batch_size=4, messages_per_hour=FAST)
    result = campaign_jobs.send_campaign_helper_batch(campaign_id=campaign.pk)  # still a DRAFT
    assert result["stopped"] is True and smtp.message_count == 0
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.PAUSED)
    assert campaign_jobs.send_campaign_helper_batch(campaign_id=campaign.pk)["stopped"] is True
    assert smtp.message_count == 0 and statuses(campaign) == {RecipientStatus.PENDING: 2}
    with pytest.raises(InvalidInput, match="does not exist"):
        campaign_jobs.send_campaign_helper_batch(campaign_id=campaign.pk + 1000)


@pytest.mark.slow
def test_two_workers_send_one_campaign_together_each_recipient_once(background_worker, client):
    from .license_factories import make_user

    emails = [f"t{i}@example.com" for i in range(120)]
    with SmtpServer() as smtp:
        campaign = make_campaign(emails, batch_size=10, messages_per_hour=FAST)
        env = {**worker_env(), **smtp.worker_env(), "EMAIL_CAMPAIGN_PARALLEL_BATCHES": "2"}
        for _ in range(2):
            background_worker("bulk", worker_class=SIMPLE, env=env)
        client.force_login(make_user(is_staff=True))
        assert client.post(f"/api/campaigns/{campaign.pk}/send").status_code == 200
        wait_until(
            lambda: EmailCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.COMPLETED,
            timeout=120,
            what="the campaign to complete",
        )
        assert smtp.received_by() == Counter(emails)
    assert statuses(campaign) == {RecipientStatus.SENT: 120}
    registry = get_queue("bulk").finished_job_registry
    helpers = [
        job
        for job in JSONJob.fetch_many(registry.get_job_ids(), connection=registry.connection)
        if job is not None and job.meta.get("job_name") == "email-campaign.helper"
    ]
    assert sum(job.return_value()["sent"] for job in helpers) > 0  # the second worker sent batches too
