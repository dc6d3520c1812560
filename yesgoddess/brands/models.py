"""Brands (spec B §8.10): the fields the brand jobs use, and their once-only markers.

New non-null columns carry a database default too (`db_default`), so rows inserted in
plain SQL (benchmarks, fixtures) stay valid.
"""

from __future__ import annotations

import os
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class VerificationStatus(models.TextChoices):
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


def _file_key(kind: str, filename: str) -> str:
    # A fresh prefix per upload: the default storage overwrites, so keys must never collide.
    return f"brands/{uuid.uuid4().hex}/{kind}/{os.path.basename(filename)}"


def logo_key(instance: Brand, filename: str) -> str:
    return _file_key("logo", filename)


def guidelines_key(instance: Brand, filename: str) -> str:
    return _file_key("guidelines", filename)


class Brand(models.Model):
    """A company that licenses creators' IP. `user` is its account (the fallback contact).

    `contact_info` is {primaryContact{name, title, email, phone?}, companyPhone?, website?,
    socialLinks?}; `billing_info` {taxId?, billingEmail, billingAddress{...}, ...}. Both
    hold personal data and are cleared when the brand is anonymised.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="brands")
    name = models.CharField(max_length=255)  # companyName
    industry = models.CharField(max_length=100, null=True, blank=True)
    website = models.TextField(null=True, blank=True)
    description = models.TextField(null=True, blank=True)
    # Storage keys in Django's default storage (never signed URLs).
    logo = models.FileField(upload_to=logo_key, max_length=1024, blank=True, default="", db_default="")
    brand_guidelines = models.FileField(
        upload_to=guidelines_key, max_length=1024, blank=True, default="", db_default=""
    )
    contact_info = models.JSONField(null=True, blank=True)
    billing_info = models.JSONField(null=True, blank=True)
    verification_status = models.CharField(
        max_length=16,
        choices=VerificationStatus.choices,
        default=VerificationStatus.PENDING,
        db_default=VerificationStatus.PENDING,
    )
    verification_notes = models.TextField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # brand-inactivity-check: when the last re-engagement email went out (one per 90 days).
    re_engagement_sent_at = models.DateTimeField(null=True, blank=True)
    # brand-data-cleanup: set when a still-referenced brand's personal data was erased.
    anonymised_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "brands"
        indexes = [
            models.Index(fields=["verification_status", "created_at"], name="brand_verification_idx"),
            models.Index(fields=["deleted_at"], name="brand_deleted_idx", condition=Q(deleted_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def primary_contact(self) -> dict:
        contact = (self.contact_info or {}).get("primaryContact") if isinstance(self.contact_info, dict) else None
        return contact if isinstance(contact, dict) else {}

    def contact_email(self) -> str:
        """The primary contact's address, else the brand account's ("" when neither)."""
        email = self.primary_contact.get("email")
        if isinstance(email, str) and email.strip():
            return email.strip()
        return self.user.email or ""

    def contact_name(self) -> str:
        name = self.primary_contact.get("name")
        if isinstance(name, str) and name.strip():
            return name.strip()
        return self.user.get_full_name() or self.name


class VerificationDigest(models.Model):
    """One brand-verification-reminder summary per UTC day: a second run the same day
    (a retry, a manual run) sends nothing."""

    day = models.DateField(unique=True)
    pending = models.IntegerField(default=0)
    recipients = models.IntegerField(default=0)
    sent = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "brand_verification_digests"

    def __str__(self) -> str:
        return f"verification digest {self.day}"
