"""Project job handlers: each turns its queue message into one call to
`yesgoddess.projects.matching` or `yesgoddess.projects.expiry`, where the rules
(spec B §4) live."""

from __future__ import annotations

from typing import Any

from jobs.runtime import set_progress
from yesgoddess.projects.expiry import expire_projects
from yesgoddess.projects.matching import match_creators


def match_project_creators(*, project_id: int) -> dict[str, Any]:
    """project-match-creators: match one ACTIVE project's creators, notify each once."""
    return match_creators(project_id, progress=set_progress)


def check_project_expiry() -> dict[str, int]:
    """project-expiry-check: archive projects past their end date; tell each brand once."""
    return expire_projects()
