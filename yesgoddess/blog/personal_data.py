"""Personal data of the blog app (`yesgoddess.core.privacy` says what each declaration means)."""

from __future__ import annotations

from yesgoddess.core.privacy import not_personal

DECLARATIONS = [
    not_personal("blog.Post", ("content",), "a published article; its author is a staff account, by id"),
]
