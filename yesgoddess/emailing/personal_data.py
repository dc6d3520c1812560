"""Personal data of the emailing app (`yesgoddess.core.privacy` says what each declaration
means).

Email events are the reputation figures' raw material: an erased account's events stay as
counts (type, time, sender domain, message id) with the address replaced by a token that
is distinct per event row (so distinct-recipient counts stay right) and every free-text
field blanked. The suppression list and opt-outs are the person's own instruction never
to be emailed: they are kept, by design, so the address is never emailed again.
"""

from __future__ import annotations

from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Concat

from yesgoddess.core.privacy import Subject, erased, kept, not_personal

from .models import EmailEvent

ERASED_PREFIX = "erased-"


def erased_address() -> Concat:
    """A token in place of an address: "erased-<row id>", never a deliverable address."""
    return Concat(Value(ERASED_PREFIX), Cast("id", CharField()))


def erase_email_events(subject: Subject) -> int:
    """The account's email events (by account or by any of its addresses), as counts only."""
    rows = EmailEvent.objects.filter(Q(user_id=subject.user_id) | Q(email__in=subject.addresses))
    return rows.update(
        email=erased_address(),
        subject="",
        description="",
        mta_response="",
        click_url="",
        user_agent="",
        metadata={},
    )


DECLARATIONS = [
    erased(
        "emailing.EmailEvent",
        ("email", "subject", "description", "mta_response", "click_url", "user_agent"),
        by=erase_email_events,
        how='address replaced by "erased-<id>", free text and metadata blanked; counts stay',
    ),
    not_personal("emailing.EmailEvent", ("message_id",), "the provider's message id"),
    kept(
        "emailing.EmailSuppression",
        ("email", "detail"),
        "a bounced or complaining address: kept so that it is never emailed again",
    ),
    kept("emailing.EmailOptOut", ("email",), "the person's own opt-out: kept so that it holds"),
]
