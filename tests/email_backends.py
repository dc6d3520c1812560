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


class DroppingBackend(LocmemBackend):
    """The locmem backend, except that once `drop_after` messages have been sent the
    connection drops (SMTPServerDisconnected) on every further send: the message being
    sent is in doubt, the rest never go. `install` resets the count and selects it."""

    sends = 0
    drop_after: int | None = None

    @classmethod
    def install(cls, settings, drop_after: int | None) -> type[DroppingBackend]:
        settings.EMAIL_BACKEND = f"{__name__}.{cls.__name__}"
        cls.sends, cls.drop_after = 0, drop_after
        return cls

    def send_messages(self, messages):
        if DroppingBackend.drop_after is not None and DroppingBackend.sends >= DroppingBackend.drop_after:
            raise smtplib.SMTPServerDisconnected("connection lost")
        DroppingBackend.sends += len(messages)
        return super().send_messages(messages)


class SlowFileBackend(LocmemBackend):
    """One file per accepted message in $TEST_MAIL_DIR (named after the recipient), after
    $TEST_MAIL_DELAY seconds: lets a test kill a worker mid-batch and count what went out."""

    def send_messages(self, messages):
        import os
        import time
        import uuid
        from pathlib import Path

        folder = Path(os.environ["TEST_MAIL_DIR"])
        for message in messages:
            time.sleep(float(os.environ.get("TEST_MAIL_DELAY", "0")))
            (folder / f"{message.to[0]}-{uuid.uuid4().hex}.eml").write_bytes(message.message().as_bytes())
        return len(messages)


class FlakyBackend(LocmemBackend):
    """locmem, but the server can be made unreachable after some connections
    (`refuse_open_after`), or drop the connection after some messages (`drop_after`)."""

    opens = 0
    sends = 0
    refuse_open_after: int | None = None
    drop_after: int | None = None

    @classmethod
    def reset(cls) -> None:
        cls.opens = cls.sends = 0
        cls.refuse_open_after = cls.drop_after = None

    def open(self):
        if FlakyBackend.refuse_open_after is not None and FlakyBackend.opens >= FlakyBackend.refuse_open_after:
            raise ConnectionRefusedError("mail server unreachable")
        FlakyBackend.opens += 1
        return True

    def send_messages(self, messages):
        if FlakyBackend.drop_after is not None and FlakyBackend.sends >= FlakyBackend.drop_after:
            raise smtplib.SMTPServerDisconnected("connection lost")
        FlakyBackend.sends += len(messages)
        return super().send_messages(messages)


def use_flaky_backend(settings, batch_size: int) -> type[FlakyBackend]:
    """Send through FlakyBackend with EMAIL_BATCH_SIZE messages per connection."""
    settings.EMAIL_BACKEND = "tests.email_backends.FlakyBackend"
    settings.EMAIL_BATCH_SIZE = batch_size
    FlakyBackend.reset()
    return FlakyBackend
