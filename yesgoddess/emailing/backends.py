"""The email backend every send goes through: the configured delivery backend
(EMAIL_DELIVERY_BACKEND: SMTP, an ESP through django-anymail, locmem in tests), paced by
the shared rate limit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from .ratelimit import wait_for_send_slot


class RateLimitedBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        self.inner = get_connection(settings.EMAIL_DELIVERY_BACKEND, fail_silently=fail_silently, **kwargs)

    def open(self) -> bool | None:
        return self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            wait_for_send_slot()
            sent += self.inner.send_messages([message]) or 0
        return sent
