"""ownership-verification: findings recorded, admins told once per finding, fixes close them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from jobs.handlers.asset_housekeeping import verify_ownership
from yesgoddess.assets.models import IpAsset, IpOwnership, OwnershipFinding
from yesgoddess.core.models import AuditEvent
from yesgoddess.creators.models import Creator
from yesgoddess.notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    users = get_user_model().objects
    admin = users.create_superuser("admin", "a@example.com", "pw")
    owner = users.create_user("owner")
    creators = [Creator.objects.create(user=users.create_user(f"c{i}"), display_name=f"c{i}") for i in range(2)]

    def asset(name: str, *shares: int, **fields) -> IpAsset:
        made = IpAsset.objects.create(
            title=name,
            type="IMAGE",
            storage_key=f"k/{name}",
            file_size=1,
            mime_type="image/png",
            created_by=owner,
            **fields,
        )
        for creator, share in zip(creators, shares, strict=False):
            IpOwnership.objects.create(ip_asset=made, creator=creator, share_bps=share)
        return made

    return admin, creators, asset


def test_findings_cover_wrong_sums_and_assets_without_owners(world):
    admin, _, asset = world
    asset("ok", 6000, 4000)
    short = asset("short", 5000, 4000)
    nobody = asset("nobody")
    asset("deleted", 100, deleted_at=timezone.now())
    ended = asset("ended", 10000)
    IpOwnership.objects.filter(ip_asset=ended).update(end_date=timezone.now() - timedelta(days=1))

    assert verify_ownership() == {"invalid": 3, "new_findings": 3, "resolved": 0}
    findings = {f.ip_asset_id: (f.total_bps, f.owner_count) for f in OwnershipFinding.objects.all()}
    assert findings == {short.pk: (9000, 2), nobody.pk: (0, 0), ended.pk: (0, 0)}
    [alert] = Notification.objects.filter(user=admin)
    assert "3 asset(s)" in alert.title and f"asset {short.pk} (9000 bps, 2 owners)" in alert.message
    assert AuditEvent.objects.get(action="OWNERSHIP_INTEGRITY_CHECK_FAILED").after["invalid"] == 3


def test_a_second_run_tells_nobody_again_and_a_fix_closes_the_finding(world):
    admin, creators, asset = world
    short = asset("short", 5000)
    verify_ownership()
    assert verify_ownership() == {"invalid": 1, "new_findings": 0, "resolved": 0}
    assert Notification.objects.filter(user=admin).count() == 1

    IpOwnership.objects.create(ip_asset=short, creator=creators[1], share_bps=5000)
    assert verify_ownership() == {"invalid": 0, "new_findings": 0, "resolved": 1}
    assert OwnershipFinding.objects.get().resolved_at is not None
    assert AuditEvent.objects.filter(action="OWNERSHIP_INTEGRITY_CHECK_PASSED").count() == 1

    IpOwnership.objects.filter(ip_asset=short, creator=creators[1]).delete()  # broken again: a new finding
    assert verify_ownership()["new_findings"] == 1
    assert Notification.objects.filter(user=admin).count() == 2
