"""Messaging and message-digest: unread messages since the last digest (frozen time),
grouped by thread; muted, deleted and read messages left out; once per user and period;
a retry after a crash sends nothing twice; a constant number of queries per batch."""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.api import enqueue
from jobs.handlers.email import send_message_digests
from yesgoddess.core.errors import InvalidInput
from yesgoddess.emailing.services import opt_out, suppress
from yesgoddess.messaging.digest import digest_context, thread_summaries
from yesgoddess.messaging.models import Message, MessageDigest, MessageThread
from yesgoddess.messaging.services import (
    MessagingError,
    mark_thread_read,
    mute_thread,
    post_message,
    start_thread,
    unread_count,
)
from yesgoddess.notifications.models import NotificationPreference
from yesgoddess.notifications.services import render_email

from .email_backends import FlakyBackend, use_flaky_backend
from .license_factories import make_user

pytestmark = pytest.mark.django_db

MONDAY = datetime(2027, 3, 8, 9, 0, tzinfo=UTC)  # a cron run: daily and weekly
TUESDAY = MONDAY + timedelta(days=1)


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def person(name: str, frequency: str | None = "DAILY", **fields):
    user = make_user(first_name=name, email=fields.pop("email", f"{name.lower()}@example.com"), **fields)
    if frequency:
        NotificationPreference.objects.create(user=user, type="MESSAGE", email_frequency=frequency)
    return user


def say(when: datetime, sender, to, body: str = "Hello", subject: str = "Spring shoot", thread=None):
    with at(when):
        if thread is None:
            return start_thread(sender_id=sender.pk, participant_ids=[u.pk for u in to], subject=subject, body=body)
        post_message(thread_id=thread.pk, sender_id=sender.pk, body=body)
        return thread


def digest(moment: datetime = MONDAY, frequency: str = "DAILY") -> dict:
    with at(moment):
        return send_message_digests(frequency=frequency)


def outbox_for(address: str):
    return [m for m in mail.outbox if m.to == [address]]


# --- the messaging service ---------------------------------------------------------------------


def test_a_message_is_one_row_per_other_participant():
    ana, bob, cara = person("Ana"), person("Bob"), person("Cara")
    thread = say(MONDAY, ana, [bob, cara], "Hi both")
    rows = Message.objects.filter(thread=thread)
    assert sorted(m.recipient_id for m in rows) == [bob.pk, cara.pk] and {m.sender_id for m in rows} == {ana.pk}
    assert unread_count(bob.pk) == 1 and unread_count(ana.pk) == 0
    assert mark_thread_read(thread_id=thread.pk, user_id=bob.pk) == 1 and unread_count(bob.pk) == 0
    with pytest.raises(MessagingError):
        post_message(thread_id=thread.pk, sender_id=person("Eve").pk, body="let me in")
    with pytest.raises(MessagingError):
        post_message(thread_id=thread.pk, sender_id=ana.pk, body="   ")
    with pytest.raises(MessagingError):
        start_thread(sender_id=ana.pk, participant_ids=[ana.pk], subject="alone")


# --- message-digest ----------------------------------------------------------------------------


def test_daily_digest_groups_unread_messages_by_thread(settings):
    settings.APP_URL = "https://app.example"
    ana, bob, cara = person("Ana"), person("Bob", last_name="Stone"), person("Cara")
    shoot = say(MONDAY - timedelta(hours=5), bob, [ana], "First draft attached", subject="Spring shoot")
    say(MONDAY - timedelta(hours=4), cara, [ana], "Can we talk budget?", subject="Budget")
    long_body = "x" * 250
    say(MONDAY - timedelta(hours=3), bob, [ana], long_body, thread=shoot)
    result = digest()
    assert result["prepared"] == 1 and result["sent"] == 1  # only Ana has something unread
    (message,) = mail.outbox
    assert message.to == ["ana@example.com"] and message.subject == "You have 3 unread messages"
    text = message.body
    assert text.index("Spring shoot (2 unread, from Bob Stone)") < text.index("Budget (1 unread, from Cara")
    assert "x" * 200 + "..." in text and "x" * 201 not in text
    assert f"Read it: https://app.example/messages/{shoot.pk}" in text and "https://app.example/messages\n" in text
    assert (
        message.extra_headers["List-Unsubscribe"].startswith("<")
        and "/api/email/unsubscribe/" in message.extra_headers["List-Unsubscribe"]
    )
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    row = MessageDigest.objects.get()
    assert (row.user_id, row.frequency, row.status, row.message_count, row.thread_count) == (
        ana.pk,
        "DAILY",
        "SENT",
        3,
        2,
    )
    assert row.covers_from == MONDAY - timedelta(days=1) and row.covers_until == MONDAY and row.sent_at == MONDAY


