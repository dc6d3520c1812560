"""Where personal data lives, and how one account's is erased (issue 21, item 6).

Each app declares its personal fields next to its models, in `yesgoddess/<app>/personal_data.py`:
a list `DECLARATIONS` with one entry per model, saying what becomes of the fields:

- `erased(model, fields, by=fn)`: when an account is erased, `fn(subject)` erases the
  account's copy (deletes the rows or blanks the fields) and returns how many rows it
  touched;
- `deleted_with_account(model, fields)`: the rows hang off the account by a CASCADE
  foreign key, so erasing the account deletes them (as deleting the account would);
- `expires(model, fields, how)`: personal data not tied to an account row, kept for a
  bounded time (`how` says what ends it);
- `kept(model, fields, why)`: personal data kept on purpose (the suppression list);
- `not_personal(model, fields, why)`: a field that looks personal by name or type but
  is not (a project's title, an error message).

A module may also define `account_addresses(user)`: the other email addresses the person
is known by in that app (a brand's contact address), so that the erasers find the rows
sent to them too.

`looks_personal(field)` is the rule `tests/test_personal_data.py` applies to every field of
every installed model: a field that looks personal and is declared nowhere fails it, so a
new personal field cannot be forgotten. `erase_account` runs every eraser, then deletes
what cascades from the account; the accounts app decides when (`accounts/cleanup.py`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from django.apps import apps
from django.db import models

# Words (parts of a field name split on "_") that make a field look personal.
PERSONAL_WORDS = frozenset(
    {
        "about",
        "address",
        "addresses",
        "agent",
        "avatar",
        "bank",
        "billing",
        "bio",
        "birth",
        "birthday",
        "body",
        "browser",
        "city",
        "comment",
        "comments",
        "contact",
        "device",
        "display",
        "dob",
        "email",
        "fax",
        "filename",
        "gender",
        "geo",
        "geographic",
        "iban",
        "ip",
        "link",
        "location",
        "mail",
        "message",
        "mobile",
        "name",
        "names",
        "nickname",
        "note",
        "notes",
        "passport",
        "personal",
        "personalization",
        "phone",
        "photo",
        "postal",
        "postcode",
        "profile",
        "props",
        "recipient",
        "referrer",
        "session",
        "signature",
        "ssn",
        "street",
        "subject",
        "tax",
        "url",
        "username",
        "vat",
        "website",
        "zip",
    }
)
# Types that hold personal data whatever their name: addresses, IP addresses, free text,
# uploaded files.
PERSONAL_TYPES = (models.EmailField, models.GenericIPAddressField, models.TextField, models.FileField)


def looks_personal(model_field: models.Field) -> bool:
    """Whether a field must be declared: a column that may hold an address, a name, a phone
    number, an IP address or user agent, free text or a file. Foreign keys are ids."""
    if not model_field.concrete or model_field.is_relation:
        return False
    if isinstance(model_field, PERSONAL_TYPES):
        return True
    words = set(model_field.name.lower().split("_"))
    return isinstance(model_field, models.CharField | models.JSONField) and bool(words & PERSONAL_WORDS)


@dataclass(frozen=True)
class Subject:
    """The account being erased, as it was before anything was erased."""

    user_id: int
    addresses: frozenset[str]  # lower-cased email addresses the person is known by (never "")
    now: datetime


Eraser = Callable[[Subject], int]


@dataclass(frozen=True)
class Declaration:
    model: str  # "app_label.ModelName"
    fields: tuple[str, ...]
    kind: str  # erased, deleted_with_account, expires, kept, not_personal
    how: str
    eraser: Eraser | None = field(default=None, compare=False)


def erased(model: str, fields: Iterable[str], *, by: Eraser, how: str) -> Declaration:
    return Declaration(model, tuple(fields), "erased", how, by)


def deleted_with_account(model: str, fields: Iterable[str], how: str = "") -> Declaration:
    return Declaration(model, tuple(fields), "deleted_with_account", how or "rows of the account: deleted with it")


def expires(model: str, fields: Iterable[str], how: str) -> Declaration:
    return Declaration(model, tuple(fields), "expires", how)


def kept(model: str, fields: Iterable[str], why: str) -> Declaration:
    return Declaration(model, tuple(fields), "kept", why)


def not_personal(model: str, fields: Iterable[str], why: str) -> Declaration:
    return Declaration(model, tuple(fields), "not_personal", why)


@cache
def _modules() -> tuple[Any, ...]:
    """Every installed app's `personal_data` module (imported on first use, like the
    admin's autodiscovery: importing this module imports no app)."""
    found = []
    for config in apps.get_app_configs():
        name = f"{config.name}.personal_data"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return tuple(found)


def declarations() -> list[Declaration]:
    return [declaration for module in _modules() for declaration in getattr(module, "DECLARATIONS", ())]


def account_addresses(user: Any) -> frozenset[str]:
    """The account's email address and those the apps know the person by, lower-cased."""
    found = {user.email or ""}
    for module in _modules():
        hook = getattr(module, "account_addresses", None)
        if hook is not None:
            found.update(hook(user))
    return frozenset(address.strip().lower() for address in found if address and address.strip())


def cascading_relations(user_model: type[models.Model]) -> list[Any]:
    """The relations whose rows a delete of the account would delete with it."""
    return [
        relation
        for relation in user_model._meta.get_fields(include_hidden=True)
        if relation.auto_created
        and not relation.concrete
        and (relation.one_to_many or relation.one_to_one)
        and relation.on_delete is models.CASCADE
    ]


def delete_cascading_rows(user: Any) -> int:
    """Delete what would go with the account if it were deleted (tokens, notifications,
    messages, preferences, ...): the row that stays after an erasure keeps none of it."""
    deleted = 0
    for relation in cascading_relations(type(user)):
        rows = relation.related_model._base_manager.filter(**{relation.field.name: user.pk})
        deleted += rows.delete()[0]
    return deleted


def erase_account(user: Any, now: datetime) -> dict[str, int]:
    """Erase every declared personal field of the account's rows, then delete the rows that
    cascade from it. The caller holds the transaction (and handles the account row's own
    fields through the accounts app's declaration, like any other)."""
    subject = Subject(user_id=user.pk, addresses=account_addresses(user), now=now)
    touched = 0
    for declaration in declarations():
        if declaration.eraser is not None:
            touched += declaration.eraser(subject)
    return {"rows_erased": touched, "rows_deleted": delete_cascading_rows(user)}


ERASED_REPR = "(erased)"


def forget_admin_names(model: type[models.Model], ids: Iterable[Any]) -> int:
    """Blank the object names that Django's admin history recorded for these rows (it
    keeps `str(obj)` of every object it changed: a username, a brand's name)."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    keys = [str(pk) for pk in ids]
    if not keys:
        return 0
    entries = LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model), object_id__in=keys)
    return entries.exclude(object_repr=ERASED_REPR).update(object_repr=ERASED_REPR)
