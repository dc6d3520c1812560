"""Who may post an analytics event about what (issue 21 item 15).

An event names objects by id (asset, license, project, post, brand, creator), and its
figures flow into their metrics, license ROI and the roll-ups. So a caller references
only objects they may see, and only trusted sources report money:

- A trusted actor is staff, or a service token (`ApiToken.service`: a server-side
  collector, issued with `create_api_token --service`). Only a trusted actor may send
  `props.revenueCents`, record an event for a visitor (actor_type, actor_id, user_id),
  or reference any object. Events our own jobs write (`system_event`) never pass here.
- Anyone else may reference an object that is not deleted and that they can see:
  - an asset: PUBLISHED (the catalogue), or theirs: they uploaded it, own a current
    share of it, it belongs to their brand's project, or their brand licenses it;
  - a license: their brand's, or one of an asset they uploaded or own a share of;
  - a project: their brand's, one they were matched to, or one they uploaded to;
  - a post: PUBLISHED, or theirs (the author);
  - a brand: verified (its public profile), or their own;
  - a creator: approved (its public profile), or their own profile.

An object a caller may not see is refused exactly like one that does not exist, so the
answer tells nothing about objects that are not theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

REVENUE_PROP = "revenueCents"


@dataclass(frozen=True)
class Actor:
    """Who posts events: the authenticated user, and whether they are a trusted source."""

    user_id: int
    trusted: bool = False


def _current_owner(asset: str, user_id: int) -> Exists:
    """The user holds a current ownership share of the asset `asset` (an OuterRef path)."""
    from yesgoddess.assets.models import IpOwnership

    now = timezone.now()
    return Exists(
        IpOwnership.objects.filter(ip_asset=OuterRef(asset), creator__user_id=user_id, start_date__lte=now).filter(
            Q(end_date__isnull=True) | Q(end_date__gt=now)
        )
    )


def _asset(user_id: int) -> Q:
    from yesgoddess.assets.models import AssetStatus
    from yesgoddess.licensing.models import License

    licensed = Exists(License.objects.filter(ip_asset=OuterRef("pk"), brand__user_id=user_id, deleted_at__isnull=True))
    return (
        Q(status=AssetStatus.PUBLISHED)
        | Q(created_by_id=user_id)
        | Q(project__brand__user_id=user_id)
        | Q(_current_owner("pk", user_id))
        | Q(licensed)
    )


def _license(user_id: int) -> Q:
    return Q(brand__user_id=user_id) | Q(ip_asset__created_by_id=user_id) | Q(_current_owner("ip_asset_id", user_id))


def _project(user_id: int) -> Q:
    from yesgoddess.assets.models import IpAsset
    from yesgoddess.projects.models import ProjectMatch

    matched = Exists(ProjectMatch.objects.filter(project=OuterRef("pk"), creator__user_id=user_id))
    uploaded = Exists(IpAsset.objects.filter(project=OuterRef("pk"), created_by_id=user_id))
    return Q(brand__user_id=user_id) | Q(matched) | Q(uploaded)


def _post(user_id: int) -> Q:
    from yesgoddess.blog.models import PostStatus

    return Q(status=PostStatus.PUBLISHED) | Q(author_id=user_id)


def _brand(user_id: int) -> Q:
    from yesgoddess.brands.models import VerificationStatus

    return Q(verification_status=VerificationStatus.VERIFIED) | Q(user_id=user_id)


def _creator(user_id: int) -> Q:
    from yesgoddess.creators.models import CreatorVerificationStatus

    return Q(verification_status=CreatorVerificationStatus.APPROVED) | Q(user_id=user_id)


VISIBLE: dict[str, Callable[[int], Q]] = {
    "ip_asset_id": _asset,
    "license_id": _license,
    "project_id": _project,
    "post_id": _post,
    "brand_id": _brand,
    "creator_id": _creator,
}


def visible_ids(model: type, key: str, ids: set[int], actor: Actor) -> set[int]:
    """The ids among `ids` of `model` (referenced as `key`) that `actor` may reference in
    an event: one query."""
    rows = model.objects.filter(pk__in=ids)
    if not actor.trusted:
        rows = rows.filter(VISIBLE[key](actor.user_id), deleted_at__isnull=True)
    return set(rows.values_list("pk", flat=True))
