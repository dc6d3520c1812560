"""Issue 21, items 1-3: failures of ours never cost a user an upload.

A clamd outage is retried over about a day, the uploader is told processing is delayed
(not that the file is bad), the sweep rescans by itself once clamd answers again; a tool
that times out or is missing is retried and then shows a retryable error, never a
rejection; and every path of the pipeline ends in REVIEW, REJECTED with a reason, or an
error that a rescan or regenerate clears (the last test walks each one).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from jobs.api import JobArgumentError, enqueue, get_queue
from jobs.registry import HOUR, get_spec
from jobs.runtime import execute
from jobs.schedule import SCHEDULE
from yesgoddess.accounts.models import ApiToken
from yesgoddess.assets import processing, recovery, scanner
from yesgoddess.assets.models import AssetStatus, IpAsset, ScanStatus
from yesgoddess.assets.services import asset_json
from yesgoddess.core.errors import InvalidInput
from yesgoddess.media.errors import MachineFault
from yesgoddess.notifications.models import Notification

from .conftest import wait_until
from .media import samples
from .test_services import EICAR

pytestmark = pytest.mark.django_db(transaction=True)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
def uploader():
    return get_user_model().objects.create_user("maker", "maker@example.test", "pw")


@pytest.fixture
def admin():
    return get_user_model().objects.create_superuser("admin", "admin@example.test", "pw")


@pytest.fixture
def staff_api(admin) -> Callable[..., dict]:
    """An operator's POST to the asset API (staff may act on any asset)."""
    _, raw = ApiToken.objects.issue(admin)

    def post(path: str, body: dict | None = None) -> dict:
        response = Client().post(
            path, json.dumps(body or {}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
        )
        assert response.status_code == 202, response.content
        return response.json()

    return post


@pytest.fixture
def no_clamd(settings, tmp_path):
    """clamd is down: the socket it listens on has nobody behind it."""
    real = settings.CLAMD_SOCKET
    settings.CLAMD_SOCKET = str(tmp_path / "no-clamd.sock")
    yield real
    settings.CLAMD_SOCKET = real


def stored(user, path: Path, type: str, mime: str, **fields) -> IpAsset:
    key = default_storage.save(f"originals/t/{path.name}", ContentFile(path.read_bytes()))
    defaults = {"status": AssetStatus.PROCESSING, "scan_status": ScanStatus.PENDING}
    return IpAsset.objects.create(
        title=path.name,
        type=type,
        storage_key=key,
        file_size=path.stat().st_size,
        mime_type=mime,
        created_by=user,
        **{**defaults, **fields},
    )


def delay_notices(user) -> list[Notification]:
    return list(Notification.objects.filter(user=user, metadata__reason="delayed"))


def fresh(asset: IpAsset) -> IpAsset:
    return IpAsset.objects.get(pk=asset.pk)


def queued_scans() -> int:
    """Scan jobs on `critical` (notification deliveries queue there too)."""
    return sum(job.meta.get("job_name") == "asset-virus-scan" for job in get_queue("critical").get_jobs())


# --- item 1: a clamd outage ------------------------------------------------------------------


def test_scan_retries_back_off_over_about_a_day():
    intervals = get_spec("asset-virus-scan").retry_intervals
    assert 20 * HOUR <= sum(intervals) <= 26 * HOUR, sum(intervals) / HOUR
    assert list(intervals) == sorted(intervals)  # backoff: never shorter than the one before
    assert intervals[0] <= 30  # a blip is retried at once...
    assert max(intervals) <= HOUR  # ...and a recovered clamd is used within the hour


def test_outage_delays_the_scan_and_tells_the_uploader_once_that_the_file_is_fine(uploader, admin, no_clamd, tmp_path):
    asset = stored(uploader, samples.make_jpeg(tmp_path / "a.jpg", (64, 64)), "IMAGE", "image/jpeg")

    with pytest.raises(scanner.ScannerUnavailable):
        processing.scan_asset(asset.pk)
    delayed = fresh(asset)
    assert (delayed.status, delayed.scan_status) == (AssetStatus.PROCESSING, ScanStatus.PENDING)
    assert delayed.processing_error["scan"]["attempts"] == 1 and delayed.processing_error["scan"]["final"] is False
    assert delay_notices(uploader) == []  # one failed attempt may be a blip

    for _ in range(2):
        with pytest.raises(scanner.ScannerUnavailable):
            processing.scan_asset(asset.pk)
    [notice] = delay_notices(uploader)  # the first retry failed too: told once, not per attempt
    assert "delayed" in notice.title and "Nothing is wrong with your file" in notice.message
    assert "reject" not in (notice.title + notice.message).lower()
    shown = asset_json(fresh(asset))
    assert shown["processing_error"]["scan"]["attempts"] == 3 and shown["status"] == "PROCESSING"
    assert shown["retry"] == {"method": "POST", "path": f"/api/assets/{asset.pk}/rescan"}

    # RQ gives up after the last retry: scan ERROR, retryable, still not the file's fault.
    processing.record_scan_failure(asset.pk, "ScannerUnavailable: clamd is unreachable", "job-1")
    failed = fresh(asset)
    assert (failed.status, failed.scan_status) == (AssetStatus.PROCESSING, ScanStatus.ERROR)
    assert failed.scan_result["retryable"] is True and failed.processing_error["scan"]["final"] is True
    assert failed.rejection_reason is None and len(delay_notices(uploader)) == 1
    assert Notification.objects.filter(user=admin, metadata__asset_id=asset.pk).exists()
    assert "asset-virus-scan.sweep job rescans it" in mail.outbox[-1].body


def test_sweep_rescans_every_retryable_scan_error_once_clamd_answers(
    uploader, no_clamd, settings, tmp_path, run_worker
):
    def asset(name: str, **fields) -> IpAsset:
        return stored(uploader, samples.make_jpeg(tmp_path / name, (64, 64)), "IMAGE", "image/jpeg", **fields)

    outage = asset("outage.jpg")
    processing.record_scan_failure(outage.pk, "ScannerUnavailable: down", "job-1")
    legacy = asset("legacy.jpg", scan_status=ScanStatus.ERROR, scan_result={"error": "before the retryable mark"})
    refused = asset("refused.jpg")
    default_storage.delete(refused.storage_key)
    with pytest.raises(InvalidInput, match="missing from storage"):
        processing.scan_asset(refused.pk)  # not retryable: a person has to look
    deleted = asset("deleted.jpg")
    processing.record_scan_failure(deleted.pk, "ScannerUnavailable: down", "job-2")
    IpAsset.objects.filter(pk=deleted.pk).update(deleted_at=outage.created_at)
    clean = asset("clean.jpg", scan_status=ScanStatus.CLEAN, status=AssetStatus.REVIEW)

    # While clamd is down the sweep changes nothing.
    assert recovery.rescan_failed_scans() == {"scanner_answering": 0, "rescans_requested": 0, "waiting": 2}
    assert queued_scans() == 0

    settings.CLAMD_SOCKET = no_clamd  # clamd is back
    enqueue("asset-virus-scan.sweep")
    run_worker("scheduled", "critical", "media")

    for rescanned in (outage, legacy):
        done = fresh(rescanned)
        assert (done.status, done.scan_status) == (AssetStatus.REVIEW, ScanStatus.CLEAN), done.pk
        assert done.processing_error is None and done.delay_notified_at is None
    assert fresh(refused).scan_status == ScanStatus.ERROR  # left to a person
    assert fresh(deleted).scan_status == ScanStatus.ERROR and fresh(clean).status == AssetStatus.REVIEW
    # A second sweep finds nothing left to rescan.
    assert recovery.rescan_failed_scans() == {"scanner_answering": 1, "rescans_requested": 0, "waiting": 0}


def test_sweep_does_not_double_a_scan_that_is_still_queued(uploader, tmp_path):
    asset = stored(uploader, samples.make_jpeg(tmp_path / "a.jpg", (64, 64)), "IMAGE", "image/jpeg")
    processing.record_scan_failure(asset.pk, "ScannerUnavailable: down", "job-1")
    assert recovery.rescan_failed_scans()["rescans_requested"] == 1
    assert recovery.rescan_failed_scans()["rescans_requested"] == 1  # asked again...
    assert queued_scans() == 1  # ...but one scan job (deduplicated per asset)


def test_sweep_takes_no_arguments_and_is_scheduled():
    with pytest.raises(JobArgumentError):
        enqueue("asset-virus-scan.sweep", asset_id=1)
    [entry] = [e for e in SCHEDULE if e.job == "asset-virus-scan.sweep"]
    assert entry.cron == "*/10 * * * *" and entry.kwargs == {}


# --- item 2: tool timeouts and missing tools are the machine's fault ---------------------------


def test_tool_timeout_in_thumbnails_is_retried_never_rejected(uploader, admin, settings, tmp_path):
    video = samples.make_video(tmp_path / "v.mp4", size="320x240", seconds=2)
    asset = stored(uploader, video, "VIDEO", "video/mp4", scan_status=ScanStatus.CLEAN)
    settings.MEDIA_TOOL_TIMEOUT = 0.001  # the machine is far too busy for ffprobe

    with pytest.raises(MachineFault, match="timed out") as raised:
        execute("asset-thumbnail-generation", asset_id=asset.pk)  # what a worker runs
    assert not isinstance(raised.value, InvalidInput)  # so RQ retries it
    delayed = fresh(asset)
    assert delayed.status == AssetStatus.PROCESSING and delayed.rejection_reason is None
    assert delayed.processing_error["thumbnails"]["final"] is False
    assert not default_storage.exists(f"derivatives/{asset.pk}")


def test_missing_tool_in_metadata_is_retried_never_rejected(uploader, monkeypatch, tmp_path):
    audio = samples.make_audio(tmp_path / "a.mp3", seconds=1)
    asset = stored(uploader, audio, "AUDIO", "audio/mpeg", scan_status=ScanStatus.CLEAN)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a machine without ffprobe
    with pytest.raises(MachineFault, match="ffprobe is not installed"):
        processing.extract_asset_metadata(asset.pk)
    assert fresh(asset).status == AssetStatus.PROCESSING
    assert fresh(asset).processing_error["extracted"]["error"] == "ffprobe is not installed on this machine"


def slow_ffprobe(tmp_path: Path) -> str:
    """A PATH whose ffprobe is the real one on a machine too busy to answer in time."""
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    shim = bin_dir / "ffprobe"
    shim.write_text('#!/bin/sh\nsleep 3\nexec ffprobe "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.mark.slow
def test_tool_timeout_through_a_real_worker_is_retried_not_rejected(uploader, tmp_path, background_worker):
    asset = stored(uploader, samples.make_video(tmp_path / "v.mp4"), "VIDEO", "video/mp4", scan_status=ScanStatus.CLEAN)
    job_id = enqueue("asset-thumbnail-generation", asset_id=asset.pk)
    worker = background_worker(
        "media", with_scheduler=False, env={"PATH": slow_ffprobe(tmp_path), "MEDIA_TOOL_TIMEOUT": "1"}
    )
    wait_until(lambda: fresh(asset).processing_error, timeout=60, what="the delayed thumbnails")
    wait_until(lambda: job_id in get_queue("media").scheduled_job_registry.get_job_ids(), what="the retry")
    log = worker.kill()
    assert "job=asset-thumbnail-generation" in log and "outcome=failed-will-retry" in log
    assert "outcome=rejected" not in log
    after = fresh(asset)
    assert after.status == AssetStatus.PROCESSING and after.rejection_reason is None
    assert "timed out after 1 s" in after.processing_error["thumbnails"]["error"]


# --- item 3: every path ends in REVIEW, REJECTED with a reason, or a retryable error -------------


def run_pipeline(asset: IpAsset, run_worker) -> None:
    enqueue("asset-virus-scan", asset_id=asset.pk, dedup_key=f"asset-{asset.pk}")
    run_worker("critical", "media")


def path_clean(ctx) -> None:
    run_pipeline(ctx.asset, ctx.run_worker)


def path_infected(ctx) -> None:
    run_pipeline(ctx.replace(EICAR.encode(), "eicar.txt", "DOCUMENT", "text/plain"), ctx.run_worker)


def path_unreadable_image(ctx) -> None:
    good = samples.make_jpeg(ctx.tmp_path / "full.jpg", (1200, 900)).read_bytes()
    run_pipeline(ctx.replace(good[: len(good) // 3], "broken.jpg", "IMAGE", "image/jpeg"), ctx.run_worker)


def path_unreadable_office_document(ctx) -> None:
    run_pipeline(ctx.replace(b"PK\x03\x04 not really a zip", "memo.docx", "DOCUMENT", DOCX), ctx.run_worker)


def path_clamd_down_through_every_retry(ctx) -> None:
    real = ctx.settings.CLAMD_SOCKET
    ctx.settings.CLAMD_SOCKET = str(ctx.tmp_path / "down.sock")
    with pytest.raises(scanner.ScannerUnavailable):
        processing.scan_asset(ctx.asset.pk)
    processing.record_scan_failure(ctx.asset.pk, "ScannerUnavailable: clamd is unreachable", "job-1")
    ctx.settings.CLAMD_SOCKET = real


def path_original_missing_at_scan(ctx) -> None:
    content = default_storage.open(ctx.asset.storage_key).read()
    default_storage.delete(ctx.asset.storage_key)
    with pytest.raises(InvalidInput):
        processing.scan_asset(ctx.asset.pk)
    ctx.before_retry = lambda: default_storage.save(ctx.asset.storage_key, ContentFile(content))  # restored


def scanned_clean(ctx) -> None:
    # The scan's own paths are above; these run the media steps by hand, as RQ would.
    IpAsset.objects.filter(pk=ctx.asset.pk).update(scan_status=ScanStatus.CLEAN)


def path_thumbnail_tool_timeout(ctx) -> None:
    scanned_clean(ctx)
    ctx.settings.MEDIA_TOOL_TIMEOUT = 0.001
    with pytest.raises(MachineFault):
        processing.generate_thumbnails(ctx.asset.pk)
    ctx.settings.MEDIA_TOOL_TIMEOUT = 120
    processing.extract_asset_metadata(ctx.asset.pk)
    processing.record_thumbnail_failure(ctx.asset.pk, "MachineFault: ffprobe timed out", "job-t")
    assert processing.finish_processing(ctx.asset.pk) == {"moved_to_review": 0}


def path_metadata_tool_missing(ctx) -> None:
    scanned_clean(ctx)
    processing.generate_thumbnails(ctx.asset.pk)
    ctx.monkeypatch.setenv("PATH", str(ctx.tmp_path / "empty-bin"))
    with pytest.raises(MachineFault):
        processing.extract_asset_metadata(ctx.asset.pk)
    ctx.monkeypatch.undo()
    processing.record_metadata_failure(ctx.asset.pk, "MachineFault: ffprobe is not installed", "job-m")
    assert processing.finish_processing(ctx.asset.pk) == {"moved_to_review": 0}


def path_storage_lost_the_original_during_thumbnails(ctx) -> None:
    scanned_clean(ctx)
    content = default_storage.open(ctx.asset.storage_key).read()
    default_storage.delete(ctx.asset.storage_key)
    with pytest.raises(FileNotFoundError):
        processing.generate_thumbnails(ctx.asset.pk)
    processing.record_thumbnail_failure(ctx.asset.pk, "FileNotFoundError: originals/...", "job-t")
    ctx.before_retry = lambda: default_storage.save(ctx.asset.storage_key, ContentFile(content))


def path_finalize_failed_through_every_retry(ctx) -> None:
    scanned_clean(ctx)
    processing.generate_thumbnails(ctx.asset.pk)
    processing.extract_asset_metadata(ctx.asset.pk)
    processing.record_finalize_failure(ctx.asset.pk, "OperationalError: the database went away", "job-f")


PATHS = {
    "clean": (path_clean, "REVIEW"),
    "infected": (path_infected, "REJECTED"),
    "unreadable image (thumbnails)": (path_unreadable_image, "REJECTED"),
    "unreadable office document (metadata)": (path_unreadable_office_document, "REJECTED"),
    "clamd down through every retry": (path_clamd_down_through_every_retry, "ERROR"),
    "original missing at the scan": (path_original_missing_at_scan, "ERROR"),
    "thumbnail tool timed out": (path_thumbnail_tool_timeout, "ERROR"),
    "metadata tool missing": (path_metadata_tool_missing, "ERROR"),
    "storage lost the original during thumbnails": (path_storage_lost_the_original_during_thumbnails, "ERROR"),
    "finalize failed through every retry": (path_finalize_failed_through_every_retry, "ERROR"),
}


class PathContext:
    def __init__(self, uploader, tmp_path, settings, monkeypatch, run_worker) -> None:
        self.tmp_path, self.settings, self.monkeypatch, self.run_worker = tmp_path, settings, monkeypatch, run_worker
        self.uploader = uploader
        video = samples.make_video(tmp_path / "clip.mp4", size="320x240", seconds=2, with_audio=True)
        self.asset = stored(uploader, video, "VIDEO", "video/mp4")
        self.before_retry: Callable[[], object] = lambda: None

    def replace(self, content: bytes, name: str, type: str, mime: str) -> IpAsset:
        path = self.tmp_path / name
        path.write_bytes(content)
        self.asset = stored(self.uploader, path, type, mime)
        return self.asset


@pytest.mark.slow
@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_ends_in_review_rejected_or_an_error_a_retry_clears(
    path, uploader, admin, staff_api, tmp_path, settings, monkeypatch, run_worker
):
    drive, expected = PATHS[path]
    ctx = PathContext(uploader, tmp_path, settings, monkeypatch, run_worker)
    drive(ctx)
    asset = fresh(ctx.asset)
    shown = asset_json(asset)

    if expected == "REVIEW":
        assert asset.status == AssetStatus.REVIEW and asset.processing_error is None
        return
    if expected == "REJECTED":
        assert asset.status == AssetStatus.REJECTED and asset.rejection_reason
        assert asset.processing_error is None
        return
    # Our fault: not rejected, visible with how to retry, the uploader told it is delayed.
    assert asset.status == AssetStatus.PROCESSING and asset.rejection_reason is None
    assert any(entry["final"] for entry in asset.processing_error.values()), asset.processing_error
    assert shown["retry"] is not None and len(delay_notices(uploader)) == 1
    assert Notification.objects.filter(user=admin, metadata__asset_id=asset.pk).exists()

    ctx.before_retry()  # the operator fixed the cause
    hint = shown["retry"]
    staff_api(hint["path"], hint.get("body"))
    run_worker("critical", "media")
    retried = fresh(asset)
    assert (retried.status, retried.scan_status) == (AssetStatus.REVIEW, ScanStatus.CLEAN), retried.processing_error
    assert retried.processing_error is None and retried.delay_notified_at is None
