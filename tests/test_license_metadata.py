"""License.metadata is merged inside PostgreSQL: concurrent writers of different keys
never lose each other's keys (spec B §6.4: the original read-modify-wrote it)."""

from __future__ import annotations

import pytest

from yesgoddess.licensing.metadata import merge_metadata
from yesgoddess.licensing.models import License

from .concurrency import run_at_once
from .license_factories import make_license


@pytest.mark.django_db(transaction=True)
def test_concurrent_merges_of_different_keys_keep_every_key():
    license = make_license(metadata={"kept": True})
    rounds = 50

    def writer(key: str) -> None:
        for n in range(rounds):
            merge_metadata({license.pk: {key: n, f"{key}-{n}": True}})

    outcomes = run_at_once(lambda: writer("renewal"), lambda: writer("performance"))
    assert outcomes == [None, None]
    metadata = License.objects.get(pk=license.pk).metadata
    assert metadata["kept"] is True
    assert metadata["renewal"] == metadata["performance"] == rounds - 1
    assert all(metadata[f"{key}-{n}"] for key in ("renewal", "performance") for n in range(rounds))


@pytest.mark.django_db
def test_merge_replaces_a_key_and_leaves_the_rest():
    license = make_license(metadata={"a": 1, "b": {"x": 1}})
    assert merge_metadata({license.pk: {"b": {"y": 2}}, 999_999: {"c": 1}}) == 1
    assert License.objects.get(pk=license.pk).metadata == {"a": 1, "b": {"y": 2}}
    assert merge_metadata({}) == 0
