"""Failed-login monitoring and password-security cleanup (spec B §1, as settled by
DECISIONS.md; run by the `failed-login-monitor` and `password-security-cleanup` jobs).

- Failed-login monitoring looks at the last 15 minutes of failed logins in one query.
  An account with more than 10 failures gets an alert (an email to its owner and a HIGH
  notification to the admins); at 15 or more it is also locked for 24 hours, with an
  `ACCOUNT_LOCKED` audit event. One IP with 20 or more failures across 5 or more accounts
  is credential stuffing: the admins get an URGENT notification. Each alert is sent once
  per subject per 15-minute slot (a `SecurityAlert` row claims it), however often the
  monitor runs.
- Password-security cleanup lifts lockouts that have run out (the lock only: `is_active`
  is never touched) and prunes remember-me tokens that are expired, idle for 7 days, or
  beyond the newest 5 of their user.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from yesgoddess.accounts.models import RememberMeToken, SecurityAlert
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import admin_user_ids, notify, send_templated_email

WINDOW_MINUTES = 15
WINDOW = timedelta(minutes=WINDOW_MINUTES)
ALERT_ABOVE = 10  # more than 10 failures for one account in the window: alert
LOCK_AT = 15  # 15 or more: lock
LOCK_FOR = timedelta(hours=24)
IP_FAILURES = 20  # 20 or more failures from one IP ...
IP_ACCOUNTS = 5  # ... across 5 or more accounts: credential stuffing
REMEMBER_ME_IDLE = timedelta(days=7)
REMEMBER_ME_PER_USER = 5
LOCK_REASON = "failed_logins"
SECURITY_ALERT_TEMPLATE = "security_alert"


# --- failed-login monitoring ---------------------------------------------------------------

# One statement, over the partial index of recent failures: failures per account and per
# IP (with how many accounts that IP tried) in the window.
FAILURES_SQL = """
SELECT lower(email) AS email, host(ip_address) AS ip, count(*) AS failures, count(DISTINCT lower(email)) AS accounts
FROM login_attempts
WHERE success = false AND timestamp >= %s AND timestamp <= %s
GROUP BY GROUPING SETS ((lower(email)), (ip_address))
HAVING (GROUPING(lower(email)) = 0 AND count(*) > %s)
    OR (GROUPING(ip_address) = 0 AND ip_address IS NOT NULL AND count(*) >= %s AND count(DISTINCT lower(email)) >= %s)
"""


def window_start(now: datetime) -> datetime:
    """The 15-minute slot `now` falls in: an alert is sent once per subject per slot."""
    return now.replace(minute=now.minute - now.minute % WINDOW_MINUTES, second=0, microsecond=0)


def _first_alert(kind: str, subject: str, now: datetime, failures: int) -> bool:
    """Claim the alert for this subject and slot; False if another run already sent it."""
    try:
        with transaction.atomic():
            SecurityAlert.objects.create(kind=kind, subject=subject, window_start=window_start(now), failures=failures)
        return True
    except IntegrityError:
        return False


def suspicious_activity(now: datetime) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Failures per account over the alert threshold, and (failures, accounts) per stuffing IP."""
    with connection.cursor() as cursor:
        cursor.execute(FAILURES_SQL, [now - WINDOW, now, ALERT_ABOVE, IP_FAILURES, IP_ACCOUNTS])
        rows = cursor.fetchall()
    accounts = {email: failures for email, ip, failures, _ in rows if email is not None}
    ips = {ip: (failures, distinct) for email, ip, failures, distinct in rows if email is None and ip is not None}
    return accounts, ips


def _users_by_email(emails: list[str]) -> dict[str, Any]:
    """The accounts behind the lower-cased emails (attempts may name no account at all)."""
    if not emails:
        return {}
    matching = get_user_model().objects.annotate(lower_email=Lower("email")).filter(lower_email__in=emails)
    return {u.email.lower(): u for u in matching}


def _lock_account(user: Any, now: datetime, failures: int) -> bool:
    """Lock the account for LOCK_FOR with its audit event; False if it is locked already."""
    if user.is_locked(now):
        return False
    locked_until = now + LOCK_FOR
    get_user_model().objects.filter(pk=user.pk).update(locked_until=locked_until, lock_reason=LOCK_REASON)
    AuditEvent.objects.create(
        action="ACCOUNT_LOCKED",
        entity_type="user",
        entity_id=str(user.pk),
        after={"locked_until": locked_until.isoformat(), "failures": failures},
    )
    return True


