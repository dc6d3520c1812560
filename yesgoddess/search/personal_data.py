"""Personal data of the search app (`yesgoddess.core.privacy` says what each declaration
means). The search vectors are not model fields: they are recomputed from the rows they
index, and a soft-deleted row's vector is cleared (`yesgoddess.search.registry`), so
erasing a brand or creator profile (which saves it, deleted) empties its vector too."""

from __future__ import annotations

from yesgoddess.core.privacy import not_personal

DECLARATIONS = [
    not_personal("search.SearchIndexFailure", ("reason",), "an error message"),
]
