"""How a creator is addressed in an email, and whether one can be sent to them at all
(shared by the onboarding reminders and the monthly reports)."""

from __future__ import annotations

from .models import Creator


def stage_name(creator: Creator) -> str:
    return creator.display_name or creator.user.get_full_name() or "Creator"


def can_email(creator: Creator) -> bool:
    user = creator.user
    return bool(user.email) and user.is_active and user.deleted_at is None
