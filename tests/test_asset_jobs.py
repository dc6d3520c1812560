"""Asset jobs called directly: idempotency, bad input, metadata merging, emails."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs.api import get_queue
from jobs.handlers.assets import (
    extract_asset_metadata,
    finish_processing,
    generate_thumbnails,
    record_scan_failure,
    scan_asset,
)
from jobs.runtime import execute
from yesgoddess.assets import scanner
from yesgoddess.assets.models import AssetStatus, IpAsset, ScanStatus
from yesgoddess.assets.services import merge_metadata
from yesgoddess.core.errors import InvalidInput
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import render_email

from .media import samples
from .test_services import EICAR

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def user():
    return get_user_model().objects.create_user("maker", "maker@example.test", "pw")


@pytest.fixture
def admin():
    return get_user_model().objects.create_superuser("admin", "admin@example.test", "pw")


def stored_asset(
    user, content: bytes, name: str, *, type: str = "IMAGE", mime: str = "image/jpeg", **fields
) -> IpAsset:
    key = default_storage.save(f"originals/t/{name}", ContentFile(content))
    defaults = {"status": AssetStatus.PROCESSING, "scan_status": ScanStatus.PENDING}
    return IpAsset.objects.create(
        title=name,
        type=type,
        storage_key=key,
        file_size=len(content),
        mime_type=mime,
        created_by=user,
        **{**defaults, **fields},
    )


def jpeg_bytes(tmp_path: Path, size=(640, 480)) -> bytes:
    return samples.make_jpeg(tmp_path / "src.jpg", size).read_bytes()


def test_clean_scan_enqueues_processing_once_and_a_second_scan_does_nothing(user, tmp_path):
    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg")
    assert scan_asset(asset_id=asset.pk) == {"clean": 1}
    asset.refresh_from_db()
    assert asset.scan_status == ScanStatus.CLEAN and asset.scan_result["engine"].startswith("ClamAV")
    queued = get_queue("media").get_jobs()
    assert sorted(j.meta["job_name"] for j in queued) == ["asset-metadata-extraction", "asset-thumbnail-generation"]
    assert scan_asset(asset_id=asset.pk) == {"skipped": "already CLEAN"}
    assert get_queue("media").count == 2  # nothing added


def test_infected_file_is_quarantined_and_admins_get_an_email_that_renders(user, admin):
    asset = stored_asset(user, EICAR.encode(), "eicar.txt", type="DOCUMENT", mime="text/plain")
    result = scan_asset(asset_id=asset.pk)
    assert result["infected"] == 1 and result["admin_emails_sent"] == 1
    asset.refresh_from_db()
    assert asset.status == AssetStatus.REJECTED and asset.scan_status == ScanStatus.INFECTED
    assert default_storage.exists(asset.quarantine_key) and not default_storage.exists(asset.storage_key)
    assert get_queue("media").count == 0
    [message] = mail.outbox
    assert message.to == ["admin@example.test"]
    assert f"asset {asset.pk}" in message.subject and "YesGoddess.Test.EICAR" in message.body
    html = message.alternatives[0][0]
    assert "<strong>" in html and "YesGoddess.Test.EICAR" in html
    assert "maker@example.test" not in message.body  # ids, never personal data
    assert AuditEvent.objects.filter(action="ASSET_INFECTED", entity_id=str(asset.pk)).exists()
    # a second run finds it INFECTED and changes nothing
    assert scan_asset(asset_id=asset.pk) == {"skipped": "already INFECTED"}
    assert len(mail.outbox) == 1


def test_forced_rescan_of_a_quarantined_asset_is_refused_not_marked_clean(user):
    asset = stored_asset(user, EICAR.encode(), "eicar.txt", type="DOCUMENT", mime="text/plain")
    scan_asset(asset_id=asset.pk)
    with pytest.raises(InvalidInput, match="infected and quarantined"):
        scan_asset(asset_id=asset.pk, force=True)
    assert IpAsset.objects.get(pk=asset.pk).scan_status == ScanStatus.INFECTED  # the verdict stands


def test_unreachable_scanner_raises_for_a_retry_and_the_final_hook_records_error(user, admin, settings, tmp_path):
    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg")
    settings.CLAMD_SOCKET = str(tmp_path / "nobody-listens.sock")
    with pytest.raises(scanner.ScannerUnavailable):
        scan_asset(asset_id=asset.pk)
    assert IpAsset.objects.get(pk=asset.pk).scan_status == ScanStatus.PENDING  # waits for the retry; not CLEAN
    record_scan_failure({"asset_id": asset.pk}, "ScannerUnavailable: clamd is unreachable", "job-1")
    asset.refresh_from_db()
    assert asset.scan_status == ScanStatus.ERROR and asset.status == AssetStatus.PROCESSING
    assert asset.pipeline_failed_at is not None
    assert Notification.objects.filter(user=admin, metadata__asset_id=asset.pk).exists()
    assert "scan failed" in mail.outbox[0].subject.lower()


def test_a_missing_asset_fails_once_with_a_clear_message(user):
    for name in (
        "asset-virus-scan",
        "asset-thumbnail-generation",
        "asset-metadata-extraction",
        "asset-virus-scan-finalize",
    ):
        with pytest.raises(InvalidInput, match="Asset 424242 does not exist"):
            execute(name, asset_id=424242)


def test_processing_is_refused_before_a_clean_scan(user, tmp_path):
    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg", scan_status=ScanStatus.SCANNING)
    with pytest.raises(InvalidInput, match="has not passed the virus scan"):
        generate_thumbnails(asset_id=asset.pk)
    with pytest.raises(InvalidInput, match="has not passed the virus scan"):
        extract_asset_metadata(asset_id=asset.pk)
    assert not default_storage.exists(f"derivatives/{asset.pk}")


def test_thumbnails_twice_rewrite_the_same_three_files(user, tmp_path):
    asset = stored_asset(user, jpeg_bytes(tmp_path, (1000, 800)), "a.jpg", scan_status=ScanStatus.CLEAN)
    generate_thumbnails(asset_id=asset.pk)
    first = sorted(default_storage.listdir(f"derivatives/{asset.pk}")[1])
    generate_thumbnails(asset_id=asset.pk)
    assert (
        sorted(default_storage.listdir(f"derivatives/{asset.pk}")[1])
        == first
        == ["thumbnail_large.jpg", "thumbnail_medium.jpg", "thumbnail_small.jpg"]
    )


def test_jobs_merge_their_own_metadata_key_and_keep_everyone_elses(user, tmp_path):
    asset = stored_asset(
        user,
        jpeg_bytes(tmp_path),
        "a.jpg",
        scan_status=ScanStatus.CLEAN,
        metadata={"tags": ["sunset"], "user_note": "mine"},
    )
    generate_thumbnails(asset_id=asset.pk)
    extract_asset_metadata(asset_id=asset.pk)
    merge_metadata(asset.pk, "quality", {"score": 91})
    metadata = IpAsset.objects.get(pk=asset.pk).metadata
    assert metadata["tags"] == ["sunset"] and metadata["user_note"] == "mine"
    assert set(metadata) == {"tags", "user_note", "thumbnails", "extracted", "quality"}
    assert metadata["extracted"]["width"] == 640


def bomb_png() -> bytes:
    return samples.png_declaring_size(40000, 40000)  # 1.6 gigapixels: over Pillow's guard


def corrupt_png(tmp_path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (300, 200), (10, 200, 30)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    return data[:40] + b"\x00" * (len(data) - 40)  # signature and header intact, pixel data destroyed


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n" + b"\x00garbage" * 200


def unreadable_video() -> bytes:
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x13\x37" * 500


@pytest.mark.parametrize(
    ("maker", "type", "mime", "reason"),
    [
        (lambda p: jpeg_bytes(p)[:2000], "IMAGE", "image/jpeg", "corrupt"),
        (lambda p: bomb_png(), "IMAGE", "image/png", "decompression"),
        (corrupt_png, "IMAGE", "image/png", "image format that can be read"),
        (lambda p: corrupt_pdf(), "DOCUMENT", "application/pdf", "PDF"),
        (lambda p: unreadable_video(), "VIDEO", "video/mp4", "ffprobe"),
    ],
    ids=["truncated-jpeg", "decompression-bomb", "corrupt-png", "corrupt-pdf", "unreadable-video"],
)
def test_unusable_files_are_rejected_with_a_reason_and_leave_no_files(user, tmp_path, maker, type, mime, reason):
    asset = stored_asset(user, maker(tmp_path), "bad", type=type, mime=mime, scan_status=ScanStatus.CLEAN)
    with pytest.raises(InvalidInput) as raised:
        generate_thumbnails(asset_id=asset.pk)
    assert reason.lower() in str(raised.value).lower()
    asset.refresh_from_db()
    assert asset.status == AssetStatus.REJECTED and reason.lower() in asset.rejection_reason.lower()
    assert (
        not default_storage.exists(f"derivatives/{asset.pk}")
        or default_storage.listdir(f"derivatives/{asset.pk}")[1] == []
    )
    assert finish_processing(asset_id=asset.pk) == {"moved_to_review": 0}
    assert IpAsset.objects.get(pk=asset.pk).status == AssetStatus.REJECTED


def test_finalize_waits_for_both_results_and_moves_to_review_once(user, tmp_path):
    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg", scan_status=ScanStatus.CLEAN)
    generate_thumbnails(asset_id=asset.pk)
    assert finish_processing(asset_id=asset.pk) == {"moved_to_review": 0}  # metadata not there yet
    extract_asset_metadata(asset_id=asset.pk)
    assert finish_processing(asset_id=asset.pk) == {"moved_to_review": 1}
    assert finish_processing(asset_id=asset.pk) == {"moved_to_review": 0}
    assert AuditEvent.objects.filter(action="ASSET_READY_FOR_REVIEW", entity_id=str(asset.pk)).count() == 1


def test_scan_enqueued_twice_for_one_asset_is_one_job(user, tmp_path):
    from jobs.api import enqueue

    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg")
    first = enqueue("asset-virus-scan", asset_id=asset.pk, dedup_key=f"asset-{asset.pk}")
    second = enqueue("asset-virus-scan", asset_id=asset.pk, dedup_key=f"asset-{asset.pk}")
    assert first == second and get_queue("critical").count == 1


@pytest.mark.parametrize("name", ["asset_infected", "asset_scan_failed", "asset_processing_failed"])
def test_every_asset_email_renders_with_its_variables(name):
    context = {
        "asset_id": 7,
        "asset_type": "IMAGE",
        "file_size": 10,
        "uploader_id": 3,
        "threats": ["X.Y"],
        "quarantine_key": "quarantine/k",
        "error": "boom & bust",
        "retryable": True,
        "step": "thumbnails",
        "steps": ["thumbnails"],
    }
    subject, text, html = render_email(name, context)
    assert "7" in subject and "\n" not in subject
    assert "7" in text and "{{" not in text and "{%" not in text
    assert html.startswith("<!doctype html>") and "7" in html
    if name in ("asset_scan_failed", "asset_processing_failed"):
        assert "boom & bust" in text and "boom &amp; bust" in html  # text unescaped, HTML escaped
    if name == "asset_processing_failed":
        assert '{"steps": ["thumbnails"]}' in text and "regenerate" in html


def test_failure_hooks_record_the_error_under_the_jobs_own_key(user, tmp_path):
    from jobs.handlers.asset_derivatives import record_preview_failure
    from jobs.handlers.assets import record_metadata_failure, record_thumbnail_failure

    asset = stored_asset(user, jpeg_bytes(tmp_path), "a.jpg", metadata={"tags": ["kept"]})
    record_thumbnail_failure({"asset_id": asset.pk}, "OSError: disk full", "j1")
    record_metadata_failure({"asset_id": asset.pk}, "TimeoutError: slow", "j2")
    record_preview_failure({"asset_id": 987654}, "gone", "j3")  # a deleted asset: nothing to record, no error
    metadata = IpAsset.objects.get(pk=asset.pk).metadata
    assert metadata["tags"] == ["kept"]
    assert metadata["thumbnails"]["error"] == "OSError: disk full"
    assert metadata["extracted"]["error"] == "TimeoutError: slow"
    assert finish_processing(asset_id=asset.pk) == {"moved_to_review": 0}
