"""Jobs next to the domain, and the admin's safe actions (issue 22, points 3 and 4).

- Every job is filed under the objects its `<name>_id` arguments name (`jobs.api.jobs_for`):
  an asset's admin page lists its jobs, their state and a failed one's error; the
  django-rq pages name each job and link its objects.
- Admin actions go through the API's own services and really run, through real workers:
  rescan / regenerate assets, resume a paused campaign, retry a failed royalty run, and
  requeue the failed jobs of one job name (a page and a command).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django_rq.settings import get_queues_map
from redis.exceptions import ConnectionError as RedisConnectionError

from jobs.api import OBJECT_INDEX_KEEP, enqueue, get_queue, jobs_for, redis_connection
from jobs.rq_classes import JSONJob
from yesgoddess.assets.models import IpAsset
from yesgoddess.campaigns import services as campaign_services
from yesgoddess.campaigns.models import CampaignStatus, EmailCampaign, RecipientStatus
from yesgoddess.core.admin_tools import jobs_table
from yesgoddess.core.models import AuditEvent
from yesgoddess.royalties.models import RoyaltyRun
from yesgoddess.royalties.services import create_run, mark_failed

from .conftest import SIMPLE, manage
from .license_factories import make_asset, make_creator, make_license, make_user
from .media.samples import make_jpeg

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    return get_user_model().objects.create_superuser("ops", "ops@example.test", "pw")


@pytest.fixture
def staff_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def act(client: Client, model, action: str, *objs) -> list[str]:
    """Run admin action `action` on `objs` from the list page; return the messages shown."""
    response = client.post(
        changelist_url(model),
        {"action": action, "_selected_action": [str(obj.pk) for obj in objs]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def failure_line(job_id: str) -> str:
    """The last line of a failed job's traceback, as RQ keeps it."""
    result = JSONJob.fetch(job_id, connection=redis_connection()).latest_result()
    return result.exc_string.strip().splitlines()[-1]


def stored_jpeg(tmp_path: Path, name: str = "photo.jpg") -> str:
    path = make_jpeg(tmp_path / name, (640, 480))
    return default_storage.save(f"originals/{name}", ContentFile(path.read_bytes()))


# --- jobs filed by object ---------------------------------------------------------------------


def test_jobs_are_filed_under_the_objects_their_arguments_name_newest_first():
    first = enqueue("test-reject-input", user_id=41)
    second = enqueue("test-reject-input", user_id=41)
    enqueue("test-reject-input", user_id=42)
    found = jobs_for("user_id", 41)
    assert [job.id for job in found] == [second, first]
    assert {(job.name, job.status, job.queue) for job in found} == {("test-reject-input", "queued", "default")}
    assert jobs_for("user_id", 43) == []


def test_a_deduplicated_enqueue_files_nothing_twice_and_the_index_is_bounded():
    job_id = enqueue("royalty-calculation", dedup_key="run-7", run_id=7)
    assert enqueue("royalty-calculation", dedup_key="run-7", run_id=7) == job_id
    assert [job.id for job in jobs_for("run_id", 7)] == [job_id]
    for _ in range(OBJECT_INDEX_KEEP + 5):
        enqueue("test-reject-input", user_id=9)
    assert redis_connection().zcard("jobs:by-arg:user_id:9") == OBJECT_INDEX_KEEP


def test_a_job_of_a_rolled_back_transaction_is_filed_nowhere():
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("test-reject-input", user_id=77)
        raise RuntimeError("roll back")
    assert jobs_for("user_id", 77) == []


# --- an asset's jobs, and a failed job traced to its asset --------------------------------


def test_an_asset_page_shows_its_jobs_and_the_error_of_a_failed_one(staff_client, run_worker):
    # The original is gone from storage: the scan fails for good, with a reason.
    asset = make_asset(title="Lost file", status="PROCESSING", scan_status="ERROR")
    assert act(staff_client, IpAsset, "rescan", asset) == [f"rescan queued for asset(s) {asset.pk}."]
    [queued] = jobs_for("asset_id", asset.pk)
    assert (queued.name, queued.status) == ("asset-virus-scan", "queued")
    page = staff_client.get(change_url(asset)).content.decode()
    assert "asset-virus-scan" in page and "queued" in page

    run_worker("critical")
    [failed] = jobs_for("asset_id", asset.pk)
    assert failed.status == "failed" and failed.error == failure_line(failed.id)
    page = staff_client.get(change_url(asset)).content.decode()
    assert "failed" in page and escape(failed.error) in page
    index = get_queues_map().get("critical")
    assert reverse("admin:django_rq_job_detail", args=[index, failed.id]) in page

    # From the django-rq panel back to the asset: the failed list and the job's page.
    listing = staff_client.get(f"/admin/django_rq/dashboard/queues/{index}/failed/").content.decode()
    assert "asset-virus-scan" in listing and change_url(asset) in listing
    assert escape(failed.error) in listing
    detail = staff_client.get(f"/admin/django_rq/dashboard/queues/{index}/{failed.id}/").content.decode()
    assert change_url(asset) in detail and "asset-virus-scan" in detail


