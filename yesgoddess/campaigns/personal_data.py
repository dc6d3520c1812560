"""Personal data of the campaigns app (`yesgoddess.core.privacy` says what each declaration
means). A campaign itself is staff-written content; its recipients are people."""

from __future__ import annotations

from django.db.models import Q

from yesgoddess.core.privacy import Subject, deleted_with_account, erased, not_personal
from yesgoddess.emailing.personal_data import erased_address

from .models import CampaignRecipient, RecipientStatus


def erase_campaign_recipients(subject: Subject) -> int:
    """The account's recipient rows keep their send state, not the address; one still
    waiting is skipped (the address is gone, and so is the person's account)."""
    rows = CampaignRecipient.objects.filter(Q(user_id=subject.user_id) | Q(email__in=subject.addresses))
    rows.filter(status=RecipientStatus.PENDING).update(status=RecipientStatus.SKIPPED)
    return rows.update(email=erased_address(), personalization={}, error="")


DECLARATIONS = [
    erased(
        "campaigns.CampaignRecipient",
        ("email", "personalization", "error"),
        by=erase_campaign_recipients,
        how='address replaced by "erased-<id>", personalization and error blanked; a waiting row is skipped',
    ),
    not_personal("campaigns.CampaignRecipient", ("message_id",), "the provider's message id"),
    not_personal(
        "campaigns.EmailCampaign",
        ("name", "description", "subject", "status_reason"),
        "staff-written campaign content and its state",
    ),
    deleted_with_account("campaigns.DeferredEmail", ("subject", "summary", "link")),
    deleted_with_account("campaigns.EmailDigest", ("error",)),
]
