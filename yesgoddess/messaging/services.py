"""Posting and reading direct messages.

`start_thread` opens a thread between users, `post_message` adds a message to it (one
row per other participant), `mark_thread_read` and `mute_thread` act for one participant.
A message never triggers an email by itself here: users who chose message digests
(notification preference of type MESSAGE, daily or weekly) get message-digest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .models import Message, MessageThread, ThreadParticipant


class MessagingError(ValueError):
    """A message that cannot be posted (empty, not a participant, deleted thread)."""


@transaction.atomic
def start_thread(
    *, sender_id: int, participant_ids: Iterable[int], subject: str = "", body: str | None = None
) -> MessageThread:
    """A thread between the sender and `participant_ids`; with `body`, its first message."""
    others = [user_id for user_id in dict.fromkeys(participant_ids) if user_id != sender_id]
    if not others:
        raise MessagingError("A thread needs at least one participant besides the sender.")
    now = timezone.now()
    thread = MessageThread.objects.create(subject=subject[:255], last_message_at=now, created_at=now)
    ThreadParticipant.objects.bulk_create(
        ThreadParticipant(thread=thread, user_id=user_id, joined_at=now) for user_id in [sender_id, *others]
    )
    if body is not None:
        post_message(thread_id=thread.pk, sender_id=sender_id, body=body)
    return thread


@transaction.atomic
def post_message(*, thread_id: int, sender_id: int, body: str) -> list[Message]:
    """Post `body` to a thread: one message for each other participant."""
    if not body or not body.strip():
        raise MessagingError("A message needs a body.")
    thread = MessageThread.objects.select_for_update().filter(pk=thread_id, deleted_at__isnull=True).first()
    if thread is None:
        raise MessagingError(f"Thread {thread_id} does not exist.")
    members = list(ThreadParticipant.objects.filter(thread=thread).values_list("user_id", flat=True))
    if sender_id not in members:
        raise MessagingError(f"User {sender_id} is not a participant of thread {thread_id}.")
    now = timezone.now()
    messages = Message.objects.bulk_create(
        Message(thread=thread, sender_id=sender_id, recipient_id=user_id, body=body, created_at=now)
        for user_id in members
        if user_id != sender_id
    )
    MessageThread.objects.filter(pk=thread.pk).update(last_message_at=now, updated_at=now)
    return messages


def mark_thread_read(*, thread_id: int, user_id: int, now: datetime | None = None) -> int:
    """Mark every unread message of the thread to `user_id` read; return how many."""
    return Message.objects.filter(thread_id=thread_id, recipient_id=user_id, read_at__isnull=True).update(
        read_at=now or timezone.now()
    )


def mute_thread(*, thread_id: int, user_id: int, muted: bool = True) -> bool:
    """Mute (or unmute) a thread for one participant; False if they are not one."""
    changed = ThreadParticipant.objects.filter(thread_id=thread_id, user_id=user_id).update(
        muted_at=timezone.now() if muted else None
    )
    return bool(changed)


def unread_count(user_id: int) -> int:
    return Message.objects.filter(
        recipient_id=user_id, read_at__isnull=True, deleted_at__isnull=True, thread__deleted_at__isnull=True
    ).count()
