"""Who may not be emailed: provider suppressions and recipients' own opt-outs.

A suppression (hard bounce, spam complaint, manual) stops every email to the address;
an opt-out stops one category of bulk email (or all of them, category "all"). Addresses
are stored lower-cased.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class SuppressionReason(models.TextChoices):
    BOUNCE = "BOUNCE"
    COMPLAINT = "COMPLAINT"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    MANUAL = "MANUAL"


class EmailSuppression(models.Model):
    email = models.CharField(max_length=254, unique=True)
    reason = models.CharField(max_length=16, choices=SuppressionReason.choices)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "email_suppressions"

    def __str__(self) -> str:
        return f"suppressed ({self.reason})"


class EmailCategory(models.TextChoices):
    ALL = "all", "every bulk email"
    CAMPAIGNS = "campaigns", "campaigns and newsletters"
    DIGESTS = "digests", "notification digests"
    MESSAGES = "messages", "message digests"


class EmailOptOut(models.Model):
    email = models.CharField(max_length=254)
    category = models.CharField(max_length=16, choices=EmailCategory.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "email_opt_outs"
        constraints = [models.UniqueConstraint(fields=["email", "category"], name="email_opt_out_once")]