def test_one_unread_message_is_singular():
    ana, bob = person("Ana"), person("Bob")
    say(MONDAY - timedelta(hours=1), bob, [ana])
    digest()
    assert mail.outbox[0].subject == "You have 1 unread message"


@pytest.mark.parametrize(
    ("frequency", "daily", "weekly"),
    [
        (None, False, False),
        ("IMMEDIATE", False, False),
        ("OFF", False, False),
        ("DAILY", True, False),
        ("WEEKLY", False, True),
    ],
)
def test_only_users_who_chose_the_frequency_get_it(frequency, daily, weekly):
    ana, bob = person("Ana", frequency), person("Bob")
    say(MONDAY - timedelta(hours=1), bob, [ana])
    digest(frequency="DAILY")
    assert bool(outbox_for("ana@example.com")) is daily
    mail.outbox.clear()
    digest(frequency="WEEKLY")  # Monday 09:00: the weekly run too
    assert bool(outbox_for("ana@example.com")) is weekly


def test_weekly_digest_looks_back_a_week_and_runs_once_a_week():
    ana, bob = person("Ana", "WEEKLY"), person("Bob")
    say(MONDAY - timedelta(days=6), bob, [ana], "six days ago")
    say(MONDAY - timedelta(days=8), bob, [ana], "eight days ago", subject="Old")
    assert digest(frequency="weekly")["sent"] == 1
    assert mail.outbox[0].subject == "You have 1 unread message" and "six days ago" in mail.outbox[0].body
    say(MONDAY + timedelta(days=2), bob, [ana], "later that week", subject="New")
    assert digest(MONDAY + timedelta(days=3), frequency="WEEKLY")["sent"] == 0  # same ISO week: once a period
    assert digest(MONDAY + timedelta(days=7), frequency="WEEKLY")["sent"] == 1
    assert "later that week" in mail.outbox[1].body and "six days ago" not in mail.outbox[1].body


def test_since_the_last_digest_sent_with_frozen_time():
    ana, bob = person("Ana"), person("Bob")
    say(MONDAY - timedelta(days=2), bob, [ana], "too old for the first digest", subject="Old")
    thread = say(MONDAY - timedelta(hours=13), bob, [ana], "before the first digest")
    assert digest(MONDAY)["sent"] == 1
    assert "before the first digest" in mail.outbox[0].body and "too old" not in mail.outbox[0].body
    say(MONDAY + timedelta(hours=1), bob, [ana], "after the first digest", thread=thread)
    assert digest(TUESDAY)["sent"] == 1
    second = mail.outbox[1]
    # Still unread, but already reported: only what came since.
    assert second.subject == "You have 1 unread message"
    assert "after the first digest" in second.body and "before the first digest" not in second.body
    assert list(MessageDigest.objects.order_by("pk").values_list("covers_from", "covers_until")) == [
        (MONDAY - timedelta(days=1), MONDAY),
        (MONDAY, TUESDAY),
    ]
    assert digest(TUESDAY + timedelta(days=1))["prepared"] == 0  # nothing new: no row, no email
    assert len(mail.outbox) == 2


def test_a_skipped_day_is_covered_by_the_next_digest():
    ana, bob = person("Ana"), person("Bob")
    say(MONDAY - timedelta(hours=1), bob, [ana], "monday")
    digest(MONDAY)
    say(MONDAY + timedelta(hours=2), bob, [ana], "monday noon", subject="Noon")
    # No run on Tuesday (scheduler down); Wednesday's covers everything since Monday's.
    assert digest(TUESDAY + timedelta(days=1))["sent"] == 1
    assert "monday noon" in mail.outbox[1].body


def test_muted_deleted_and_read_messages_are_left_out():
    ana, bob = person("Ana"), person("Bob")
    before = MONDAY - timedelta(hours=2)
    kept = say(before, bob, [ana], "keep me", subject="Kept")
    muted = say(before, bob, [ana], "muted", subject="Muted")
    gone = say(before, bob, [ana], "thread deleted", subject="Gone")
    read = say(before, bob, [ana], "already read", subject="Read")
    deleted_message = say(before, bob, [ana], "message deleted", subject="Deleted")
    mute_thread(thread_id=muted.pk, user_id=ana.pk)
    MessageThread.objects.filter(pk=gone.pk).update(deleted_at=before)
    mark_thread_read(thread_id=read.pk, user_id=ana.pk)
    Message.objects.filter(thread=deleted_message).update(deleted_at=before)
    mute_thread(thread_id=kept.pk, user_id=bob.pk)  # muted by someone else: still reported to Ana
    digest()
    (message,) = mail.outbox
    assert message.subject == "You have 1 unread message" and "keep me" in message.body
    for hidden in ("muted", "thread deleted", "already read", "message deleted"):
        assert hidden not in message.body


