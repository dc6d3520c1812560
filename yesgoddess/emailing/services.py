"""Bulk email rules: who may receive a category, signed unsubscribe links, and the
List-Unsubscribe headers (RFC 2369 and RFC 8058 one-click) every bulk message carries."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction

from .models import EmailCategory, EmailOptOut, EmailSuppression, SuppressionReason

SALT = "yesgoddess.emailing.unsubscribe"


def normalise(email: str) -> str:
    return email.strip().lower()


def unsubscribe_token(email: str, category: str) -> str:
    """A signed, non-expiring token naming the address and category (no login needed)."""
    return signing.dumps({"e": normalise(email), "c": category}, salt=SALT, compress=True)


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(email, category) of a token; signing.BadSignature when it was not ours."""
    data = signing.loads(token, salt=SALT)
    if not isinstance(data, dict) or data.get("c") not in EmailCategory.values or not data.get("e"):
        raise signing.BadSignature("malformed unsubscribe token")
    return data["e"], data["c"]


def unsubscribe_url(email: str, category: str) -> str:
    return f"{settings.API_URL}/api/email/unsubscribe/{unsubscribe_token(email, category)}"


def list_unsubscribe_headers(email: str, category: str) -> dict[str, str]:
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(email, category)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def opt_out(email: str, category: str) -> bool:
    """Record an opt-out; False when it was already recorded."""
    try:
        with transaction.atomic():
            EmailOptOut.objects.create(email=normalise(email), category=category)
            return True
    except IntegrityError:
        return False


def suppress(email: str, reason: str = SuppressionReason.MANUAL, detail: str = "") -> bool:
    """Stop all email to an address; False when it was already suppressed."""
    _, created = EmailSuppression.objects.get_or_create(
        email=normalise(email), defaults={"reason": reason, "detail": detail[:2000]}
    )
    return created


def blocked(emails: Iterable[str], category: str) -> set[str]:
    """The (normalised) addresses among `emails` that may not receive `category`: two queries."""
    wanted = {normalise(e) for e in emails if e}
    if not wanted:
        return set()
    out = set(EmailSuppression.objects.filter(email__in=wanted).values_list("email", flat=True))
    out |= set(
        EmailOptOut.objects.filter(email__in=wanted, category__in=(category, EmailCategory.ALL)).values_list(
            "email", flat=True
        )
    )
    return out
