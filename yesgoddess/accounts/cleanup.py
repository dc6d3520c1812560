"""Account housekeeping (spec B §1, as settled by DECISIONS.md; run by the `token-cleanup`,
`session-cleanup` and `account-deletion` jobs).

- Tokens: expired verification and password-reset tokens go, and so do reset tokens
  used over 7 days ago.
- Sessions: expired Django sessions go (what `clearsessions` does, in short chunks).
- Accounts soft-deleted over 30 days ago are deleted with what cascades from them, or,
  when other records still reference them (assets, brands, licenses), anonymised: the
  row stays for those references and nothing in it identifies the person. Each account
  is handled in its own transaction together with its audit event.

Token and session deletes run in chunks sized by CLEANUP_BATCH_SECONDS
(`yesgoddess.core.batches.delete_in_chunks`): no statement holds its locks for long.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import ProtectedError, RestrictedError
from django.utils import timezone

from yesgoddess.accounts.models import PasswordResetToken, VerificationToken
from yesgoddess.core.batches import delete_in_chunks, in_pk_batches, referencing_models
from yesgoddess.core.models import AuditEvent

log = logging.getLogger(__name__)

USED_RESET_TOKEN_RETENTION = timedelta(days=7)
ACCOUNT_DELETION_GRACE = timedelta(days=30)
ACCOUNT_DELETION_BATCH = 100


def _batch_seconds() -> float:
    return settings.CLEANUP_BATCH_SECONDS


# --- tokens and sessions ---------------------------------------------------------------------


def delete_expired_tokens() -> dict[str, int]:
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


def delete_expired_sessions() -> dict[str, int]:
    """Delete expired Django sessions in short chunks (clearsessions, bounded)."""
    return delete_in_chunks(Session.objects.filter(expire_date__lt=timezone.now()), _batch_seconds()).as_counts()


# --- account deletion ------------------------------------------------------------------------


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


def _delete_or_anonymise(user: Any, now: datetime) -> str:
    """Delete one account (or anonymise it when still referenced) with its audit event;
    returns the audit action."""
    user_id, role = user.pk, user.role
    with transaction.atomic():
        try:
            # A savepoint: a refused delete must not abort the account's transaction.
            with transaction.atomic():
                user.delete()
            action = "ACCOUNT_PERMANENTLY_DELETED"
        except (ProtectedError, RestrictedError) as exc:
            _anonymise(get_user_model().objects.get(pk=user_id), now)
            action = "ACCOUNT_ANONYMISED"
            log.info("user=%s anonymised: referenced by %s", user_id, referencing_models(exc))
        AuditEvent.objects.create(action=action, entity_type="user", entity_id=str(user_id), after={"role": role})
    return action


def delete_soft_deleted_accounts() -> dict[str, int]:
    """Accounts soft-deleted over 30 days ago: deleted with what cascades, or anonymised
    when other records still reference them; one transaction per account with its audit."""
    now = timezone.now()
    counts = {"deleted": 0, "anonymised": 0}
    candidates = get_user_model().objects.filter(
        deleted_at__lt=now - ACCOUNT_DELETION_GRACE, anonymised_at__isnull=True
    )
    for user in in_pk_batches(candidates, batch=ACCOUNT_DELETION_BATCH):
        if _delete_or_anonymise(user, now) == "ACCOUNT_ANONYMISED":
            counts["anonymised"] += 1
        else:
            counts["deleted"] += 1
    return counts