def test_only_muted_or_read_leaves_nobody_to_email():
    ana, bob = person("Ana"), person("Bob")
    thread = say(MONDAY - timedelta(hours=2), bob, [ana])
    mute_thread(thread_id=thread.pk, user_id=ana.pk)
    assert digest()["prepared"] == 0 and mail.outbox == []


def test_a_message_read_between_preparing_and_sending_is_not_reported():
    ana, bob = person("Ana"), person("Bob")
    thread = say(MONDAY - timedelta(hours=2), bob, [ana])
    from yesgoddess.messaging.digest import period_of, prepare_digests, send_digests

    assert prepare_digests("DAILY", period_of("DAILY", MONDAY), MONDAY) == 1
    mark_thread_read(thread_id=thread.pk, user_id=ana.pk)
    assert send_digests("DAILY", period_of("DAILY", MONDAY), MONDAY)["empty"] == 1
    assert mail.outbox == [] and MessageDigest.objects.get().status == "EMPTY"


def test_second_run_the_same_day_sends_nothing():
    ana, bob = person("Ana"), person("Bob")
    say(MONDAY - timedelta(hours=2), bob, [ana])
    assert digest()["sent"] == 1
    say(MONDAY + timedelta(minutes=5), bob, [ana], "a later message", subject="Later")
    again = digest(MONDAY + timedelta(minutes=10))
    assert again["prepared"] == 0 and again["sent"] == 0 and len(mail.outbox) == 1


def test_suppressed_and_opted_out_addresses_get_nothing():
    ana, bob, cara, dan = person("Ana"), person("Bob"), person("Cara"), person("Dan")
    sender = person("Sam", None)
    for user in (ana, bob, cara, dan):
        say(MONDAY - timedelta(hours=1), sender, [user])
    suppress("ana@example.com", "BOUNCE")
    opt_out("bob@example.com", "messages")
    opt_out("cara@example.com", "all")
    opt_out("dan@example.com", "campaigns")  # another category: Dan still gets it
    result = digest()
    assert (result["sent"], result["blocked"]) == (1, 3)
    assert [m.to for m in mail.outbox] == [["dan@example.com"]]


def test_inactive_deleted_and_addressless_users_get_nothing():
    sender = person("Sam", None)
    for user in (
        person("Ina", is_active=False),
        person("Del", deleted_at=MONDAY - timedelta(days=3)),
        person("Nomail", email=""),
    ):
        say(MONDAY - timedelta(hours=1), sender, [user])
    assert digest()["prepared"] == 0 and mail.outbox == []


# --- crashes and batches -----------------------------------------------------------------------


@pytest.fixture
def flaky(settings):
    yield use_flaky_backend(settings, batch_size=2)
    FlakyBackend.reset()


def readers(count: int) -> list:
    sender = person("Sam", None)
    users = [person(f"R{i}") for i in range(count)]
    for user in users:
        say(MONDAY - timedelta(hours=1), sender, [user])
    return users


def test_one_connection_per_batch(flaky):
    readers(5)
    assert digest()["sent"] == 5
    assert flaky.opens == 3


def test_a_retry_after_the_mail_server_went_away_sends_nothing_twice(flaky):
    users = readers(5)
    flaky.refuse_open_after = 1  # the first batch goes out, then the server is unreachable
    with pytest.raises(ConnectionRefusedError):
        digest()
    assert len(mail.outbox) == 2
    assert sorted(MessageDigest.objects.values_list("status", flat=True)) == ["PENDING"] * 3 + ["SENT"] * 2
    flaky.refuse_open_after = None  # RQ's retry, with the server back
    result = digest(MONDAY + timedelta(minutes=1))
    assert result["prepared"] == 0 and result["sent"] == 3
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in users)


def test_a_digest_interrupted_mid_send_is_never_sent_again(flaky):
    readers(4)
    flaky.drop_after = 1  # the connection breaks while sending the second message
    with pytest.raises(smtplib.SMTPServerDisconnected):
        digest()
    statuses = sorted(MessageDigest.objects.values_list("status", flat=True))
    assert statuses == ["PENDING", "PENDING", "SENDING", "SENT"]  # the one in doubt stays claimed
    flaky.drop_after = None
    assert digest(MONDAY + timedelta(minutes=1))["sent"] == 2
    assert len(mail.outbox) == 3  # 1 + 2: the message in doubt is not retried
    # The one in doubt still counts as reported: tomorrow's digest starts after it.
    assert digest(TUESDAY)["prepared"] == 0


