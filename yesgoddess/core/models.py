from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class IdempotencyKey(models.Model):
    """One `Idempotency-Key` header seen on a POST that triggers work (spec A §3.7).

    Scoped to the user who sent it, so two users can never see each other's response.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    entity_type = models.CharField(max_length=100)
    entity_id = models.CharField(max_length=100, null=True, blank=True)
    request_hash = models.CharField(max_length=64, null=True, blank=True)
    response_status = models.IntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    processed = models.BooleanField(default=False)
    processing_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "idempotency_keys"
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]
        indexes = [
            models.Index(fields=["expires_at", "id"], name="idempotency_expires_idx"),
            models.Index(fields=["entity_type", "entity_id"], name="idempotency_entity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.entity_type})"


class AuditEvent(models.Model):
    """An append-only record of a change that matters (asset, license, royalty run status).

    Carries ids and states only, never personal data (names, emails).
    """

    action = models.CharField(max_length=100)
    entity_type = models.CharField(max_length=50)
    entity_id = models.CharField(max_length=100)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "audit_events"
        indexes = [
            models.Index(fields=["entity_type", "entity_id", "created_at"], name="audit_entity_idx"),
            models.Index(fields=["action", "-created_at"], name="audit_action_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.entity_type}:{self.entity_id}"
