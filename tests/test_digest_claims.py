"""message-digest and email-digest (issue 21 item 12): a failure before the send releases
the claim. The rows of a batch are claimed (SENDING, which counts as reported) in the
same transaction that reads what their emails need; when the database fails while it is
being read, or the mail backend cannot even be set up, the rows are PENDING again for
RQ's retry, which sends each digest once.

The database failure is a real one: PostgreSQL terminates this test's own connection
(`pg_terminate_backend`) just as the read is sent, as a failover or a restart would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core import mail
from django.db import OperationalError, close_old_connections, connection

from yesgoddess.campaigns.models import DeferredEmail, DigestStatus, EmailDigest
from yesgoddess.messaging.models import MessageDigest

from .test_email_digest import MON, defer, digest_user
from .test_email_digest import run as run_email_digest
from .test_message_digest import MONDAY, person, say
from .test_message_digest import digest as run_message_digest

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def connection_dropped_at(fragment: str) -> Iterator[list[str]]:
    """PostgreSQL drops this test's connection when the first query containing `fragment`
    is about to run; yields the list of queries it happened to (one at most)."""
    hit: list[str] = []

    def drop(execute, sql, params, many, context):
        if not hit and fragment in sql:
            hit.append(sql)
            execute("SELECT pg_terminate_backend(pg_backend_pid())", None, False, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(drop):
        yield hit
    close_old_connections()  # what the job runtime does after a job: the broken connection is dropped


def unread_messages_for(count: int) -> list:
    sender = person("Sam", None)
    readers = [person(f"R{i}") for i in range(count)]
    for reader in readers:
        say(MONDAY - timedelta(hours=1), sender, [reader])
    return readers


def deferred_items_for(count: int) -> list:
    users = [digest_user(email=f"d{i}@example.com") for i in range(count)]
    for user in users:
        defer(user, "news", MON - timedelta(hours=1))
    return users


def test_a_dropped_database_connection_before_the_send_leaves_message_digests_pending():
    readers = unread_messages_for(3)
    with connection_dropped_at("ARRAY_AGG(m.sender_id") as hit, pytest.raises(OperationalError):
        run_message_digest()  # the threads of the claimed batch are being read
    assert hit, "the threads query never ran"
    assert list(MessageDigest.objects.values_list("status", flat=True)) == ["PENDING"] * 3
    assert mail.outbox == []

    retry = run_message_digest(MONDAY + timedelta(minutes=1))  # RQ's retry
    assert (retry["prepared"], retry["sent"]) == (0, 3)
    assert Counter(m.to[0] for m in mail.outbox) == Counter(r.email for r in readers)
    assert run_message_digest(MONDAY + timedelta(minutes=2))["sent"] == 0


def test_a_dropped_database_connection_before_the_send_leaves_email_digests_pending():
    users = deferred_items_for(3)
    with connection_dropped_at('"deferred_emails"."subject"') as hit, pytest.raises(OperationalError):
        run_email_digest(at=MON)  # the items of the claimed batch are being read
    assert hit, "the items query never ran"
    assert list(EmailDigest.objects.values_list("status", flat=True)) == [DigestStatus.PENDING] * 3
    assert not DeferredEmail.objects.filter(digest__isnull=False).exists()  # the attachment rolled back too
    assert mail.outbox == []

    retry = run_email_digest(at=MON + timedelta(minutes=1))  # RQ's retry
    assert (retry["opened"], retry["sent"], retry["items"]) == (0, 3, 3)
    assert Counter(m.to[0] for m in mail.outbox) == Counter(u.email for u in users)
    assert run_email_digest(at=MON + timedelta(minutes=2))["sent"] == 0


@pytest.fixture
def unusable_mail_backend(settings):
    """A real misconfiguration: Django's SMTP backend refuses to be created with both TLS
    and SSL on (ValueError), so not one message can be attempted."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = True


def test_a_mail_backend_that_cannot_be_set_up_releases_the_claimed_digests(settings, unusable_mail_backend):
    unread_messages_for(2)
    deferred_items_for(2)
    with pytest.raises(ValueError, match="mutually exclusive"):
        run_message_digest()
    with pytest.raises(ValueError, match="mutually exclusive"):
        run_email_digest(at=MON)
    assert set(MessageDigest.objects.values_list("status", flat=True)) == {"PENDING"}
    assert set(EmailDigest.objects.values_list("status", flat=True)) == {DigestStatus.PENDING}

    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False  # fixed; RQ's retry
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert run_message_digest(MONDAY + timedelta(minutes=1))["sent"] == 2
    assert run_email_digest(at=MON + timedelta(minutes=1))["sent"] == 2
    assert len(mail.outbox) == 4
