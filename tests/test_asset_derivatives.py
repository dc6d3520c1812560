"""Previews, format conversion, watermarking: jobs, API, and their refusals."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from jobs.api import get_queue
from jobs.handlers.asset_derivatives import convert_formats, generate_preview, watermark_asset
from jobs.handlers.asset_housekeeping import cleanup_deleted_assets
from yesgoddess.accounts.models import ApiToken
from yesgoddess.assets.models import AssetStatus, IpAsset, ScanStatus
from yesgoddess.core.errors import InvalidInput
from yesgoddess.media.watermark import read_forensic_id

from .media import samples

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", "o@example.com", "pw")


def clean_asset(owner, path: Path, type: str, mime: str, **fields) -> IpAsset:
    key = default_storage.save(f"originals/t/{path.name}", ContentFile(path.read_bytes()))
    defaults = {"status": AssetStatus.REVIEW, "scan_status": ScanStatus.CLEAN}
    return IpAsset.objects.create(
        title=path.name,
        type=type,
        storage_key=key,
        file_size=path.stat().st_size,
        mime_type=mime,
        created_by=owner,
        **{**defaults, **fields},
    )


def probe(key: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", default_storage.path(key)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def stored(asset_id: int) -> list[str]:
    found, pending = [], [f"derivatives/{asset_id}"]
    while pending:
        prefix = pending.pop()
        dirs, files = default_storage.listdir(prefix)
        found += [f"{prefix}/{f}" for f in files]
        pending += [f"{prefix}/{d}" for d in dirs]
    return sorted(found)


def test_video_preview_is_a_short_h264_clip_recorded_in_metadata(owner, tmp_path):
    video = samples.make_video(tmp_path / "v.mp4", size="640x360", seconds=14, with_audio=True)
    asset = clean_asset(owner, video, "VIDEO", "video/mp4")
    generate_preview(asset_id=asset.pk)
    preview = IpAsset.objects.get(pk=asset.pk).metadata["preview"]
    info = probe(preview["key"])
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}
    assert 9.5 <= float(info["format"]["duration"]) <= 10.6
    assert preview["key"] == f"derivatives/{asset.pk}/preview.mp4"


def test_audio_preview_is_a_128k_mp3(owner, tmp_path):
    audio = samples.make_audio(tmp_path / "a.wav", seconds=40)
    asset = clean_asset(owner, audio, "AUDIO", "audio/x-wav")
    generate_preview(asset_id=asset.pk)
    info = probe(IpAsset.objects.get(pk=asset.pk).metadata["preview"]["key"])
    assert info["streams"][0]["codec_name"] == "mp3"
    assert 29.5 <= float(info["format"]["duration"]) <= 30.6
    assert abs(int(info["format"]["bit_rate"]) - 128_000) < 12_000


def test_image_variants_are_recorded_and_a_second_run_makes_the_same_files(owner, tmp_path):
    image = samples.make_jpeg(tmp_path / "p.jpg", (1000, 750))
    asset = clean_asset(owner, image, "IMAGE", "image/jpeg")
    assert convert_formats(asset_id=asset.pk)["variants"] >= 4
    first = stored(asset.pk)
    items = IpAsset.objects.get(pk=asset.pk).metadata["variants"]["items"]
    content_types = {v["content_type"] for v in items.values()}
    assert {"image/webp", "image/avif"} <= content_types
    widths = sorted(v["width"] for v in items.values())
    assert max(widths) == 1000 and 1200 not in widths and 1920 not in widths  # never upscaled
    assert all(default_storage.exists(v["key"]) for v in items.values())
    convert_formats(asset_id=asset.pk)
    assert stored(asset.pk) == first


def test_forensic_watermark_round_trips_and_leaves_the_original_alone(owner, tmp_path):
    image = samples.make_jpeg(tmp_path / "p.jpg", (800, 600))
    asset = clean_asset(owner, image, "IMAGE", "image/jpeg")
    before = hashlib.sha256(default_storage.open(asset.storage_key).read()).hexdigest()
    watermark_asset(asset_id=asset.pk, text="YesGoddess", position="tiled", forensic=True, user_id=owner.pk)
    mark = IpAsset.objects.get(pk=asset.pk).metadata["watermark"]
    assert mark["forensic_id"] and mark["issued_to"] == owner.pk
    assert read_forensic_id(default_storage.path(mark["key"])) == mark["forensic_id"]
    assert hashlib.sha256(default_storage.open(asset.storage_key).read()).hexdigest() == before


def test_video_watermark_keeps_audio_and_carries_the_forensic_id(owner, tmp_path):
    video = samples.make_video(tmp_path / "v.mp4", size="320x240", seconds=2, with_audio=True)
    asset = clean_asset(owner, video, "VIDEO", "video/mp4")
    watermark_asset(asset_id=asset.pk, text="preview", position="center", forensic=True, user_id=owner.pk)
    mark = IpAsset.objects.get(pk=asset.pk).metadata["watermark"]
    assert read_forensic_id(default_storage.path(mark["key"])) == mark["forensic_id"]
    assert {s["codec_type"] for s in probe(mark["key"])["streams"]} == {"video", "audio"}


@pytest.mark.parametrize(
    ("fields", "job", "kwargs", "message"),
    [
        ({"scan_status": ScanStatus.SCANNING}, generate_preview, {}, "has not passed the virus scan"),
        ({"status": AssetStatus.REJECTED, "rejection_reason": "bad"}, convert_formats, {}, "was rejected"),
        ({}, watermark_asset, {"text": "x", "position": "somewhere"}, "Unknown position"),
        ({}, watermark_asset, {"forensic": True}, "needs the user_id"),
        ({}, watermark_asset, {"logo_asset_id": 987654}, "Logo asset 987654 does not exist"),
    ],
)
def test_refusals_are_clear_and_produce_nothing(owner, tmp_path, fields, job, kwargs, message):
    video = samples.make_video(tmp_path / "v.mp4", size="320x240", seconds=2)
    asset = clean_asset(owner, video, "VIDEO", "video/mp4", **fields)
    with pytest.raises(InvalidInput, match=message):
        job(asset_id=asset.pk, **kwargs)
    assert not default_storage.exists(f"derivatives/{asset.pk}")


def test_a_logo_that_is_not_an_image_is_refused(owner, tmp_path):
    image = clean_asset(owner, samples.make_jpeg(tmp_path / "p.jpg", (400, 300)), "IMAGE", "image/jpeg")
    text_file = tmp_path / "logo.png"
    text_file.write_text("not an image at all")
    logo = clean_asset(owner, text_file, "IMAGE", "image/png")
    with pytest.raises(InvalidInput):
        watermark_asset(asset_id=image.pk, logo_asset_id=logo.pk, position="top-left")
    assert not default_storage.exists(f"derivatives/{image.pk}/watermarked")


def test_preview_of_a_video_without_audio_has_no_audio_track(owner, tmp_path):
    asset = clean_asset(owner, samples.make_video(tmp_path / "v.mp4", size="320x240", seconds=3), "VIDEO", "video/mp4")
    generate_preview(asset_id=asset.pk)
    info = probe(IpAsset.objects.get(pk=asset.pk).metadata["preview"]["key"])
    assert [s["codec_type"] for s in info["streams"]] == ["video"]


def test_asset_cleanup_removes_every_derivative(owner, tmp_path):
    from django.utils import timezone

    asset = clean_asset(owner, samples.make_jpeg(tmp_path / "p.jpg", (600, 400)), "IMAGE", "image/jpeg")
    convert_formats(asset_id=asset.pk)
    watermark_asset(asset_id=asset.pk, text="x", position="center")
    assert stored(asset.pk)
    IpAsset.objects.filter(pk=asset.pk).update(deleted_at=timezone.now() - timezone.timedelta(days=31))
    cleanup_deleted_assets()
    assert not default_storage.exists(f"derivatives/{asset.pk}") or stored(asset.pk) == []


def test_watermark_api_validates_options_and_enqueues(owner, tmp_path):
    asset = clean_asset(owner, samples.make_jpeg(tmp_path / "p.jpg", (400, 300)), "IMAGE", "image/jpeg")
    _, raw = ApiToken.objects.issue(owner)
    client, headers = Client(), {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def post(body: dict):
        return client.post(
            f"/api/assets/{asset.pk}/watermark", json.dumps(body), content_type="application/json", **headers
        )

    assert "position must be one of" in post({"text": "x", "position": "middle"}).json()["error"]
    assert "opacity" in post({"text": "x", "opacity": 3}).json()["error"]
    assert "Give text" in post({}).json()["error"]
    assert get_queue("media").count == 0
    response = post({"text": "x", "position": "tiled", "forensic": True})
    assert response.status_code == 202
    job = get_queue("media").get_jobs()[0]
    assert job.kwargs["forensic"] is True and job.kwargs["user_id"] == owner.pk
    regen = client.post(
        f"/api/assets/{asset.pk}/regenerate",
        json.dumps({"steps": ["preview"]}),
        content_type="application/json",
        **headers,
    )
    assert regen.status_code == 400 and "VIDEO, AUDIO" in regen.json()["error"]
