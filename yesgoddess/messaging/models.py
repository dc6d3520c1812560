"""Direct messages between users (spec C §4.9) and the message digests sent about them.

A thread has participants; each posted message is one `Message` row per other
participant (its recipient), so "unread" and "deleted" are per recipient. A participant
may mute a thread: its messages then stay out of their digests.

`MessageDigest` is the once-only marker of message-digest: one row per user, frequency
and period (the day, or the Monday of the week), claimed before the email goes out. Its
`covers_from`/`covers_until` is the window of messages it reported; the next digest
starts where the last one that went out (or found nothing to say) ended.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone


class MessageThread(models.Model):
    subject = models.CharField(max_length=255, blank=True, default="", db_default="")
    participants = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="ThreadParticipant", related_name="message_threads"
    )
    last_message_at = models.DateTimeField(default=timezone.now, db_default=Now())
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "message_threads"
        indexes = [
            models.Index(fields=["-last_message_at"], name="thread_last_message_idx"),
            models.Index(
                fields=["deleted_at"], name="thread_deleted_idx", condition=models.Q(deleted_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.subject or f"thread {self.pk}"


class ThreadParticipant(models.Model):
    thread = models.ForeignKey(MessageThread, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="thread_memberships")
    joined_at = models.DateTimeField(default=timezone.now, db_default=Now())
    muted_at = models.DateTimeField(null=True, blank=True, help_text="set: no digest mentions this thread")

    class Meta:
        db_table = "message_thread_participants"
        constraints = [models.UniqueConstraint(fields=["thread", "user"], name="thread_participant_once")]
        indexes = [models.Index(fields=["user", "thread"], name="thread_participant_user_idx")]


class Message(models.Model):
    thread = models.ForeignKey(MessageThread, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages_sent")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages_received")
    body = models.TextField()
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "messages"
        indexes = [
            models.Index(fields=["thread", "-created_at"], name="message_thread_created_idx"),
            models.Index(fields=["recipient", "read_at"], name="message_recipient_read_idx"),
            models.Index(fields=["sender"], name="message_sender_idx"),
            # The digest's question: a recipient's unread, undeleted messages in a window.
            models.Index(
                fields=["recipient", "created_at"],
                name="message_unread_idx",
                condition=models.Q(read_at__isnull=True, deleted_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} in thread {self.thread_id}"


class DigestFrequency(models.TextChoices):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"


class DigestStatus(models.TextChoices):
    PENDING = "PENDING"  # prepared, not yet claimed (or released: never attempted)
    SENDING = "SENDING"  # claimed; stays so when a send was interrupted (never sent twice)
    SENT = "SENT"
    REFUSED = "REFUSED"  # the mail server refused it
    FAILED = "FAILED"  # it could not be built (logged); the others of its batch still go
    EMPTY = "EMPTY"  # nothing unread was left when its turn came
    BLOCKED = "BLOCKED"  # suppressed address or opted out of message digests
    SKIPPED = "SKIPPED"  # a later period came before this one was sent


# Digests whose window counts as reported: the next one starts where they ended.
COVERING = (DigestStatus.SENDING, DigestStatus.SENT, DigestStatus.EMPTY, DigestStatus.BLOCKED)


class MessageDigest(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="message_digests")
    frequency = models.CharField(max_length=8, choices=DigestFrequency.choices)
    period = models.DateField(help_text="the day (daily) or the Monday of the week (weekly)")
    status = models.CharField(
        max_length=8, choices=DigestStatus.choices, default=DigestStatus.PENDING, db_default=DigestStatus.PENDING
    )
    covers_from = models.DateTimeField()
    covers_until = models.DateTimeField()
    message_count = models.PositiveIntegerField(default=0, db_default=0)
    thread_count = models.PositiveIntegerField(default=0, db_default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "message_digests"
        constraints = [
            models.UniqueConstraint(fields=["user", "frequency", "period"], name="message_digest_once_per_period")
        ]
        indexes = [
            models.Index(fields=["frequency", "period", "status"], name="message_digest_due_idx"),
            models.Index(fields=["user", "status", "covers_until"], name="message_digest_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.frequency} message digest {self.period} ({self.status})"
