"""Personal data of the assets app (`yesgoddess.core.privacy` says what each declaration
means).

An asset is a creator's work: its title, description and file are what licences are
about, so a licensed asset is kept with them. Erasing an account soft-deletes the uploads
that no licence needs and no other creator owns (their words erased at once); asset-cleanup
then purges them (row and files) after its grace period, and the account can be deleted
once nothing else names it.
"""

from __future__ import annotations

from django.db.models import CharField, Exists, OuterRef, Value
from django.db.models.functions import Cast, Concat

from yesgoddess.core.privacy import Subject, erased, not_personal
from yesgoddess.licensing.models import License
from yesgoddess.search.services import mark_for_reindex

from .models import IpAsset, IpOwnership
from .services import audit


def retire_account_uploads(subject: Subject) -> int:
    """Soft-delete the account's uploads that no licence names and no other creator owns,
    their title, description and file name erased at once."""
    others_own = IpOwnership.objects.filter(ip_asset=OuterRef("pk")).exclude(creator__user_id=subject.user_id)
    retired = list(
        IpAsset.objects.filter(created_by_id=subject.user_id, deleted_at__isnull=True)
        .exclude(Exists(License.objects.filter(ip_asset=OuterRef("pk"))))
        .exclude(Exists(others_own))
    )
    for asset in retired:
        audit(asset, "ASSET_DELETED_WITH_ACCOUNT", asset.status, asset.status)
    ids = [asset.pk for asset in retired]
    # Their words go now; the rows and files with asset-cleanup, after its grace period.
    IpAsset.objects.filter(pk__in=ids).update(
        title=Concat(Value("Deleted asset "), Cast("id", CharField())),
        description=None,
        original_filename="",
        deleted_at=subject.now,
        updated_at=subject.now,
    )
    mark_for_reindex("asset", ids)  # an update sends no signal: the vector is cleared by the flush
    return len(retired)


DECLARATIONS = [
    erased(
        "assets.IpAsset",
        ("description", "original_filename"),
        by=retire_account_uploads,
        how="uploads no licence needs and no other creator owns: erased and soft-deleted, then purged "
        "by asset-cleanup; a licensed or co-owned work keeps its description and file name while it is",
    ),
    not_personal("assets.IpAsset", ("rejection_reason",), "why a file was refused (system wording)"),
    not_personal("assets.IpOwnership", ("contract_reference",), "a contract's reference, which money needs"),
]