def test_the_job_lists_of_the_panel_name_each_job_and_link_its_object(staff_client):
    asset = make_asset()
    enqueue("asset-virus-scan", asset_id=asset.pk)
    index = get_queues_map().get("critical")
    page = staff_client.get(f"/admin/django_rq/dashboard/queues/{index}/").content.decode()
    assert "asset-virus-scan" in page and change_url(asset) in page


def test_an_unreachable_redis_costs_the_jobs_table_not_the_page():
    def redis_down() -> list:
        raise RedisConnectionError("Connection refused")

    assert jobs_table(redis_down) == "Jobs unavailable: Redis did not answer (ConnectionError)."


# --- rescan and regenerate ------------------------------------------------------------------


def test_rescan_action_scans_again_through_a_real_worker_once_however_often_clicked(
    staff, staff_client, run_worker, tmp_path
):
    asset = make_asset(status="PROCESSING", scan_status="ERROR")
    IpAsset.objects.filter(pk=asset.pk).update(storage_key=stored_jpeg(tmp_path))
    act(staff_client, IpAsset, "rescan", asset)
    act(staff_client, IpAsset, "rescan", asset)  # a second click while the first is queued
    assert get_queue("critical").count == 1
    asset.refresh_from_db()
    assert asset.scan_status == "PENDING"
    audit = AuditEvent.objects.filter(action="ASSET_RESCAN_REQUESTED", entity_id=str(asset.pk))
    assert audit.count() == 2 and {event.actor_id for event in audit} == {staff.pk}

    run_worker("critical")
    asset.refresh_from_db()
    assert asset.scan_status == "CLEAN"
    names = {job.name: job.status for job in jobs_for("asset_id", asset.pk)}
    assert names["asset-virus-scan"] == "finished"
    assert names["asset-thumbnail-generation"] == "queued"  # a clean scan starts processing


def test_rescan_action_refuses_an_infected_asset(staff_client):
    infected = make_asset(status="REJECTED", scan_status="INFECTED")
    deleted = make_asset(scan_status="ERROR", deleted_at=timezone.now())
    shown = act(staff_client, IpAsset, "rescan", infected, deleted)
    assert shown == [f"Refused, asset {infected.pk}: The asset is infected and quarantined; it cannot be rescanned."]
    assert get_queue("critical").count == 0
    infected.refresh_from_db()
    assert infected.scan_status == "INFECTED"


def test_regenerate_action_remakes_the_derivatives_through_a_real_worker(staff_client, run_worker, tmp_path):
    asset = make_asset(status="REVIEW", scan_status="CLEAN")
    IpAsset.objects.filter(pk=asset.pk).update(storage_key=stored_jpeg(tmp_path))
    act(staff_client, IpAsset, "regenerate", asset)
    act(staff_client, IpAsset, "regenerate", asset)  # deduplicated per asset while queued
    names = sorted(job.name for job in jobs_for("asset_id", asset.pk))
    assert names == [
        "asset-format-conversion",
        "asset-metadata-extraction",
        "asset-thumbnail-generation",
        "asset-virus-scan-finalize",
    ]
    run_worker("media")
    asset.refresh_from_db()
    assert set(asset.metadata["thumbnails"]["sizes"]) == {"small", "medium", "large"}
    assert asset.metadata["extracted"]
    assert {job.status for job in jobs_for("asset_id", asset.pk)} == {"finished"}


def test_regenerate_action_refuses_an_asset_not_scanned_clean(staff_client):
    pending = make_asset(status="PROCESSING", scan_status="PENDING")
    shown = act(staff_client, IpAsset, "regenerate", pending)
    assert shown == [f"Refused, asset {pending.pk}: The asset has not passed the virus scan (scan status PENDING)."]
    assert get_queue("media").count == 0


# --- resume a paused campaign -----------------------------------------------------------------


def test_resume_action_sends_the_rest_of_a_paused_campaign_through_a_real_worker(staff_client, run_worker):
    campaign = campaign_services.create_campaign(
        name="Spring",
        subject="Spring licensing is open",
        template="campaign_announcement",
        content={"headline": "Open", "body": "Show your work."},
        batch_size=10,
        messages_per_hour=100_000,
    )
    campaign_services.add_recipients(campaign, [{"email": f"c{n}@example.test"} for n in range(3)])
    EmailCampaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.PAUSED, status_reason="paused by ops")
    draft = campaign_services.create_campaign(
        name="Draft", subject="Later", template="campaign_announcement", content={"headline": "x", "body": "y"}
    )
    shown = act(staff_client, EmailCampaign, "resume", campaign, draft)
    assert f"Campaign {campaign.pk} resumed (SCHEDULED)." in shown
    assert f"Campaign {draft.pk} refused: The campaign is DRAFT; only a PAUSED or FAILED one can resume." in shown
    # A second click finds it no longer paused: nothing queued twice.
    act(staff_client, EmailCampaign, "resume", campaign)
    assert [job.name for job in jobs_for("campaign_id", campaign.pk)] == ["email-campaign"]

    run_worker("bulk", worker_class=SIMPLE)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED and campaign.sent_count == 3
    assert set(campaign.recipients.values_list("status", flat=True)) == {RecipientStatus.SENT}
    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT


