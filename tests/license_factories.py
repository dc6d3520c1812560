"""Builders for license tests: users, a brand, creators owning an asset, licenses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from yesgoddess.assets.models import IpAsset, IpOwnership
from yesgoddess.brands.models import Brand
from yesgoddess.creators.models import Creator
from yesgoddess.licensing.models import License, LicenseStatus
from yesgoddess.projects.models import Project

_seq = itertools.count(1)
OWNED_SINCE = datetime(2020, 1, 1, tzinfo=UTC)


def make_user(**fields: Any):
    n = next(_seq)
    fields.setdefault("email", f"user{n}@example.com")
    fields.setdefault("first_name", f"User{n}")
    return get_user_model().objects.create_user(f"user{n}", **fields)


def make_brand(name: str = "Acme", **fields: Any) -> Brand:
    return Brand.objects.create(user=fields.pop("user", None) or make_user(), name=name, **fields)


def make_creator(name: str | None = None) -> Creator:
    user = make_user()
    return Creator.objects.create(user=user, display_name=name or f"Creator {user.pk}")


def make_asset(*owners: tuple[Creator, int], title: str = "Sunset", **fields: Any) -> IpAsset:
    n = next(_seq)
    asset = IpAsset.objects.create(
        title=title,
        type=fields.pop("type", "IMAGE"),
        storage_key=f"assets/{n}/original.jpg",
        file_size=1,
        mime_type="image/jpeg",
        created_by=fields.pop("created_by", None) or make_user(),
        **fields,
    )
    for creator, share in owners:
        # Owned since long before any period a test computes.
        IpOwnership.objects.create(ip_asset=asset, creator=creator, share_bps=share, start_date=OWNED_SINCE)
    return asset


def make_project(brand: Brand, **fields: Any) -> Project:
    return Project.objects.create(brand=brand, name=fields.pop("name", "Spring campaign"), **fields)


def make_license(
    *,
    brand: Brand | None = None,
    asset: IpAsset | None = None,
    end: datetime | None = None,
    start: datetime | None = None,
    status: str = LicenseStatus.ACTIVE,
    **fields: Any,
) -> License:
    """An ACTIVE license ending in 100 days unless told otherwise (one owner, 100 %)."""
    now = timezone.now()
    end = end or now + timedelta(days=100)
    return License.objects.create(
        brand=brand or make_brand(),
        ip_asset=asset or make_asset((make_creator(), 10_000)),
        start_date=start or end - timedelta(days=365),
        end_date=end,
        status=status,
        fee_cents=fields.pop("fee_cents", 500_000),
        **fields,
    )
