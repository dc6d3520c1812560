"""idempotency-cleanup and notification-cleanup: what goes, what stays, twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.handlers.system import cleanup_idempotency_keys, cleanup_notifications
from jobs.runtime import execute
from yesgoddess.core.models import IdempotencyKey
from yesgoddess.notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def users():
    model = get_user_model()
    return model.objects.create(username="u1"), model.objects.create(username="u2")


def make_key(user, key: str, expires_in: timedelta) -> IdempotencyKey:
    now = timezone.now()
    return IdempotencyKey.objects.create(user=user, key=key, entity_type="job", expires_at=now + expires_in)


def test_idempotency_cleanup_removes_expired_keys_only(users):
    alice, bob = users
    make_key(alice, "old", -timedelta(hours=1))
    make_key(bob, "older", -timedelta(days=3))
    make_key(alice, "live", timedelta(hours=1))
    make_key(bob, "just-live", timedelta(seconds=30))
    assert cleanup_idempotency_keys()["deleted"] == 2
    assert sorted(IdempotencyKey.objects.values_list("key", flat=True)) == ["just-live", "live"]


def test_idempotency_cleanup_second_run_is_a_no_op(users):
    make_key(users[0], "old", -timedelta(hours=1))
    make_key(users[0], "live", timedelta(hours=1))
    assert cleanup_idempotency_keys()["deleted"] == 1
    assert cleanup_idempotency_keys()["deleted"] == 0
    assert IdempotencyKey.objects.count() == 1


def test_idempotency_cleanup_on_an_empty_table_deletes_nothing():
    assert cleanup_idempotency_keys()["deleted"] == 0


def notify(user, *, type=Notification.Type.LICENSE, read_days_ago=None, created_days_ago=0, priority="MEDIUM"):
    now = timezone.now()
    return Notification.objects.create(
        user=user,
        type=type,
        title="t",
        message="m",
        priority=priority,
        read=read_days_ago is not None,
        read_at=now - timedelta(days=read_days_ago) if read_days_ago is not None else None,
        created_at=now - timedelta(days=created_days_ago),
    )


def test_notification_cleanup_applies_each_retention_rule_at_its_edge(users):
    alice, bob = users
    gone = [
        notify(alice, read_days_ago=31, created_days_ago=40),
        notify(bob, read_days_ago=30.01, created_days_ago=31),
        notify(alice, type="SYSTEM", read_days_ago=8, created_days_ago=9),
        notify(bob, type="SYSTEM", read_days_ago=7.01, created_days_ago=8),
    ]
    kept = [
        notify(alice, read_days_ago=29.9, created_days_ago=40),  # read recently, created long ago
        notify(alice, type="SYSTEM", read_days_ago=6.9, created_days_ago=30),
        notify(bob, created_days_ago=400, priority="LOW"),  # unread: always kept (DECISIONS.md)
        notify(bob, created_days_ago=400, priority="URGENT"),
        notify(alice, type="SYSTEM", created_days_ago=100),
    ]
    read_without_time = notify(alice, created_days_ago=100)
    Notification.objects.filter(pk=read_without_time.pk).update(read=True, read_at=None)
    kept.append(read_without_time)

    assert cleanup_notifications()["deleted"] == len(gone)
    remaining = set(Notification.objects.values_list("pk", flat=True))
    assert remaining == {n.pk for n in kept}


def test_notification_cleanup_second_run_is_a_no_op(users):
    notify(users[0], read_days_ago=60)
    notify(users[0], read_days_ago=1)
    assert cleanup_notifications()["deleted"] == 1
    assert cleanup_notifications()["deleted"] == 0
    assert Notification.objects.count() == 1


def test_cleanup_deletes_in_sql_without_loading_rows(users):
    for i in range(50):
        make_key(users[0], f"k{i}", -timedelta(hours=1))
    with CaptureQueriesContext(connection) as queries:
        cleanup_idempotency_keys()
    statements = [q["sql"] for q in queries.captured_queries]
    row_reads = [s for s in statements if s.startswith("SELECT") and "pg_relation_size" not in s]
    assert row_reads == []
    deletes = [s for s in statements if s.startswith("DELETE")]
    assert deletes and all("ctid >=" in s for s in deletes), deletes


def test_system_jobs_run_through_the_wrapper_and_report_counts(users, caplog):
    make_key(users[0], "old", -timedelta(hours=1))
    caplog.set_level("INFO", logger="jobs.runtime")
    assert execute("idempotency-cleanup")["deleted"] == 1
    line = [r.getMessage() for r in caplog.records if r.name == "jobs.runtime"][-1]
    assert "job=idempotency-cleanup id=inline outcome=ok" in line and "deleted=1" in line
