"""Personal data of the accounts app, and of the Django apps it owns (auth, admin, sessions):
what each field is and how an erased account's copy goes (`yesgoddess.core.privacy`)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db.models import Q
from django.db.models.functions import Coalesce

from yesgoddess.core.privacy import Subject, deleted_with_account, erased, expires, forget_admin_names, not_personal

from .models import LoginAttempt, SecurityAlert


def erase_user_row(subject: Subject) -> int:
    """The account row stays for what references it by id; nothing in it names the person
    and it can never log in again (changing the password hash also ends its sessions)."""
    return (
        get_user_model()
        .objects.filter(pk=subject.user_id)
        .update(
            username=f"deleted-{subject.user_id}",
            email="",
            first_name="",
            last_name="",
            password=make_password(None),
            is_active=False,
            is_staff=False,
            is_superuser=False,
            anonymised_at=Coalesce("anonymised_at", subject.now),
        )
    )


def delete_login_attempts(subject: Subject) -> int:
    """The account's login attempts, and those made with its addresses (before and after)."""
    return LoginAttempt.objects.filter(Q(user_id=subject.user_id) | Q(email__in=subject.addresses)).delete()[0]


def delete_security_alerts(subject: Subject) -> int:
    return SecurityAlert.objects.filter(subject__in=subject.addresses).delete()[0]


def erase_admin_log_names(subject: Subject) -> int:
    """The admin history keeps what was done to the account, not its name (entries about
    its brands and creator profile are their apps' declarations)."""
    return forget_admin_names(get_user_model(), [subject.user_id])


DECLARATIONS = [
    erased(
        "accounts.User",
        ("username", "first_name", "last_name", "email", "password"),
        by=erase_user_row,
        how='username "deleted-<id>", names and address blanked, password unusable, inactive',
    ),
    deleted_with_account("accounts.ApiToken", ("name",)),
    deleted_with_account(
        "accounts.RememberMeToken",
        ("device_info", "ip_address", "user_agent"),
        "deleted with the account; also pruned by password-security-cleanup",
    ),
    erased(
        "accounts.LoginAttempt",
        ("email", "ip_address", "user_agent"),
        by=delete_login_attempts,
        how="the account's attempts deleted; everyone's after LOGIN_RECORD_RETENTION (account-deletion)",
    ),
    not_personal("accounts.LoginAttempt", ("failure_reason",), "a reason code"),
    erased(
        "accounts.SecurityAlert",
        ("subject",),
        by=delete_security_alerts,
        how="alerts about the account's addresses deleted; every alert after LOGIN_RECORD_RETENTION",
    ),
    erased(
        "admin.LogEntry",
        ("object_repr",),
        by=erase_admin_log_names,
        how="entries about the account (and about its brands and creator profile, by their apps) "
        "lose the object's name; entries made by the account go with it (CASCADE)",
    ),
    not_personal("admin.LogEntry", ("object_id", "change_message"), "an id; the names of the fields changed"),
    expires(
        "sessions.Session",
        ("session_data",),
        "expires (session-cleanup deletes expired sessions); an erased account's sessions stop "
        "working at once, its password hash having changed",
    ),
    not_personal("sessions.Session", ("session_key",), "a random key"),
    not_personal("auth.Group", ("name",), "a role's name"),
    not_personal("auth.Permission", ("name",), "a permission's name"),
]
