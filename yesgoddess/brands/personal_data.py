"""Personal data of the brands app (`yesgoddess.core.privacy` says what each declaration
means): a brand's contacts, billing details, files and free text. Erasing the account that
owns a brand anonymises the brand (`lifecycle.anonymise_brand`) and marks it deleted, so
brand-data-cleanup deletes the row once no licence or project references it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from yesgoddess.core.privacy import Subject, erased, forget_admin_names

from .lifecycle import anonymise_brand, delete_brand_files
from .models import Brand

BRAND_FIELDS = (
    "name",
    "website",
    "description",
    "logo",
    "brand_guidelines",
    "contact_info",
    "billing_info",
    "verification_notes",
)


def _addresses_in(value: Any) -> Iterator[str]:
    """Every string under a key naming an email address, at any depth of a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and "email" in str(key).lower():
                yield item
            else:
                yield from _addresses_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _addresses_in(item)


def account_addresses(user: Any) -> list[str]:
    """The brands' contact and billing addresses: emails went to them too."""
    found: list[str] = []
    for contact, billing in Brand.objects.filter(user_id=user.pk).values_list("contact_info", "billing_info"):
        found += [*_addresses_in(contact), *_addresses_in(billing)]
    return found


def erase_brands(subject: Subject) -> int:
    """Anonymise every brand of the account (files deleted first) and mark it deleted."""
    brands = list(Brand.objects.filter(user_id=subject.user_id, anonymised_at__isnull=True))
    for brand in brands:
        delete_brand_files(brand)
        if brand.deleted_at is None:
            brand.deleted_at = subject.now
            brand.save(update_fields=["deleted_at"])
        anonymise_brand(brand, subject.now)
    forget_admin_names(Brand, Brand.objects.filter(user_id=subject.user_id).values_list("pk", flat=True))
    return len(brands)


DECLARATIONS = [
    erased(
        "brands.Brand",
        BRAND_FIELDS,
        by=erase_brands,
        how="anonymised (lifecycle.anonymise_brand), files deleted, marked deleted; "
        "brand-data-cleanup does the same for brands deleted on their own",
    ),
]
