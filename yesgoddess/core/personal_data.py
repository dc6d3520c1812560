"""Personal data of the core app (`yesgoddess.core.privacy` says what each declaration means)."""

from __future__ import annotations

from .privacy import deleted_with_account

DECLARATIONS = [
    deleted_with_account(
        "core.IdempotencyKey",
        ("response_body",),
        "a replayed API response: deleted with the account; idempotency-cleanup deletes expired keys",
    ),
]
