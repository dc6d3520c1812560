"""Personal data of the projects app (`yesgoddess.core.privacy` says what each declaration
means)."""

from __future__ import annotations

from yesgoddess.core.privacy import not_personal

DECLARATIONS = [
    not_personal(
        "projects.Project",
        ("name", "description"),
        "a brand's project brief: business data its licences refer to (the brand's people are in Brand)",
    ),
    not_personal("projects.ProjectMatch", ("email_status",), "a delivery state"),
]
