"""asset-cleanup, upload-cleanup and storage-metrics-calculation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.utils import timezone

from jobs.api import enqueue
from jobs.handlers.asset_housekeeping import calculate_storage_metrics, cleanup_deleted_assets, cleanup_uploads
from yesgoddess.assets.housekeeping import StorageMetricsIncomplete
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
    assert (result["abandoned"], result["failed"], result["infected"]) == (1, 1, 1)
    abandoned = IpAsset.objects.get(pk=uploads["abandoned"].pk)
    assert abandoned.status == AssetStatus.REJECTED and abandoned.deleted_at is not None
    assert abandoned.rejection_reason == "The upload was never completed."
    assert not default_storage.exists(abandoned.storage_key)
    remaining = set(IpAsset.objects.values_list("pk", flat=True))
    for gone in ("unreadable_old", "infected_old"):
        assert uploads[gone].pk not in remaining, gone
    assert not default_storage.exists(uploads["infected_old"].quarantine_key)
    # A scan ERROR is our failure (clamd down or refusing), not the file's: never purged.
    for kept in ("fresh_draft", "moved_back_to_draft", "scan_error_old", "scan_error_recent", "infected_recent"):
        asset = IpAsset.objects.get(pk=uploads[kept].pk)
        assert asset.deleted_at is None and asset.status == uploads[kept].status, kept
        assert default_storage.exists(asset.storage_key), kept
    assert result["bytes_freed"] == 100 + 100 + len(b"virus")


def test_upload_cleanup_second_run_is_a_no_op(uploads):
    cleanup_uploads()
    again = cleanup_uploads()
    assert (again["abandoned"], again["failed"], again["infected"], again["bytes_freed"]) == (0, 0, 0, 0)


def test_upload_cleanup_dry_run_counts_candidates_and_changes_nothing(uploads):
    before = list(IpAsset.objects.order_by("pk").values_list("pk", "status", "deleted_at"))
    assert cleanup_uploads(dry_run=True) == {"abandoned": 1, "failed": 1, "infected": 1, "dry_run": 1}
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


def test_upload_cleanup_never_purges_an_upload_that_failed_on_our_side(user):
    """Issue 21, item 1: an outage of ours (clamd down or refusing, a tool out of time)
    must never cost a user an upload; only a file the pipeline could not read is purged."""
    now = timezone.now()
    long_ago = now - 30 * DAY
    ours = {
        "clamd_down": make_asset(
            user,
            "clamd-down",
            status=AssetStatus.PROCESSING,
            scan_status=ScanStatus.ERROR,
            scan_result={"error": "ScannerUnavailable", "retryable": True},
        ),
        "clamd_refused": make_asset(
            user,
            "clamd-refused",
            status=AssetStatus.PROCESSING,
            scan_status=ScanStatus.ERROR,
            scan_result={"error": "size limit", "retryable": False},
        ),
        "tool_timeout": make_asset(
            user,
            "tool-timeout",
            status=AssetStatus.PROCESSING,
            processing_error={"thumbnails": {"error": "ffprobe timed out", "final": True}},
        ),
    }
    bad_file = make_asset(user, "bad-file", status=AssetStatus.REJECTED, rejection_reason="corrupt")
    for asset in [*ours.values(), bad_file]:
        age(asset, pipeline_failed_at=long_ago, updated_at=long_ago)

    result = cleanup_uploads()

    assert result["failed"] == 1 and not IpAsset.objects.filter(pk=bad_file.pk).exists()
    for name, asset in ours.items():
        kept = IpAsset.objects.get(pk=asset.pk)
        assert kept.deleted_at is None and default_storage.exists(kept.storage_key), name
    assert cleanup_uploads(dry_run=True)["failed"] == 0  # and the next runs leave them too


# --- storage-metrics-calculation: any growth, and nobody stopped by somebody else ------------


def snapshot(kind: str, entity_id: str = "") -> StorageMetrics:
    return StorageMetrics.objects.get(snapshot_date=timezone.now().date(), entity_type=kind, entity_id=entity_id)


def declare_size(asset: IpAsset, size: int) -> None:
    """The stored bytes stay small; the row says what the upload declared."""
    IpAsset.objects.filter(pk=asset.pk).update(file_size=size)


def test_storage_trend_holds_a_growth_past_32_bits_and_stops_nobody(user):
    """Issue 21, item 5: 500 bytes yesterday, a 110 MB video today is +2.2 billion bps,
    which overflowed the old integer column and failed the whole statement every day."""
    other = get_user_model().objects.create(username="steady")
    yesterday = timezone.now().date() - DAY
    for owner, total in ((user, 500), (other, 1000)):
        StorageMetrics.objects.create(
            snapshot_date=yesterday, entity_type="user", entity_id=str(owner.pk), total_bytes=total
        )
    declare_size(make_asset(user, "video", type="VIDEO"), 110_000_000)
    declare_size(make_asset(other, "photo"), 1500)

    counts = calculate_storage_metrics()

    assert counts == {"platform": 1, "user": 2, "project": 0, "brand": 0}
    grown = snapshot("user", str(user.pk))
    assert grown.total_bytes == 110_000_000
    assert grown.storage_trend_bps == round((110_000_000 - 500) * 10000 / 500) == 2_199_990_000
    assert snapshot("user", str(other.pk)).storage_trend_bps == 5000  # the others are written too
    assert snapshot("platform").total_bytes == 110_001_500
    calculate_storage_metrics()  # and it keeps working the next time
    assert StorageMetrics.objects.filter(snapshot_date=timezone.now().date()).count() == 3


def test_storage_trend_beyond_any_column_is_capped_not_an_error(user):
    StorageMetrics.objects.create(
        snapshot_date=timezone.now().date() - DAY, entity_type="user", entity_id=str(user.pk), total_bytes=1
    )
    declare_size(make_asset(user, "huge"), 10**15)  # 1 PB after 1 byte: 10^19 bps, past a bigint
    calculate_storage_metrics()
    assert snapshot("user", str(user.pk)).storage_trend_bps == 2**63 - 1


def test_one_kind_that_fails_does_not_stop_the_others(user):
    """A failure injected in the database for the project rows only: the platform, user and
    brand snapshots (brand comes after project) are still written, and the run says what
    failed, so the job is retried."""
    brand = Brand.objects.create(user=user, name="B")
    make_asset(user, "a", size=100, project=Project.objects.create(brand=brand, name="P"))
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_project_rows() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'project snapshot refused'; END $$; "
            "CREATE TRIGGER refuse_project_rows BEFORE INSERT ON storage_metrics FOR EACH ROW "
            "WHEN (NEW.entity_type = 'project') EXECUTE FUNCTION refuse_project_rows();"
        )
    with pytest.raises(StorageMetricsIncomplete, match="project: project snapshot refused"):
        calculate_storage_metrics()
    assert set(StorageMetrics.objects.values_list("entity_type", flat=True)) == {"platform", "user", "brand"}
    assert snapshot("brand", str(brand.pk)).total_bytes == 100


@pytest.mark.django_db(transaction=True)
def test_storage_metrics_with_an_odd_owner_through_a_real_worker(user, run_worker):
    StorageMetrics.objects.create(
        snapshot_date=timezone.now().date() - DAY, entity_type="user", entity_id=str(user.pk), total_bytes=500
    )
    declare_size(make_asset(user, "video", type="VIDEO"), 110_000_000)
    enqueue("storage-metrics-calculation")
    result = run_worker("scheduled")
    assert "job=storage-metrics-calculation" in result.stderr + result.stdout
    assert "outcome=ok" in result.stderr + result.stdout
    assert snapshot("user", str(user.pk)).storage_trend_bps == 2_199_990_000
