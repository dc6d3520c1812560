"""Issue 21, item 4: every forensic watermark is recorded, append-only, and staff can
look up who received the copy carrying a forensic id found in a leak."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from jobs.handlers.asset_derivatives import watermark_asset
from jobs.handlers.asset_housekeeping import cleanup_deleted_assets
from yesgoddess.accounts.models import ApiToken
from yesgoddess.assets.models import AssetStatus, IpAsset, ScanStatus, WatermarkIssuance
from yesgoddess.core.errors import InvalidInput
from yesgoddess.media.watermark import read_forensic_id

from .media import samples

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return get_user_model().objects.create_user("owner", "o@example.com", "pw")


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True, is_superuser=True)


def image_asset(owner, tmp_path: Path) -> IpAsset:
    path = samples.make_jpeg(tmp_path / "p.jpg", (400, 300))
    key = default_storage.save(f"originals/t/{path.name}", ContentFile(path.read_bytes()))
    return IpAsset.objects.create(
        title="Sunset",
        type="IMAGE",
        storage_key=key,
        file_size=path.stat().st_size,
        mime_type="image/jpeg",
        created_by=owner,
        status=AssetStatus.REVIEW,
        scan_status=ScanStatus.CLEAN,
    )


def bearer(user) -> dict[str, str]:
    _, raw = ApiToken.objects.issue(user)
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_each_forensic_copy_is_recorded_and_a_rerun_records_nothing_new(owner, tmp_path):
    asset = image_asset(owner, tmp_path)
    first_time = timezone.now().replace(microsecond=0)
    options = {"text": "Preview", "position": "tiled", "opacity": 0.4, "forensic": True, "user_id": owner.pk}

    assert watermark_asset(asset_id=asset.pk, issued_at=first_time.isoformat(), **options)["issuances_recorded"] == 1
    again = watermark_asset(asset_id=asset.pk, issued_at=first_time.isoformat(), **options)  # a retried job
    assert again == {"watermarked": 1, "issuances_recorded": 0}
    later = (first_time + timedelta(minutes=5)).isoformat()
    watermark_asset(asset_id=asset.pk, issued_at=later, **options)  # a second download

    issuances = list(WatermarkIssuance.objects.order_by("issued_at"))
    assert len(issuances) == 2 and issuances[0].forensic_id != issuances[1].forensic_id
    assert [i.issued_at for i in issuances] == [first_time, first_time + timedelta(minutes=5)]
    for issuance in issuances:  # each copy on storage carries its own recorded id
        assert issuance.asset_id == asset.pk and issuance.recipient_id == owner.pk
        assert issuance.options == {
            "text": "Preview",
            "logo_asset_id": None,
            "position": "tiled",
            "opacity": 0.4,
            "scale": 0.2,
        }
        assert read_forensic_id(default_storage.path(issuance.storage_key)) == issuance.forensic_id
    # metadata["watermark"] still says what the latest run made; the record keeps them all
    assert IpAsset.objects.get(pk=asset.pk).metadata["watermark"]["forensic_id"] == issuances[1].forensic_id
    watermark_asset(asset_id=asset.pk, text="plain", position="center")  # not forensic: not an issuance
    assert WatermarkIssuance.objects.count() == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"issued_at": "2026-01-01T10:00:00"}, "with an offset"),
        ({"issued_at": "yesterday"}, "ISO 8601"),
        ({"user_id": 987654}, "User 987654"),
    ],
)
def test_bad_issuance_inputs_fail_once_and_record_nothing(owner, tmp_path, kwargs, message):
    asset = image_asset(owner, tmp_path)
    with pytest.raises(InvalidInput, match=message):
        watermark_asset(asset_id=asset.pk, text="x", forensic=True, **{"user_id": owner.pk, **kwargs})
    assert not WatermarkIssuance.objects.exists()


def test_issuances_are_append_only_and_outlive_their_asset(owner, tmp_path):
    asset = image_asset(owner, tmp_path)
    watermark_asset(asset_id=asset.pk, text="x", forensic=True, user_id=owner.pk)
    issuance = WatermarkIssuance.objects.get()
    with pytest.raises(TypeError, match="append-only"):
        issuance.save()
    with pytest.raises(TypeError, match="append-only"):
        issuance.delete()
    for statement in (
        "UPDATE watermark_issuances SET recipient_id = recipient_id",
        "DELETE FROM watermark_issuances",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    # The asset is purged 30 days after its soft delete; the record of who got it stays.
    IpAsset.objects.filter(pk=asset.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    assert cleanup_deleted_assets()["deleted"] == 1
    assert WatermarkIssuance.objects.get().forensic_id == issuance.forensic_id


def test_staff_look_up_the_forensic_id_of_a_leaked_copy(owner, staff, tmp_path, run_worker):
    asset = image_asset(owner, tmp_path)
    client = Client()
    response = client.post(
        f"/api/assets/{asset.pk}/watermark",
        json.dumps({"text": "Preview", "forensic": True}),
        content_type="application/json",
        **bearer(owner),
    )
    assert response.status_code == 202
    run_worker("media")  # the real job, as a download would run it
    [issuance] = WatermarkIssuance.objects.all()
    leaked = read_forensic_id(default_storage.path(issuance.storage_key))  # what staff find in the leak

    found = client.get(f"/api/watermarks/{leaked}", **bearer(staff))
    assert found.status_code == 200, found.content
    body = found.json()
    assert body["forensic_id"] == leaked and body["verified"] is True
    assert body["recipient"] == {"id": owner.pk, "username": "owner"}
    assert body["asset"] == {"id": asset.pk, "exists": True, "title": "Sunset", "deleted": False}
    assert datetime.fromisoformat(body["issued_at"]) == issuance.issued_at
    assert client.get(f"/api/watermarks/%20{leaked.upper()}%20", **bearer(staff)).json()["forensic_id"] == leaked

    # Not for anyone else, and hostile or unknown ids are JSON 4xx answers, never a 500.
    assert client.get(f"/api/watermarks/{leaked}", **bearer(owner)).status_code == 404
    assert client.get(f"/api/watermarks/{leaked}").status_code == 401
    for bad in ("short", "0" * 16, "a" * 17, "%00" * 16, "%F0%9F%92%A5" * 4):
        reply = client.get(f"/api/watermarks/{bad}", **bearer(staff))
        assert reply.status_code == 400 and "16 characters" in reply.json()["error"], bad
    unknown = client.get(f"/api/watermarks/{'a' * 16}", **bearer(staff))
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert client.post(f"/api/watermarks/{leaked}", **bearer(staff)).status_code == 405


def test_staff_find_an_issuance_in_the_admin_and_cannot_change_it(owner, staff, tmp_path):
    asset = image_asset(owner, tmp_path)
    watermark_asset(asset_id=asset.pk, text="x", forensic=True, user_id=owner.pk)
    issuance = WatermarkIssuance.objects.get()
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/assets/watermarkissuance/", {"q": f" {issuance.forensic_id.upper()} "})
    assert listing.status_code == 200 and issuance.forensic_id in listing.content.decode()
    detail = client.get(f"/admin/assets/watermarkissuance/{issuance.pk}/change/")
    assert detail.status_code == 200 and str(asset.pk) in detail.content.decode()
    assert client.get("/admin/assets/watermarkissuance/add/").status_code == 403
    assert client.post(f"/admin/assets/watermarkissuance/{issuance.pk}/delete/").status_code == 403
    assert WatermarkIssuance.objects.filter(pk=issuance.pk).exists()
