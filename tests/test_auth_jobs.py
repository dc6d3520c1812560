"""Accounts and security: login recording and lockout, and the five security jobs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import Client
from django.utils import timezone

from jobs.handlers.accounts import (
    cleanup_password_security,
    cleanup_sessions,
    cleanup_tokens,
    delete_accounts,
    monitor_failed_logins,
)
from yesgoddess.accounts.models import (
    LoginAttempt,
    PasswordResetToken,
    RememberMeToken,
    SecurityAlert,
    VerificationToken,
)
from yesgoddess.assets.models import IpAsset
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 10, 5, tzinfo=UTC)  # inside the 10:00-10:15 window


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", "Alice@Example.com", "right-password")


@pytest.fixture
def admin():
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw")


def login(email: str, password: str, client: Client | None = None):
    return (client or Client()).post(
        "/api/auth/login",
        json.dumps({"email": email, "password": password}),
        content_type="application/json",
        REMOTE_ADDR="203.0.113.9",
    )


# --- login -------------------------------------------------------------------------------


def test_every_login_attempt_is_recorded_with_a_lower_cased_email(alice):
    assert login("ALICE@example.COM", "right-password").status_code == 200
    assert login("alice@example.com", "wrong").status_code == 401
    assert login("nobody@example.com", "x").status_code == 401
    rows = list(LoginAttempt.objects.order_by("pk").values_list("email", "success", "failure_reason", "ip_address"))
    assert rows == [
        ("alice@example.com", True, "", "203.0.113.9"),
        ("alice@example.com", False, "INVALID_PASSWORD", "203.0.113.9"),
        ("nobody@example.com", False, "USER_NOT_FOUND", "203.0.113.9"),
    ]


def test_django_admin_login_is_recorded_too(alice):
    Client().post("/admin/login/", {"username": "alice", "password": "wrong"})
    assert LoginAttempt.objects.get().failure_reason == "INVALID_PASSWORD"


def test_a_locked_user_is_refused_with_the_time_the_lock_ends_at_every_entry_point(alice):
    until = timezone.now() + timedelta(hours=3)
    get_user_model().objects.filter(pk=alice.pk).update(locked_until=until, lock_reason="failed_logins")
    response = login("alice@example.com", "right-password")
    assert response.status_code == 423
    assert response.json()["locked_until"] == until.isoformat()
    assert until.strftime("%Y-%m-%d %H:%M UTC") in response.json()["error"]
    admin_page = Client().post("/admin/login/", {"username": "alice", "password": "right-password"})
    assert "locked until" in admin_page.content.decode()
    # A wrong password does not reveal the lock
    assert login("alice@example.com", "wrong").status_code == 401
    reasons = list(LoginAttempt.objects.order_by("pk").values_list("failure_reason", flat=True))
    assert reasons == ["ACCOUNT_LOCKED", "ACCOUNT_LOCKED", "INVALID_PASSWORD"]


def test_bad_login_requests_get_a_clear_error():
    client = Client()
    assert client.post("/api/auth/login", "{nope", content_type="application/json").status_code == 400
    assert client.post("/api/auth/login", "{}", content_type="application/json").status_code == 400
    assert client.get("/api/auth/login").status_code == 405


# --- failed-login-monitor ----------------------------------------------------------------------


def failures(email: str, count: int, *, ago: timedelta = timedelta(minutes=1), ip: str = "198.51.100.1") -> None:
    LoginAttempt.objects.bulk_create(
        LoginAttempt(email=email, ip_address=ip, success=False, failure_reason="INVALID_PASSWORD", timestamp=NOW - ago)
        for _ in range(count)
    )


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("count", "alerted"), [(10, False), (11, True)])
def test_more_than_ten_failures_alert_the_user_and_admins(alice, admin, count, alerted):
    failures("alice@example.com", count)
    result = monitor_failed_logins()
    assert result["account_alerts"] == int(alerted) and result["accounts_locked"] == 0
    assert len(mail.outbox) == int(alerted)
    assert Notification.objects.filter(user=admin).count() == int(alerted)
    if alerted:
        assert mail.outbox[0].to == [alice.email] and "11 failed attempts" in mail.outbox[0].body


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("count", "locked"), [(14, False), (15, True)])
def test_fifteen_failures_lock_the_account_for_24_hours(alice, admin, count, locked):
    failures("alice@example.com", count)
    assert monitor_failed_logins()["accounts_locked"] == int(locked)
    alice.refresh_from_db()
    assert alice.is_active is True  # a lock is never a deactivation
    if locked:
        assert alice.locked_until == NOW + timedelta(hours=24) and alice.lock_reason == "failed_logins"
        assert "locked until 2026-11-29 10:05" in mail.outbox[0].body
        assert AuditEvent.objects.filter(action="ACCOUNT_LOCKED", entity_id=str(alice.pk)).exists()
    else:
        assert alice.locked_until is None


@time_machine.travel(NOW, tick=False)
def test_an_alert_is_sent_once_per_window(alice, admin):
    failures("alice@example.com", 16)
    first = monitor_failed_logins()
    second = monitor_failed_logins()
    assert (first["account_alerts"], second["account_alerts"]) == (1, 0)
    assert (first["accounts_locked"], second["accounts_locked"]) == (1, 0)
    assert len(mail.outbox) == 1 and SecurityAlert.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_only_failures_inside_the_fifteen_minute_window_count(alice, admin):
    failures("alice@example.com", 10, ago=timedelta(minutes=16))
    failures("alice@example.com", 10, ago=timedelta(minutes=15))  # on the boundary: inside
    failures("alice@example.com", 1, ago=timedelta(minutes=14, seconds=59))
    assert monitor_failed_logins()["account_alerts"] == 1
    assert "11 failed attempts" in mail.outbox[0].body


@time_machine.travel(NOW, tick=False)
def test_mixed_case_emails_count_as_one_account(alice, admin):
    failures("alice@example.com", 8)
    failures("ALICE@EXAMPLE.COM", 8)
    assert monitor_failed_logins()["accounts_locked"] == 1
    alice.refresh_from_db()
    assert alice.locked_until is not None


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("total", "accounts", "alerted"), [(19, 5, False), (20, 4, False), (20, 5, True)])
def test_credential_stuffing_from_one_ip_alerts_admins(admin, total, accounts, alerted):
    for n in range(total):
        failures(f"victim{n % accounts}@example.com", 1, ip="192.0.2.77")
    result = monitor_failed_logins()
    assert result["ip_alerts"] == int(alerted)
    alerts = Notification.objects.filter(user=admin, title="Possible credential stuffing")
    assert alerts.count() == int(alerted)
    if alerted:
        assert alerts.get().metadata == {"ip": "192.0.2.77", "failures": 20, "accounts": 5}
        assert monitor_failed_logins()["ip_alerts"] == 0  # once per window


# --- password-security-cleanup ---------------------------------------------------------------------


def test_expired_lockouts_are_lifted_and_deactivated_users_stay_deactivated(alice):
    now = timezone.now()
    users = get_user_model().objects
    users.filter(pk=alice.pk).update(locked_until=now - timedelta(minutes=1), lock_reason="failed_logins")
    still = users.create_user(
        "still", "still@example.com", "pw", locked_until=now + timedelta(hours=1), lock_reason="failed_logins"
    )
    disabled = users.create_user("disabled", "d@example.com", "pw", is_active=False)
    both = users.create_user(
        "both",
        "b@example.com",
        "pw",
        is_active=False,
        locked_until=now - timedelta(hours=1),
        lock_reason="failed_logins",
    )
    result = cleanup_password_security()
    assert result["accounts_unlocked"] == 2 and result["currently_locked"] == 1
    assert users.get(pk=alice.pk).locked_until is None
    assert users.get(pk=still.pk).locked_until is not None
    assert users.get(pk=disabled.pk).is_active is False
    assert users.get(pk=both.pk).is_active is False and users.get(pk=both.pk).locked_until is None
    assert cleanup_password_security()["accounts_unlocked"] == 0


def test_a_lock_refused_at_login_is_lifted_by_the_cleanup(alice):
    with time_machine.travel(NOW, tick=False):
        failures("alice@example.com", 15)
        monitor_failed_logins()
        assert login("alice@example.com", "right-password").status_code == 423
    with time_machine.travel(NOW + timedelta(hours=24, minutes=1), tick=False):
        cleanup_password_security()
        assert login("alice@example.com", "right-password").status_code == 200


def remember(user, *, created_days_ago: float, last_used_days_ago: float | None = None, expires_in_days=20):
    now = timezone.now()
    return RememberMeToken.objects.create(
        user=user,
        token_hash=f"{user.pk}-{created_days_ago}-{last_used_days_ago}-{expires_in_days}",
        created_at=now - timedelta(days=created_days_ago),
        expires_at=now + timedelta(days=expires_in_days),
        last_used_at=now - timedelta(days=last_used_days_ago) if last_used_days_ago is not None else None,
    )


def test_remember_me_tokens_are_pruned_expired_idle_and_beyond_five(alice):
    expired = remember(alice, created_days_ago=40, expires_in_days=-1)
    idle = remember(alice, created_days_ago=20, last_used_days_ago=8)
    never_used = remember(alice, created_days_ago=1)
    recent = [remember(alice, created_days_ago=d / 10, last_used_days_ago=0) for d in range(2, 8)]
    result = cleanup_password_security()
    kept = set(RememberMeToken.objects.values_list("pk", flat=True))
    assert expired.pk not in kept and idle.pk not in kept
    assert len(kept) == 5 and never_used.pk not in kept  # the oldest of the seven left goes
    assert kept == {t.pk for t in recent[:5]}
    assert result["tokens_removed"] == 4


# --- token-cleanup and session-cleanup ----------------------------------------------------------------


def test_token_cleanup_removes_only_what_is_done_with(alice):
    now = timezone.now()
    VerificationToken.objects.create(user=alice, token_hash="v-old", expires=now - timedelta(minutes=1))
    VerificationToken.objects.create(user=alice, token_hash="v-live", expires=now + timedelta(hours=1))
    PasswordResetToken.objects.create(user=alice, token_hash="r-expired", expires=now - timedelta(minutes=1))
    PasswordResetToken.objects.create(
        user=alice, token_hash="r-used-old", expires=now + timedelta(days=30), used_at=now - timedelta(days=8)
    )
    PasswordResetToken.objects.create(
        user=alice, token_hash="r-used-recent", expires=now + timedelta(days=30), used_at=now - timedelta(days=6)
    )
    PasswordResetToken.objects.create(user=alice, token_hash="r-live", expires=now + timedelta(hours=1))
    result = cleanup_tokens()
    assert (result["verification_tokens"], result["expired_reset_tokens"], result["used_reset_tokens"]) == (1, 1, 1)
    assert set(VerificationToken.objects.values_list("token_hash", flat=True)) == {"v-live"}
    assert set(PasswordResetToken.objects.values_list("token_hash", flat=True)) == {"r-used-recent", "r-live"}
    assert cleanup_tokens()["deleted"] == 0


def test_session_cleanup_removes_expired_sessions_only():
    live = SessionStore()
    live["x"] = 1
    live.create()
    old = SessionStore()
    old.create()
    Session.objects.filter(session_key=old.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    assert cleanup_sessions()["deleted"] == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert cleanup_sessions()["deleted"] == 0


# --- account-deletion ----------------------------------------------------------------------------------


def test_account_deletion_deletes_or_anonymises_after_thirty_days(alice):
    users = get_user_model().objects
    now = timezone.now()
    gone = users.create_user("gone", "gone@example.com", "pw", deleted_at=now - timedelta(days=31))
    Notification.objects.create(user=gone, type="SYSTEM", title="t", message="m")
    VerificationToken.objects.create(user=gone, token_hash="g", expires=now + timedelta(days=1))
    recent = users.create_user("recent", "recent@example.com", "pw", deleted_at=now - timedelta(days=29))
    owner = users.create_user(
        "owner", "owner@example.com", "pw", first_name="Olga", deleted_at=now - timedelta(days=40)
    )
    asset = IpAsset.objects.create(
        title="kept", type="IMAGE", storage_key="k/1", file_size=1, mime_type="image/png", created_by=owner
    )

    result = delete_accounts()
    assert (result["deleted"], result["anonymised"], result["still_referenced"], result["errors"]) == (1, 1, 0, 0)
    assert not users.filter(pk=gone.pk).exists()
    assert not Notification.objects.filter(user_id=gone.pk).exists()
    assert users.filter(pk=recent.pk).exists()
    owner.refresh_from_db()
    assert (owner.username, owner.email, owner.first_name, owner.is_active) == (f"deleted-{owner.pk}", "", "", False)
    assert not owner.has_usable_password() and owner.anonymised_at is not None
    assert IpAsset.objects.get(pk=asset.pk).created_by_id == owner.pk
    audits = AuditEvent.objects.filter(entity_type="user").order_by("action")
    assert [(a.action, a.entity_id) for a in audits] == [
        ("ACCOUNT_ANONYMISED", str(owner.pk)),
        ("ACCOUNT_PERMANENTLY_DELETED", str(gone.pk)),
    ]
    assert all("example.com" not in json.dumps(a.after) for a in audits)  # no personal data
    result = delete_accounts()
    assert (result["deleted"], result["anonymised"], result["still_referenced"]) == (0, 0, 1)
