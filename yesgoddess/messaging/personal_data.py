"""Personal data of the messaging app (`yesgoddess.core.privacy` says what each declaration
means)."""

from __future__ import annotations

from yesgoddess.core.privacy import deleted_with_account, kept

DECLARATIONS = [
    deleted_with_account("messaging.Message", ("body",), "every message the account sent or received: deleted with it"),
    kept(
        "messaging.MessageThread",
        ("subject",),
        "a conversation's title, shared by its participants: it stays with the others (the "
        "account's membership and messages go)",
    ),
]
