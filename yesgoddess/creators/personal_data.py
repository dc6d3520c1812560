"""Personal data of the creators app (`yesgoddess.core.privacy` says what each declaration
means). The creator profile stays while royalties or ownerships name it (money and
licences need it by id); its stage name goes with the account."""

from __future__ import annotations

from yesgoddess.core.privacy import Subject, erased, forget_admin_names

from .models import Creator


def erased_name(creator_id: int) -> str:
    return f"Deleted creator {creator_id}"


def erase_creator_profile(subject: Subject) -> int:
    """The account's creator profile keeps its id and figures, not its name; marked deleted
    (no report, reminder or match is made for it any more, and search drops it)."""
    erased_count = 0
    for creator in Creator.objects.filter(user_id=subject.user_id):
        if creator.display_name == erased_name(creator.pk) and creator.deleted_at is not None:
            continue
        creator.display_name = erased_name(creator.pk)
        creator.deleted_at = creator.deleted_at or subject.now
        creator.save(update_fields=["display_name", "deleted_at"])  # the save marks it for reindexing
        forget_admin_names(Creator, [creator.pk])
        erased_count += 1
    return erased_count


DECLARATIONS = [
    erased(
        "creators.Creator",
        ("display_name",),
        by=erase_creator_profile,
        how='stage name "Deleted creator <id>", marked deleted; the row goes once nothing references it',
    ),
]
