"""Personal data of the notifications app (`yesgoddess.core.privacy` says what each
declaration means)."""

from __future__ import annotations

from yesgoddess.core.privacy import deleted_with_account, not_personal

DECLARATIONS = [
    deleted_with_account(
        "notifications.Notification",
        ("message", "action_url", "email_error"),
        "the account's notifications: deleted with it; notification-cleanup deletes read ones after 30 days",
    ),
    not_personal("notifications.Notification", ("email_status",), "a delivery state"),
    not_personal("notifications.NotificationPreference", ("email_frequency",), "a frequency choice"),
    not_personal(
        "notifications.JobFailureAlert",
        ("job_name", "last_error"),
        "a job's name and its error (job arguments and logs carry ids, never personal data)",
    ),
]
