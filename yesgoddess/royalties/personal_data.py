"""Personal data of the royalties app (`yesgoddess.core.privacy` says what each declaration
means). Runs, statements and lines are money: they name creators and licences by id and
are never erased; the creator profile they point at is (creators app)."""

from __future__ import annotations

from yesgoddess.core.privacy import not_personal

DECLARATIONS = [
    not_personal("royalties.RoyaltyRun", ("notes",), "the calculation's own notes (totals, failures)"),
]