# --- retry a failed royalty run -----------------------------------------------------------------


def test_retry_action_calculates_a_failed_run_through_a_real_worker(staff, staff_client, run_worker):
    yesterday = timezone.localdate() - timedelta(days=1)
    start = yesterday - timedelta(days=29)
    creator = make_creator()
    make_license(
        asset=make_asset((creator, 10_000)),
        start=timezone.now() - timedelta(days=60),
        end=timezone.now() + timedelta(days=300),
        fee_cents=360_000,
    )
    run = create_run(start, yesterday, staff.pk)
    mark_failed(run.pk, "RuntimeError: database went away")
    other = create_run(start - timedelta(days=40), start - timedelta(days=11), staff.pk)  # still DRAFT

    shown = act(staff_client, RoyaltyRun, "retry_failed", run, other)
    assert any(text.startswith(f"Run {run.pk}: calculation queued") for text in shown)
    assert f"Refused: Only a FAILED run can be retried; run {other.pk} is DRAFT." in shown
    act(staff_client, RoyaltyRun, "retry_failed", run)  # second click: the same job
    assert [job.name for job in jobs_for("run_id", run.pk)] == ["royalty-calculation"]
    assert jobs_for("run_id", other.pk) == []

    run_worker("default")
    run.refresh_from_db()
    assert run.status == RoyaltyRun.Status.CALCULATED and run.total_royalties_cents > 0
    assert run.statements.count() == 1
    assert AuditEvent.objects.filter(action="royalty.run.retry_requested", entity_id=str(run.pk), actor=staff).exists()
    page = staff_client.get(change_url(run)).content.decode()
    assert "royalty-calculation" in page and "finished" in page


# --- requeue the failed jobs of one job name -------------------------------------------------------


def failed_ids(queue: str = "default") -> set[str]:
    return set(get_queue(queue).failed_job_registry.get_job_ids())


def test_requeue_page_requeues_one_job_names_failures_and_only_those(staff_client, run_worker):
    User = get_user_model()
    a1 = enqueue("test-reject-input", user_id=990001)
    a2 = enqueue("test-reject-input", user_id=990002)
    b = enqueue("royalty-calculation", run_id=990003)
    run_worker("default")
    assert failed_ids() == {a1, a2, b}
    page = staff_client.get("/admin/jobs/failed/").content.decode()
    assert "test-reject-input" in page and "Requeue 2" in page and "Requeue 1" in page
    assert "user 990002 does not exist" in page or "user 990001 does not exist" in page
    index = get_queues_map().get("default")
    panel = staff_client.get(f"/admin/django_rq/dashboard/queues/{index}/failed/").content.decode()
    assert "/admin/jobs/failed/" in panel

    # What made them fail is fixed; requeued, they run again and succeed.
    for pk in (990001, 990002):
        User.objects.create_user(f"u{pk}", id=pk)
    response = staff_client.post("/admin/jobs/failed/", {"name": "test-reject-input"}, follow=True)
    assert "Requeued 2 failed test-reject-input job(s)." in [str(m) for m in response.context["messages"]]
    assert failed_ids() == {b}
    assert set(get_queue("default").get_job_ids()) == {a1, a2}
    run_worker("default")
    assert {job.status for job in jobs_for("user_id", 990001) + jobs_for("user_id", 990002)} == {"finished"}
    assert failed_ids() == {b}
    # Nothing left of that name: a second requeue does nothing.
    response = staff_client.post("/admin/jobs/failed/", {"name": "test-reject-input"}, follow=True)
    assert "Requeued 0 failed test-reject-input job(s)." in [str(m) for m in response.context["messages"]]


def test_requeue_page_refuses_bad_input_and_non_staff(staff_client):
    response = staff_client.post("/admin/jobs/failed/", {"name": "no-such-job"})
    assert response.status_code == 400 and "Unknown job" in response.json()["error"]
    assert staff_client.post("/admin/jobs/failed/", {}).status_code == 400
    assert staff_client.put("/admin/jobs/failed/").status_code == 405
    member = Client()
    member.force_login(make_user())
    for client in (Client(), member):
        for response in (client.get("/admin/jobs/failed/"), client.post("/admin/jobs/failed/", {"name": "ping"})):
            assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_requeue_failed_command_lists_and_requeues_one_name(run_worker):
    failed = enqueue("royalty-calculation", run_id=990004)
    kept = enqueue("test-reject-input", user_id=990005)
    run_worker("default")
    listed = manage("requeue_failed", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "royalty-calculation" in listed.stdout and "Royalty run 990004 does not exist" in listed.stdout
    result = manage("requeue_failed", "royalty-calculation")
    assert result.returncode == 0 and "requeued 1 failed royalty-calculation job(s)" in result.stdout
    assert get_queue("default").get_job_ids() == [failed] and failed_ids() == {kept}
    unknown = manage("requeue_failed", "nope")
    assert unknown.returncode != 0 and "Unknown job 'nope'" in unknown.stderr
