"""Account and security jobs (spec B §1, as settled by DECISIONS.md)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError, RestrictedError
from django.db.models.functions import Lower
from django.utils import timezone

from yesgoddess.accounts.models import PasswordResetToken, RememberMeToken, SecurityAlert, VerificationToken
from yesgoddess.core.models import AuditEvent
from yesgoddess.notifications.models import Notification
from yesgoddess.notifications.services import admin_user_ids, notify, send_templated_email

from .sweeps import delete_in_chunks, in_pk_batches, referencing_models

log = logging.getLogger(__name__)

USED_RESET_TOKEN_RETENTION = timedelta(days=7)
ACCOUNT_DELETION_GRACE = timedelta(days=30)
WINDOW = timedelta(minutes=15)
ALERT_ABOVE = 10  # more than 10 failures for one account in the window: alert
LOCK_AT = 15  # 15 or more: lock
LOCK_FOR = timedelta(hours=24)
IP_FAILURES = 20  # 20 or more failures from one IP ...
IP_ACCOUNTS = 5  # ... across 5 or more accounts: credential stuffing
REMEMBER_ME_IDLE = timedelta(days=7)
REMEMBER_ME_PER_USER = 5
LOCK_REASON = "failed_logins"


def _batch_seconds() -> float:
    return settings.CLEANUP_BATCH_SECONDS


# --- token-cleanup --------------------------------------------------------------------


def cleanup_tokens() -> dict[str, int]:
    """Delete expired verification and reset tokens, and reset tokens used over 7 days ago."""
    now = timezone.now()
    verification = delete_in_chunks(VerificationToken.objects.filter(expires__lt=now), _batch_seconds())
    expired_reset = delete_in_chunks(PasswordResetToken.objects.filter(expires__lt=now), _batch_seconds())
    used_reset = delete_in_chunks(
        PasswordResetToken.objects.filter(used_at__lt=now - USED_RESET_TOKEN_RETENTION), _batch_seconds()
    )
    sweeps = (verification, expired_reset, used_reset)
    return {
        "verification_tokens": verification.deleted,
        "expired_reset_tokens": expired_reset.deleted,
        "used_reset_tokens": used_reset.deleted,
        "deleted": sum(s.deleted for s in sweeps),
        "statements": sum(s.statements for s in sweeps),
        "longest_statement_ms": round(max(s.longest_statement_s for s in sweeps) * 1000),
    }


# --- session-cleanup -------------------------------------------------------------------


def cleanup_sessions() -> dict[str, int]:
    """Delete expired Django sessions in short chunks (clearsessions, bounded)."""
    return delete_in_chunks(Session.objects.filter(expire_date__lt=timezone.now()), _batch_seconds()).as_counts()


# --- failed-login-monitor ------------------------------------------------------------------

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
    return now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)


def _first_alert(kind: str, subject: str, now: datetime, failures: int) -> bool:
    """Claim the alert for this subject and slot; False if another run already sent it."""
    try:
        with transaction.atomic():
            SecurityAlert.objects.create(kind=kind, subject=subject, window_start=window_start(now), failures=failures)
        return True
    except IntegrityError:
        return False


def suspicious_activity(now: datetime) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    with connection.cursor() as cursor:
        cursor.execute(FAILURES_SQL, [now - WINDOW, now, ALERT_ABOVE, IP_FAILURES, IP_ACCOUNTS])
        rows = cursor.fetchall()
    accounts = {email: failures for email, ip, failures, _ in rows if email is not None}
    ips = {ip: (failures, distinct) for email, ip, failures, distinct in rows if email is None and ip is not None}
    return accounts, ips


def monitor_failed_logins() -> dict[str, int]:
    """Alert on and lock accounts under attack; alert admins of credential stuffing."""
    now = timezone.now()
    accounts, ips = suspicious_activity(now)
    counts = {"account_alerts": 0, "accounts_locked": 0, "ip_alerts": 0}
    users = (
        {
            u.email.lower(): u
            for u in get_user_model()
            .objects.annotate(lower_email=Lower("email"))
            .filter(lower_email__in=list(accounts))
        }
        if accounts
        else {}
    )
    for email, failures in accounts.items():
        user = users.get(email)
        lock = failures >= LOCK_AT and user is not None
        if lock and not user.is_locked(now):
            get_user_model().objects.filter(pk=user.pk).update(locked_until=now + LOCK_FOR, lock_reason=LOCK_REASON)
            AuditEvent.objects.create(
                action="ACCOUNT_LOCKED",
                entity_type="user",
                entity_id=str(user.pk),
                after={"locked_until": (now + LOCK_FOR).isoformat(), "failures": failures},
            )
            counts["accounts_locked"] += 1
        kind = "account-locked" if lock else "account-failures"
        if not _first_alert(kind, email, now, failures):
            continue
        counts["account_alerts"] += 1
        if user is not None and user.email:
            send_templated_email(
                "security_alert",
                [user.email],
                {
                    "failures": failures,
                    "minutes": 15,
                    "locked": lock,
                    "locked_until": now + LOCK_FOR if lock else None,
                },
            )
        notify(
            admin_user_ids(),
            type=Notification.Type.SYSTEM,
            priority=Notification.Priority.HIGH,
            title="Repeated failed logins" + (" — account locked" if lock else ""),
            message=f"{failures} failed logins in 15 minutes for user {user.pk if user else 'unknown'}.",
            metadata={"user_id": user.pk if user else None, "failures": failures, "locked": lock},
        )
    for ip, (failures, distinct) in ips.items():
        if not _first_alert("ip-stuffing", ip, now, failures):
            continue
        counts["ip_alerts"] += 1
        notify(
            admin_user_ids(),
            type=Notification.Type.SYSTEM,
            priority=Notification.Priority.URGENT,
            title="Possible credential stuffing",
            message=f"{failures} failed logins from {ip} across {distinct} accounts in 15 minutes.",
            metadata={"ip": ip, "failures": failures, "accounts": distinct},
        )
    return counts


# --- password-security-cleanup -----------------------------------------------------------------

PRUNE_EXTRA_REMEMBER_ME_SQL = """
DELETE FROM remember_me_tokens WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY created_at DESC, id DESC) AS rank
        FROM remember_me_tokens
    ) ranked WHERE rank > %s
)
"""


def cleanup_password_security() -> dict[str, Any]:
    """Lift lockouts that have run out (lockouts only: is_active is never touched) and
    prune remember-me tokens: expired, idle for 7 days, or beyond the newest 5 per user."""
    now = timezone.now()
    expired = RememberMeToken.objects.filter(expires_at__lt=now).delete()[0]
    idle = RememberMeToken.objects.filter(last_used_at__lt=now - REMEMBER_ME_IDLE).delete()[0]
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_EXTRA_REMEMBER_ME_SQL, [REMEMBER_ME_PER_USER])
        extra = cursor.rowcount
    unlocked = (
        get_user_model()
        .objects.filter(locked_until__lt=now)
        .exclude(lock_reason="")
        .update(locked_until=None, lock_reason="")
    )
    return {
        "tokens_removed": expired + idle + extra,
        "accounts_unlocked": unlocked,
        "currently_locked": get_user_model().objects.filter(locked_until__gt=now).count(),
    }


# --- account-deletion -----------------------------------------------------------------------------


def _anonymise(user: Any, now: datetime) -> None:
    """Erase the personal data of an account whose rows others still reference (assets,
    brands, licenses): the row stays for those references, nothing identifies the person."""
    user.username = f"deleted-{user.pk}"
    user.email = ""
    user.first_name = ""
    user.last_name = ""
    user.set_unusable_password()
    user.is_active = False
    user.is_staff = False
    user.is_superuser = False
    user.anonymised_at = now
    user.save()


def delete_accounts() -> dict[str, int]:
    """Accounts soft-deleted over 30 days ago: deleted with what cascades, or anonymised
    when other records still reference them; one transaction per account with its audit."""
    now = timezone.now()
    counts = {"deleted": 0, "anonymised": 0}
    candidates = get_user_model().objects.filter(
        deleted_at__lt=now - ACCOUNT_DELETION_GRACE, anonymised_at__isnull=True
    )
    for user in in_pk_batches(candidates, batch=100):
        user_id, role = user.pk, user.role
        with transaction.atomic():
            try:
                with transaction.atomic():
                    user.delete()
                action = "ACCOUNT_PERMANENTLY_DELETED"
                counts["deleted"] += 1
            except (ProtectedError, RestrictedError) as exc:
                _anonymise(get_user_model().objects.get(pk=user_id), now)
                action = "ACCOUNT_ANONYMISED"
                counts["anonymised"] += 1
                log.info("user=%s anonymised: referenced by %s", user_id, referencing_models(exc))
            AuditEvent.objects.create(action=action, entity_type="user", entity_id=str(user_id), after={"role": role})
    return counts