def test_a_digest_that_cannot_be_built_fails_alone(monkeypatch):
    from yesgoddess.messaging import digest as message_digest

    users = readers(3)
    real = message_digest.build_digest

    def build(digest, threads):
        if digest.user_id == users[1].pk:
            raise ValueError("template broke")
        return real(digest, threads)

    monkeypatch.setattr(message_digest, "build_digest", build)
    result = digest()
    assert (result["sent"], result["failed"]) == (2, 1)
    assert MessageDigest.objects.get(user=users[1]).status == "FAILED"
    assert sorted(m.to[0] for m in mail.outbox) == sorted([users[0].email, users[2].email])


def test_constant_queries_per_batch(settings):
    settings.EMAIL_BATCH_SIZE = 3

    def queries_for(count: int, threads: int) -> int:
        MessageDigest.objects.all().delete()
        Message.objects.all().delete()
        sender = person("Sam", None)
        others = [person(f"O{i}", None) for i in range(2)]
        users = [person(f"U{count}{threads}{i}") for i in range(count)]
        for user in users:
            for t in range(threads):
                thread = say(MONDAY - timedelta(hours=3), sender, [user], f"m{t}", subject=f"T{t}")
                for other in others:  # more senders and messages per thread
                    say(MONDAY - timedelta(hours=2), sender, [user], "again", thread=thread)
                    thread.memberships.get_or_create(user=other)
                    say(MONDAY - timedelta(hours=1), other, [user], "from another", thread=thread)
        mail.outbox.clear()
        with CaptureQueriesContext(connection) as captured:
            assert digest()["sent"] == count
        NotificationPreference.objects.filter(user__in=users).delete()
        return len(captured)

    one_batch, one_batch_many_threads = queries_for(3, 1), queries_for(3, 4)
    two_batches, three_batches = queries_for(6, 1), queries_for(9, 2)
    assert one_batch == one_batch_many_threads  # threads and messages per user cost no query
    per_batch = two_batches - one_batch
    # 10 per batch here (claim, blocked, threads, latest messages, names, statuses, savepoints).
    assert per_batch > 0 and three_batches - two_batches == per_batch


def test_bad_frequency_is_refused():
    with pytest.raises(InvalidInput):
        send_message_digests(frequency="HOURLY")


def test_template_renders_every_variable(settings):
    settings.APP_URL = "https://app.example"
    ana, bob = person("Ana <3"), person("Bob")
    say(MONDAY - timedelta(hours=1), bob, [ana], "Line one\nLine <b>two</b>", subject="Deal & terms")
    with at(MONDAY):
        row = MessageDigest.objects.create(
            user=ana,
            frequency="WEEKLY",
            period=MONDAY.date(),
            covers_from=MONDAY - timedelta(days=7),
            covers_until=MONDAY,
        )
    context = digest_context(row, thread_summaries([row])[row.pk])
    subject, text, html = render_email("message_digest", context)
    assert subject == "You have 1 unread message"
    assert text.startswith("Hello Ana <3,") and "in 1 conversation this week:" in text
    assert "Deal & terms (1 unread, from Bob)" in text and "Line one\nLine <b>two</b>" in text
    assert "Bob, 2027-03-08 08:00 UTC:" in text and "You get this weekly digest" in text
    assert (
        "Hello Ana &lt;3" in html and "Deal &amp; terms" in html and "Line one<br>Line &lt;b&gt;two&lt;/b&gt;" in html
    )
    assert 'href="https://app.example/messages"' in html and "https://app.example/settings/notifications" in html


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_runs_through_a_real_worker(run_worker):
    ana, bob = person("Ana"), person("Bob")
    now = timezone.now()
    say(now - timedelta(hours=1), bob, [ana])
    enqueue("message-digest", frequency="DAILY")
    run_worker("scheduled")
    row = MessageDigest.objects.get()
    assert (row.user_id, row.status, row.message_count) == (ana.pk, "SENT", 1)


def test_digests_through_a_real_smtp_server_one_connection_with_headers_and_sent_events(settings):
    from yesgoddess.emailing.models import EmailEvent

    from .smtp_server import SmtpServer

    users = readers(3)
    with SmtpServer() as smtp:
        smtp.use_for_django(settings)
        assert digest()["sent"] == 3
    assert smtp.connections == 1 and sorted(smtp.received_by()) == sorted(u.email for u in users)
    for received in smtp.messages:
        headers = received.message
        assert headers["Subject"] == "You have 1 unread message"
        assert "/api/email/unsubscribe/" in headers["List-Unsubscribe"]
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # One SENT event per message, under the Message-ID the server received.
    sent = EmailEvent.objects.filter(event_type="SENT")
    assert sorted(sent.values_list("message_id", flat=True)) == sorted(m.message["Message-ID"] for m in smtp.messages)
