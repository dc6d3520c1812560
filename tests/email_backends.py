"""Email backends standing in for the outside world in tests."""

from __future__ import annotations

import smtplib

from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class RefusingBackend(LocmemBackend):
    """The locmem backend, except that the server refuses any address containing
    "refuse" (as a real SMTP server refuses a bad recipient)."""

    def send_messages(self, messages):
        for message in messages:
            refused = [address for address in message.recipients() if "refuse" in address]
            if refused:
                raise smtplib.SMTPRecipientsRefused({address: (550, b"no such user") for address in refused})
        return super().send_messages(messages)


class StampingBackend(LocmemBackend):
    """The locmem backend, recording when each message was handed over (time.time())."""

    stamps: list[float] = []

    def send_messages(self, messages):
        import time

        for _ in messages:
            StampingBackend.stamps.append(time.time())
        return super().send_messages(messages)
