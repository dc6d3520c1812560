"""asset-cleanup, upload-cleanup and storage-metrics-calculation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from jobs.handlers.asset_housekeeping import calculate_storage_metrics, cleanup_deleted_assets, cleanup_uploads
from yesgoddess.assets.models import AssetStatus, IpAsset, IpOwnership, ScanStatus, StorageMetrics
from yesgoddess.brands.models import Brand
from yesgoddess.core.models import AuditEvent
from yesgoddess.creators.models import Creator
from yesgoddess.projects.models import Project

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def user():
    return get_user_model().objects.create(username="owner")


def make_asset(user, name: str, *, size: int = 100, project=None, **fields) -> IpAsset:
    key = default_storage.save(f"originals/{name}/{name}.bin", ContentFile(b"x" * size))
    defaults = {
        "title": name,
        "type": "IMAGE",
        "file_size": size,
        "mime_type": "image/jpeg",
        "status": AssetStatus.REVIEW,
        "scan_status": ScanStatus.CLEAN,
    }
    return IpAsset.objects.create(storage_key=key, created_by=user, project=project, **{**defaults, **fields})


def age(asset: IpAsset, **fields) -> None:
    """Set timestamps directly (updated_at is auto_now on save())."""
    IpAsset.objects.filter(pk=asset.pk).update(**fields)


def add_derivatives(asset: IpAsset) -> list[str]:
    return [
        default_storage.save(f"derivatives/{asset.pk}/{name}", ContentFile(b"d"))
        for name in ("thumbnail_small.jpg", "thumbnail_large.jpg", "variants/preview.mp4")
    ]


# --- asset-cleanup -----------------------------------------------------------------------


def test_asset_cleanup_purges_old_soft_deleted_assets_with_every_file(user):
    now = timezone.now()
    old = make_asset(user, "old")
    derivatives = add_derivatives(old)
    quarantined = default_storage.save(f"quarantine/{old.storage_key}", ContentFile(b"q"))
    IpAsset.objects.filter(pk=old.pk).update(quarantine_key=quarantined, deleted_at=now - 31 * DAY)
    creator = Creator.objects.create(user=user, display_name="c")
    IpOwnership.objects.create(ip_asset=old, creator=creator, share_bps=10000)
    recent = make_asset(user, "recent", deleted_at=now - 29 * DAY)
    live = make_asset(user, "live")

    result = cleanup_deleted_assets()

    assert result["deleted"] == 1 and result["files_deleted"] == 5
    assert set(IpAsset.objects.values_list("pk", flat=True)) == {recent.pk, live.pk}
    assert not IpOwnership.objects.exists()
    for key in [old.storage_key, quarantined, *derivatives]:
        assert not default_storage.exists(key), key
    assert default_storage.exists(recent.storage_key) and default_storage.exists(live.storage_key)
    assert AuditEvent.objects.filter(action="ASSET_PURGED", entity_id=str(old.pk)).exists()
    assert cleanup_deleted_assets()["deleted"] == 0  # second run: nothing left to do


def test_asset_cleanup_keeps_an_asset_still_referenced_and_its_files(user):
    parent = make_asset(user, "parent", deleted_at=timezone.now() - 40 * DAY)
    make_asset(user, "child", parent_asset=parent)
    result = cleanup_deleted_assets()
    assert result["deleted"] == 0 and result["skipped_referenced"] == 1
    assert IpAsset.objects.filter(pk=parent.pk).exists()
    assert default_storage.exists(parent.storage_key)


# --- upload-cleanup ----------------------------------------------------------------------------


@pytest.fixture
def uploads(user):
    now = timezone.now()
    assets = {
        "abandoned": make_asset(user, "abandoned", status=AssetStatus.DRAFT, scan_status=ScanStatus.PENDING),
        "fresh_draft": make_asset(user, "fresh", status=AssetStatus.DRAFT, scan_status=ScanStatus.PENDING),
        "moved_back_to_draft": make_asset(
            user, "moved", status=AssetStatus.DRAFT, scan_status=ScanStatus.CLEAN, processing_started_at=now - 10 * DAY
        ),
        "scan_error_old": make_asset(user, "err-old", status=AssetStatus.PROCESSING, scan_status=ScanStatus.ERROR),
        "scan_error_recent": make_asset(user, "err-new", status=AssetStatus.PROCESSING, scan_status=ScanStatus.ERROR),
        "unreadable_old": make_asset(user, "bad-old", status=AssetStatus.REJECTED, rejection_reason="corrupt"),
        "infected_old": make_asset(user, "inf-old", status=AssetStatus.REJECTED, scan_status=ScanStatus.INFECTED),
        "infected_recent": make_asset(user, "inf-new", status=AssetStatus.REJECTED, scan_status=ScanStatus.INFECTED),
    }
    age(assets["abandoned"], created_at=now - 25 * 3600 * timedelta(seconds=1))
    age(assets["fresh_draft"], created_at=now - 23 * 3600 * timedelta(seconds=1))
    age(assets["moved_back_to_draft"], created_at=now - 30 * DAY)
    for name in ("scan_error_old", "unreadable_old"):
        age(assets[name], pipeline_failed_at=now - 8 * DAY, updated_at=now - 8 * DAY)
    age(assets["scan_error_recent"], pipeline_failed_at=now - 6 * DAY, updated_at=now - 6 * DAY)
    infected = assets["infected_old"]
    quarantined = default_storage.save(f"quarantine/{infected.storage_key}", ContentFile(b"virus"))
    default_storage.delete(infected.storage_key)
    age(infected, quarantine_key=quarantined, updated_at=now - 31 * DAY)
    age(assets["infected_recent"], updated_at=now - 29 * DAY)
    return {name: IpAsset.objects.get(pk=a.pk) for name, a in assets.items()}


def test_upload_cleanup_applies_each_rule_and_only_to_its_rows(uploads):
    result = cleanup_uploads()
    assert (result["abandoned"], result["failed"], result["infected"]) == (1, 2, 1)
    abandoned = IpAsset.objects.get(pk=uploads["abandoned"].pk)
    assert abandoned.status == AssetStatus.REJECTED and abandoned.deleted_at is not None
    assert abandoned.rejection_reason == "The upload was never completed."
    assert not default_storage.exists(abandoned.storage_key)
    remaining = set(IpAsset.objects.values_list("pk", flat=True))
    for gone in ("scan_error_old", "unreadable_old", "infected_old"):
        assert uploads[gone].pk not in remaining, gone
    assert not default_storage.exists(uploads["infected_old"].quarantine_key)
    for kept in ("fresh_draft", "moved_back_to_draft", "scan_error_recent", "infected_recent"):
        asset = IpAsset.objects.get(pk=uploads[kept].pk)
        assert asset.deleted_at is None and asset.status == uploads[kept].status, kept
        assert default_storage.exists(asset.storage_key), kept
    assert result["bytes_freed"] == 100 + 100 + 100 + len(b"virus")


def test_upload_cleanup_second_run_is_a_no_op(uploads):
    cleanup_uploads()
    again = cleanup_uploads()
    assert (again["abandoned"], again["failed"], again["infected"], again["bytes_freed"]) == (0, 0, 0, 0)


def test_upload_cleanup_dry_run_counts_candidates_and_changes_nothing(uploads):
    before = list(IpAsset.objects.order_by("pk").values_list("pk", "status", "deleted_at"))
    assert cleanup_uploads(dry_run=True) == {"abandoned": 1, "failed": 2, "infected": 1, "dry_run": 1}
    assert list(IpAsset.objects.order_by("pk").values_list("pk", "status", "deleted_at")) == before


# --- storage-metrics-calculation ---------------------------------------------------------------


def test_storage_metrics_snapshot_per_entity_and_idempotent_per_day(user):
    other = get_user_model().objects.create(username="other")
    brand = Brand.objects.create(user=user, name="B")
    project = Project.objects.create(brand=brand, name="P")
    big = make_asset(user, "a1", size=1000, project=project, type="VIDEO")
    make_asset(user, "a2", size=200, project=project, type="IMAGE")
    make_asset(other, "a3", size=300, type="IMAGE")
    make_asset(other, "gone", size=5000, type="IMAGE", deleted_at=timezone.now())

    first = calculate_storage_metrics()
    assert first == {"platform": 1, "user": 2, "project": 1, "brand": 1}
    today = timezone.now().date()
    platform = StorageMetrics.objects.get(snapshot_date=today, entity_type="platform", entity_id="")
    assert (platform.total_bytes, platform.file_count, platform.largest_file_size) == (1500, 3, 1000)
    assert platform.average_file_size == 500 and platform.largest_file_id == str(big.pk)
    assert platform.breakdown_by_type == {"VIDEO": {"bytes": "1000", "count": 1}, "IMAGE": {"bytes": "500", "count": 2}}
    owner = StorageMetrics.objects.get(entity_type="user", entity_id=str(user.pk))
    assert (owner.total_bytes, owner.file_count) == (1200, 2)
    assert StorageMetrics.objects.get(entity_type="brand", entity_id=str(brand.pk)).total_bytes == 1200
    assert StorageMetrics.objects.get(entity_type="project", entity_id=str(project.pk)).file_count == 2

    make_asset(user, "a4", size=300, type="AUDIO")
    calculate_storage_metrics()  # same day: rows updated in place, none added
    assert StorageMetrics.objects.count() == 5
    assert StorageMetrics.objects.get(entity_type="platform").total_bytes == 1800


def test_storage_metrics_trend_compares_with_the_previous_snapshot(user):
    make_asset(user, "a", size=1500)
    StorageMetrics.objects.create(
        snapshot_date=date.today() - 3 * DAY, entity_type="platform", entity_id="", total_bytes=1000
    )
    StorageMetrics.objects.create(
        snapshot_date=date.today() - 5 * DAY, entity_type="platform", entity_id="", total_bytes=9999
    )
    calculate_storage_metrics()
    assert (
        StorageMetrics.objects.get(snapshot_date=timezone.now().date(), entity_type="platform").storage_trend_bps
        == 5000
    )


def test_storage_metrics_with_no_assets_writes_zero_rows_for_live_entities(user):
    get_user_model().objects.create(username="deleted", deleted_at=timezone.now())
    calculate_storage_metrics()
    assert StorageMetrics.objects.get(entity_type="platform").file_count == 0
    assert list(StorageMetrics.objects.filter(entity_type="user").values_list("entity_id", flat=True)) == [str(user.pk)]
