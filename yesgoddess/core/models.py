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
