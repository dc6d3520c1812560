"""The asset pipeline end to end: upload over HTTP -> virus scan -> thumbnails and
metadata -> REVIEW, through real worker processes, real clamd, ffmpeg and poppler."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image

from jobs.api import enqueue, get_queue
from jobs.registry import get_spec
from yesgoddess.accounts.models import ApiToken
from yesgoddess.assets.models import AssetStatus, IpAsset, ScanStatus
from yesgoddess.notifications.models import Notification

from .conftest import FORKING, ROOT, wait_until, worker_env
from .media import samples
from .test_services import EICAR

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PIPELINE_QUEUES = ("critical", "media")


@pytest.fixture
def uploader():
    return get_user_model().objects.create_user("maker", "maker@example.test", "pw")


@pytest.fixture
def admin():
    return get_user_model().objects.create_superuser("admin", "admin@example.test", "pw")


@pytest.fixture
def api(uploader) -> tuple[Client, dict[str, str]]:
    _, raw = ApiToken.objects.issue(uploader)
    return Client(), {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def upload(api, path: Path, title: str = "My work", content_type: str | None = None, **fields):
    client, headers = api
    with path.open("rb") as fh:
        data = {"file": fh, "title": title, **fields}
        if content_type:
            from django.core.files.uploadedfile import SimpleUploadedFile

            data["file"] = SimpleUploadedFile(path.name, fh.read(), content_type=content_type)
        return client.post("/api/assets/", data, **headers)


def get(api, asset_id: int) -> dict:
    client, headers = api
    return client.get(f"/api/assets/{asset_id}/", **headers).json()


def thumbnail_sizes(asset_id: int) -> dict[str, tuple[int, int]]:
    sizes = IpAsset.objects.get(pk=asset_id).metadata["thumbnails"]["sizes"]
    found = {}
    for name, info in sizes.items():
        with default_storage.open(info["key"], "rb") as fh, Image.open(fh) as image:
            assert image.format == "JPEG"
            found[name] = image.size
    return found


def make_png_with_alpha(path: Path) -> Path:
    image = Image.new("RGBA", (1000, 500), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (250, 125, 750, 375))
    image.save(path)
    return path


def make_cmyk_jpeg(path: Path) -> Path:
    Image.new("CMYK", (640, 480), (0, 255, 255, 0)).save(path, "JPEG")
    return path


CASES = {
    # name: (maker, expected pixel sizes or None for "longest side fits the box")
    "jpeg": (
        lambda d: samples.make_jpeg(d / "photo.jpg", (1600, 1200)),
        {"small": (200, 150), "medium": (400, 300), "large": (800, 600)},
    ),
    "png-alpha": (
        lambda d: make_png_with_alpha(d / "logo.png"),
        {"small": (200, 100), "medium": (400, 200), "large": (800, 400)},
    ),
    "cmyk-jpeg": (
        lambda d: make_cmyk_jpeg(d / "print.jpg"),
        {"small": (200, 150), "medium": (400, 300), "large": (640, 480)},
    ),
    "exif-rotated-jpeg": (
        lambda d: samples.make_jpeg(d / "phone.jpg", (1600, 1200), orientation=6),
        {"small": (150, 200), "medium": (300, 400), "large": (600, 800)},
    ),
    "mp4": (
        lambda d: samples.make_video(d / "clip.mp4", size="320x240", seconds=2, with_audio=True),
        {"small": (200, 150), "medium": (320, 240), "large": (320, 240)},
    ),
    "mp3": (lambda d: samples.make_audio(d / "song.mp3", seconds=2, tags={"title": "Song"}), None),
    "wav": (lambda d: samples.make_audio(d / "take.wav", seconds=2), None),
    "pdf": (lambda d: samples.make_pdf(d / "deck.pdf", text="Hello", pages=2), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_upload_runs_through_scan_thumbnails_and_metadata_to_review(case, api, tmp_path, run_worker):
    maker, expected = CASES[case]
    response = upload(api, maker(tmp_path))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "PROCESSING" and body["scan_status"] == "PENDING"
    assert body["rejection_reason"] is None

    run_worker(*PIPELINE_QUEUES)

    asset = get(api, body["id"])
    assert (asset["status"], asset["scan_status"]) == ("REVIEW", "CLEAN"), asset
    assert set(asset["thumbnails"]) == {"small", "medium", "large"}
    sizes = thumbnail_sizes(body["id"])
    if expected:
        assert sizes == expected
    else:
        for name, box in (("small", 200), ("medium", 400), ("large", 800)):
            assert max(sizes[name]) <= box and max(sizes[name]) >= box // 2, (name, sizes)
    assert "extracted" in asset["metadata"] and "error" not in asset["metadata"]["extracted"]
    client, headers = api
    fetched = client.get(asset["thumbnails"]["small"], **headers)
    assert fetched.status_code == 200 and fetched["Content-Type"] == "image/jpeg"  # the URL serves it
    assert Client().get(asset["thumbnails"]["small"]).status_code == 401  # not to strangers


def test_png_transparency_becomes_white_in_thumbnails(api, tmp_path, run_worker):
    body = upload(api, make_png_with_alpha(tmp_path / "a.png")).json()
    run_worker(*PIPELINE_QUEUES)
    key = IpAsset.objects.get(pk=body["id"]).metadata["thumbnails"]["sizes"]["large"]["key"]
    with default_storage.open(key, "rb") as fh, Image.open(fh) as image:
        corner = image.convert("RGB").getpixel((2, 2))
    assert min(corner) > 240, corner


def test_extracted_metadata_describes_the_file(api, tmp_path, run_worker):
    video = upload(api, samples.make_video(tmp_path / "v.mp4", size="320x240", seconds=2, with_audio=True)).json()
    pdf = upload(api, samples.make_pdf(tmp_path / "d.pdf", pages=3, info={"Title": "Rate card"})).json()
    run_worker(*PIPELINE_QUEUES)
    meta = IpAsset.objects.get(pk=video["id"]).metadata["extracted"]
    assert meta["width"] == 320 and meta["height"] == 240 and 1.5 < meta["duration"] < 2.5
    assert meta["video_codec"] == "h264" and meta["has_audio"] is True
    doc = IpAsset.objects.get(pk=pdf["id"]).metadata["extracted"]
    assert doc["page_count"] == 3 and doc["title"] == "Rate card"


@pytest.mark.parametrize("packaging", ["plain", "zipped"])
def test_infected_upload_is_rejected_quarantined_and_reported(packaging, api, admin, uploader, tmp_path, run_worker):
    if packaging == "plain":
        path = tmp_path / "notes.txt"
        path.write_text(EICAR)
    else:
        path = tmp_path / "bundle.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner/readme.txt", EICAR)
    body = upload(api, path).json()
    run_worker(*PIPELINE_QUEUES)

    asset = IpAsset.objects.get(pk=body["id"])
    assert (asset.status, asset.scan_status) == (AssetStatus.REJECTED, ScanStatus.INFECTED)
    assert "YesGoddess.Test.EICAR" in asset.rejection_reason
    assert not default_storage.exists(asset.storage_key)
    assert asset.quarantine_key.startswith("quarantine/") and default_storage.exists(asset.quarantine_key)
    assert "thumbnails" not in asset.metadata and "extracted" not in asset.metadata  # nothing else ran
    assert Notification.objects.filter(user=uploader, metadata__asset_id=asset.pk).count() == 1
    assert Notification.objects.filter(user=admin, priority="URGENT", metadata__asset_id=asset.pk).count() == 1
    assert get_queue("media").count == 0


def hurry_retries(queue_name: str) -> None:
    """Move every retry RQ has scheduled on `queue_name` to now: the real worker runs the
    real retries, without the test waiting the day they are spread over."""
    queue = get_queue(queue_name)
    registry = queue.scheduled_job_registry
    for job_id in registry.get_job_ids():
        job = queue.fetch_job(job_id)
        if job is not None:
            registry.schedule(job, datetime.now(UTC))


@contextlib.contextmanager
def logging_worker(log_path: Path, *queues: str, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A real forking worker with RQ's scheduler whose output goes to a file: thirty-odd
    failed attempts log more than a pipe holds, and a full pipe would stall the worker."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "--worker-class", FORKING, "--with-scheduler", *queues],
            cwd=ROOT,
            env={**worker_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_scanner_outage_is_retried_for_a_day_then_errors_and_is_rescanned_once_clamd_answers(
    api, admin, uploader, tmp_path, run_worker
):
    body = upload(api, samples.make_jpeg(tmp_path / "x.jpg", (64, 64))).json()
    log_path = tmp_path / "worker.log"
    # The worker dials a socket nobody listens on, as when clamd has stopped.
    with logging_worker(log_path, *PIPELINE_QUEUES, env={"CLAMD_SOCKET": str(tmp_path / "no-clamd.sock")}):
        wait_until(
            lambda: Notification.objects.filter(user=uploader, metadata__reason="delayed").exists(),
            timeout=90,
            what="the uploader told that processing is delayed (after the first retry failed too)",
        )
        delayed = IpAsset.objects.get(pk=body["id"])
        assert (delayed.status, delayed.scan_status) == (AssetStatus.PROCESSING, ScanStatus.PENDING)
        assert delayed.processing_error["scan"]["attempts"] >= 2

        def errored() -> bool:
            hurry_retries("critical")
            return IpAsset.objects.get(pk=body["id"]).scan_status == ScanStatus.ERROR

        wait_until(errored, timeout=300, what="scan ERROR after every retry")
    log = log_path.read_text()
    asset = IpAsset.objects.get(pk=body["id"])
    assert asset.status == AssetStatus.PROCESSING  # never rejected, never marked clean
    assert "clamd is unreachable" in asset.scan_result["error"] and asset.scan_result["retryable"] is True
    retries = len(get_spec("asset-virus-scan").retry_intervals)
    assert asset.processing_error["scan"]["attempts"] == 1 + retries  # the first run and every retry
    assert log.count("outcome=failed-will-retry") == retries and "final failure recorded" in log
    assert Notification.objects.filter(user=admin, metadata__asset_id=asset.pk).count() == 1
    assert Notification.objects.filter(user=uploader, metadata__reason="delayed").count() == 1
    assert "thumbnails" not in asset.metadata

    # clamd answers again: the sweep rescans the asset without anyone asking.
    enqueue("asset-virus-scan.sweep")
    run_worker("scheduled", *PIPELINE_QUEUES)
    recovered = get(api, body["id"])
    assert (recovered["status"], recovered["scan_status"]) == ("REVIEW", "CLEAN")
    assert recovered["processing_error"] is None and recovered["retry"] is None


def test_asset_deleted_while_its_scan_is_queued_is_skipped(api, tmp_path, run_worker):
    client, headers = api
    body = upload(api, samples.make_jpeg(tmp_path / "x.jpg", (64, 64))).json()
    assert client.delete(f"/api/assets/{body['id']}/", **headers).status_code == 200
    result = run_worker(*PIPELINE_QUEUES)
    asset = IpAsset.objects.get(pk=body["id"])
    assert asset.scan_status == ScanStatus.PENDING and asset.deleted_at is not None
    assert "skipped=deleted" in result.stdout + result.stderr
    assert client.get(f"/api/assets/{body['id']}/", **headers).status_code == 404


def test_corrupt_image_is_rejected_with_a_reason_and_no_half_files(api, tmp_path, run_worker):
    good = samples.make_jpeg(tmp_path / "full.jpg", (1200, 900)).read_bytes()
    truncated = tmp_path / "broken.jpg"
    truncated.write_bytes(good[: len(good) // 3])
    body = upload(api, truncated).json()
    assert body["status"] == "PROCESSING"  # it is a JPEG by content; only decoding can tell
    result = run_worker(*PIPELINE_QUEUES)
    asset = get(api, body["id"])
    assert asset["status"] == "REJECTED" and asset["scan_status"] == "CLEAN"
    assert asset["rejection_reason"] and "corrupt" in asset["rejection_reason"].lower()
    assert asset["thumbnails"] == {}
    _, files = (
        default_storage.listdir(f"derivatives/{body['id']}")
        if default_storage.exists(f"derivatives/{body['id']}")
        else ([], [])
    )
    assert files == []
    log = result.stdout + result.stderr
    assert log.count("job=asset-thumbnail-generation id=") == 2  # one run + its failure hook; no retries
    assert "outcome=rejected" in log


BAD_UPLOADS = {
    "empty": (b"", "photo.jpg", "image/jpeg", "The file is empty."),
    "executable named .jpg": (samples.elf_header() + b"\0" * 512, "cat.jpg", "image/jpeg", "not accepted"),
    "windows exe named .png": (samples.pe_header() + b"\0" * 512, "cat.png", "image/png", "not accepted"),
    "text claimed as image": (b"hello, this is plain text\n" * 20, "cat.jpg", "image/jpeg", "IMAGE"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused_with_a_reason_and_nothing_stored(case, api, tmp_path):
    content, name, content_type, reason = BAD_UPLOADS[case]
    path = tmp_path / name
    path.write_bytes(content)
    response = upload(api, path, content_type=content_type)
    assert response.status_code == 400
    assert reason in response.json()["error"], response.json()
    assert IpAsset.objects.count() == 0
    assert get_queue("critical").count == 0
    assert not default_storage.exists("originals")


def test_upload_over_the_size_limit_is_refused(api, tmp_path, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = upload(api, samples.make_jpeg(tmp_path / "big.jpg", (400, 400)))
    assert response.status_code == 400 and "limit is 1000 bytes" in response.json()["error"]


def test_upload_needs_a_title_and_a_file(api, tmp_path):
    client, headers = api
    assert "title" in client.post("/api/assets/", {"file": io.BytesIO(b"x")}, **headers).json()["error"]
    assert "file" in client.post("/api/assets/", {"title": "t"}, **headers).json()["error"]


def test_other_users_cannot_see_or_touch_an_asset(api, tmp_path):
    body = upload(api, samples.make_jpeg(tmp_path / "x.jpg", (64, 64))).json()
    stranger = get_user_model().objects.create_user("stranger")
    _, raw = ApiToken.objects.issue(stranger)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    client = Client()
    assert client.get(f"/api/assets/{body['id']}/", **headers).status_code == 404
    assert client.delete(f"/api/assets/{body['id']}/", **headers).status_code == 404
    assert client.post(f"/api/assets/{body['id']}/rescan", **headers).status_code == 404
    assert client.post(f"/api/assets/{body['id']}/regenerate", **headers).status_code == 404
    assert IpAsset.objects.get(pk=body["id"]).deleted_at is None
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    _, raw = ApiToken.objects.issue(staff)
    assert client.get(f"/api/assets/{body['id']}/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200


def test_regenerate_and_rescan_run_again_without_a_second_set_of_files(api, tmp_path, run_worker):
    client, headers = api
    body = upload(api, samples.make_jpeg(tmp_path / "x.jpg", (900, 600))).json()
    run_worker(*PIPELINE_QUEUES)
    first = sorted(default_storage.listdir(f"derivatives/{body['id']}")[1])
    response = client.post(
        f"/api/assets/{body['id']}/regenerate", '{"steps": ["thumbnails"]}', content_type="application/json", **headers
    )
    assert response.status_code == 202 and set(response.json()["jobs"]) == {"thumbnails", "finalize"}
    assert (
        client.post(
            f"/api/assets/{body['id']}/regenerate", '{"steps": ["colour"]}', content_type="application/json", **headers
        ).status_code
        == 400
    )
    assert client.post(f"/api/assets/{body['id']}/rescan", **headers).status_code == 202
    run_worker(*PIPELINE_QUEUES)
    assert sorted(default_storage.listdir(f"derivatives/{body['id']}")[1]) == first
    asset = get(api, body["id"])
    assert (asset["status"], asset["scan_status"]) == ("REVIEW", "CLEAN")