def _alert_account(user: Any | None, failures: int, locked: bool, now: datetime) -> None:
    """Tell the account's owner (when there is one with an email) and the admins."""
    if user is not None and user.email:
        send_templated_email(
            SECURITY_ALERT_TEMPLATE,
            [user.email],
            {
                "failures": failures,
                "minutes": WINDOW_MINUTES,
                "locked": locked,
                "locked_until": now + LOCK_FOR if locked else None,
            },
        )
    notify(
        admin_user_ids(),
        type=Notification.Type.SYSTEM,
        priority=Notification.Priority.HIGH,
        title="Repeated failed logins" + (" — account locked" if locked else ""),
        message=f"{failures} failed logins in {WINDOW_MINUTES} minutes for user {user.pk if user else 'unknown'}.",
        metadata={"user_id": user.pk if user else None, "failures": failures, "locked": locked},
    )


def _alert_credential_stuffing(ip: str, failures: int, accounts: int) -> None:
    notify(
        admin_user_ids(),
        type=Notification.Type.SYSTEM,
        priority=Notification.Priority.URGENT,
        title="Possible credential stuffing",
        message=f"{failures} failed logins from {ip} across {accounts} accounts in {WINDOW_MINUTES} minutes.",
        metadata={"ip": ip, "failures": failures, "accounts": accounts},
    )


def monitor_failed_logins() -> dict[str, int]:
    """Alert on and lock accounts under attack; alert admins of credential stuffing."""
    now = timezone.now()
    accounts, ips = suspicious_activity(now)
    counts = {"account_alerts": 0, "accounts_locked": 0, "ip_alerts": 0}
    users = _users_by_email(list(accounts))
    for email, failures in accounts.items():
        user = users.get(email)
        lock = failures >= LOCK_AT and user is not None
        if lock and _lock_account(user, now, failures):
            counts["accounts_locked"] += 1
        kind = "account-locked" if lock else "account-failures"
        # The lock above is applied on every run; the alert only once per slot.
        if _first_alert(kind, email, now, failures):
            counts["account_alerts"] += 1
            _alert_account(user, failures, lock, now)
    for ip, (failures, distinct) in ips.items():
        if _first_alert("ip-stuffing", ip, now, failures):
            counts["ip_alerts"] += 1
            _alert_credential_stuffing(ip, failures, distinct)
    return counts


# --- password-security cleanup -------------------------------------------------------------

PRUNE_EXTRA_REMEMBER_ME_SQL = """
DELETE FROM remember_me_tokens WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC, id DESC) AS rank
        FROM remember_me_tokens
    ) ranked WHERE rank > %s
)
"""


def _prune_remember_me_tokens(now: datetime) -> int:
    """Delete remember-me tokens expired, idle too long, or beyond the newest per user."""
    expired = RememberMeToken.objects.filter(expires_at__lt=now).delete()[0]
    idle = RememberMeToken.objects.filter(last_used_at__lt=now - REMEMBER_ME_IDLE).delete()[0]
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_EXTRA_REMEMBER_ME_SQL, [REMEMBER_ME_PER_USER])
        extra = cursor.rowcount
    return expired + idle + extra


def _lift_expired_lockouts(now: datetime) -> int:
    # Only the lock is lifted: an account deactivated by an admin stays inactive.
    return (
        get_user_model()
        .objects.filter(locked_until__lt=now)
        .exclude(lock_reason="")
        .update(locked_until=None, lock_reason="")
    )


def cleanup_password_security() -> dict[str, Any]:
    """Lift lockouts that have run out (lockouts only: is_active is never touched) and
    prune remember-me tokens: expired, idle for 7 days, or beyond the newest 5 per user."""
    now = timezone.now()
    removed = _prune_remember_me_tokens(now)
    unlocked = _lift_expired_lockouts(now)
    return {
        "tokens_removed": removed,
        "accounts_unlocked": unlocked,
        "currently_locked": get_user_model().objects.filter(locked_until__gt=now).count(),
    }
