"""Account housekeeping (spec B §1, as settled by DECISIONS.md; run by the `token-cleanup`,
`session-cleanup` and `account-deletion` jobs).

- Tokens: expired verification and password-reset tokens go, and so do reset tokens
  used over 7 days ago.
- Sessions: expired Django sessions go (what `clearsessions` does, in short chunks).
- Accounts soft-deleted over 30 days ago are erased: every personal field the apps
  declare next to their models (`<app>/personal_data.py`, `yesgoddess.core.privacy`) is
  erased for the account (its brands and creator profile anonymised, its email events
  and campaign rows reduced to counts, its login records deleted, ...) and the rows that
  cascade from it are deleted. Then the account is deleted, or, while money, licences or
  content still reference it by id, kept anonymised: the row stays for those references
  and nothing in it identifies the person. Each later run deletes the anonymised
  accounts that nothing references any more. One transaction per account, with its
  audit event (ids only).
- Login attempts and security alerts (addresses, IPs, user agents, of people with or
  without an account) are deleted after LOGIN_RECORD_RETENTION.

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
from django.db import models, transaction
from django.db.models import Exists, Model, OuterRef, ProtectedError, Q, QuerySet, RestrictedError
from django.utils import timezone

from yesgoddess.accounts.models import LoginAttempt, PasswordResetToken, SecurityAlert, VerificationToken
from yesgoddess.core.batches import delete_in_chunks, in_pk_batches, referencing_models
from yesgoddess.core.models import AuditEvent
from yesgoddess.core.privacy import erase_account
from yesgoddess.creators.models import Creator

log = logging.getLogger(__name__)

USED_RESET_TOKEN_RETENTION = timedelta(days=7)
ACCOUNT_DELETION_GRACE = timedelta(days=30)
ACCOUNT_DELETION_BATCH = 100
# Login attempts and security alerts name people (an address, an IP, a user agent),
# including people with no account: kept this long, then deleted by account-deletion.
LOGIN_RECORD_RETENTION = timedelta(days=90)


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


def _protecting_relations(model: type[Model]) -> list[Any]:
    """Relations whose rows stop a delete of `model`'s rows (PROTECT / RESTRICT)."""
    return [
        relation
        for relation in model._meta.get_fields(include_hidden=True)
        if relation.auto_created
        and not relation.concrete
        and (relation.one_to_many or relation.one_to_one)
        and relation.on_delete in (models.PROTECT, models.RESTRICT)
    ]


def _referenced(model: type[Model], skip: tuple[type[Model], ...] = ()) -> Q:
    """Rows of `model` (the outer query) that another row protects from deletion."""
    condition = Q()
    for relation in _protecting_relations(model):
        if relation.related_model not in skip:
            rows = relation.related_model._base_manager.filter(**{relation.field.name: OuterRef("pk")})
            condition |= Q(Exists(rows))
    return condition


def deletable_anonymised_accounts() -> QuerySet:
    """Anonymised accounts that nothing references any more, but perhaps their creator
    profile, itself referenced by nothing (no ownership, no royalty statement): they can
    now be deleted (the delete itself has the last word)."""
    user_model = get_user_model()
    referenced_profile = Creator._base_manager.filter(user=OuterRef("pk")).filter(_referenced(Creator))
    return (
        user_model.objects.filter(anonymised_at__isnull=False)
        .exclude(_referenced(user_model, skip=(Creator,)))
        .exclude(Exists(referenced_profile))
    )


def _delete_account(user_id: int) -> list[str]:
    """Delete the account, its creator profile first (which protects it); [] when done,
    else the labels of the models whose rows still reference it (nothing deleted)."""
    try:
        with transaction.atomic():  # a savepoint: a refused delete leaves everything as it was
            Creator._base_manager.filter(user_id=user_id).delete()
            get_user_model()._base_manager.filter(pk=user_id).delete()
        return []
    except (ProtectedError, RestrictedError) as exc:
        return referencing_models(exc) or ["?"]


def _erase_and_delete(user: Any, now: datetime) -> str:
    """Handle one account in one transaction with its audit event; returns what happened.

    First time: every personal field the apps declare is erased and the rows that cascade
    from the account are deleted (`yesgoddess.core.privacy`); then the account is deleted,
    or, while money, licences or content still reference it, kept anonymised. Later runs
    retry the delete of an anonymised account once nothing references it any more."""
    with transaction.atomic():
        # Locked and read again: a run overlapping this one handles each account once.
        user = get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if user is None:
            return "gone"
        user_id, role, first_time = user.pk, user.role, user.anonymised_at is None
        if first_time:
            erase_account(user, now)
        blockers = _delete_account(user_id)
        if not blockers:
            action = "ACCOUNT_PERMANENTLY_DELETED"
        elif first_time:
            action = "ACCOUNT_ANONYMISED"
            log.info("user=%s anonymised: referenced by %s", user_id, blockers)
        else:
            return "still_referenced"
        after = {"role": role} if first_time else {"role": role, "after_anonymisation": True}
        AuditEvent.objects.create(action=action, entity_type="user", entity_id=str(user_id), after=after)
    return "deleted" if action == "ACCOUNT_PERMANENTLY_DELETED" else "anonymised"


def delete_soft_deleted_accounts(now: datetime | None = None) -> dict[str, int]:
    """Accounts soft-deleted over 30 days ago: erased, then deleted or (still referenced)
    kept anonymised; anonymised accounts that nothing references any more: deleted. One
    transaction per account with its audit event; one account's failure (a storage error
    while deleting a brand's files, say) is logged and retried by the next run."""
    now = now or timezone.now()
    counts = {"deleted": 0, "anonymised": 0, "still_referenced": 0, "errors": 0}
    due = get_user_model().objects.filter(deleted_at__lt=now - ACCOUNT_DELETION_GRACE, anonymised_at__isnull=True)
    for queryset in (due, deletable_anonymised_accounts()):
        for user in in_pk_batches(queryset, batch=ACCOUNT_DELETION_BATCH):
            try:
                outcome = _erase_and_delete(user, now)
            except Exception as exc:
                outcome = "errors"
                log.exception("user=%s not erased (%s); the next run retries", user.pk, type(exc).__name__)
            if outcome in ("deleted", "anonymised", "errors"):  # still_referenced: counted below
                counts[outcome] += 1
    # Anonymised by an earlier run and still referenced (this run's own are "anonymised").
    counts["still_referenced"] = get_user_model().objects.filter(anonymised_at__lt=now).count()
    return counts


def purge_old_login_records(now: datetime | None = None) -> dict[str, int]:
    """Login attempts and security alerts older than LOGIN_RECORD_RETENTION: the security
    jobs read the last 15 minutes; an investigation has three months."""
    cutoff = (now or timezone.now()) - LOGIN_RECORD_RETENTION
    attempts = delete_in_chunks(LoginAttempt.objects.filter(timestamp__lt=cutoff), _batch_seconds())
    alerts = delete_in_chunks(SecurityAlert.objects.filter(created_at__lt=cutoff), _batch_seconds())
    return {"login_attempts_purged": attempts.deleted, "security_alerts_purged": alerts.deleted}


def run_account_deletion(now: datetime | None = None) -> dict[str, int]:
    """The account-deletion job: soft-deleted accounts erased and deleted (or anonymised),
    anonymised ones deleted once free, and old login records purged."""
    now = now or timezone.now()
    return {**delete_soft_deleted_accounts(now), **purge_old_login_records(now)}
