"""fanout.deliver over several SMTP connections at once (EMAIL_SEND_CONNECTIONS), against a
real SMTP server on loopback: each message once, a contiguous run per connection, the
SENT events recorded in the caller's thread, a broken connection settled exactly."""

from __future__ import annotations

from collections import Counter

import pytest
from django.core.mail import EmailMessage

from yesgoddess.emailing.models import EmailEvent
from yesgoddess.notifications import fanout
from yesgoddess.notifications.fanout import deliver, deliver_rows, journal_outcomes

from .smtp_server import SmtpServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def parallel(settings):
    settings.EMAIL_SEND_CONNECTIONS = 4
    settings.EMAIL_BATCH_SIZE = 200
    return settings


def messages(count: int, tag: str = "m") -> list[EmailMessage]:
    built = []
    for number in range(count):
        message = EmailMessage(f"Hello {number}", "Hi.", "news@yesgoddess.test", [f"{tag}{number}@example.com"])
        message.journal_key = f"test-lanes:{tag}:{number}"
        built.append(message)
    return built


def index_of(address: str) -> int:
    return int(address.split("@")[0].lstrip("abcdefghijklmnopqrstuvwxyz"))


def test_a_large_batch_goes_out_over_parallel_connections_each_message_once(parallel):
    batch = messages(120)
    with SmtpServer() as smtp:
        smtp.use_for_django(parallel)
        result = deliver(batch)

        assert sorted(result.sent) == list(range(120)) and result.error is None
        assert not (result.refused or result.unsent or result.in_doubt)
        assert smtp.received_by() == Counter(f"m{n}@example.com" for n in range(120))
        assert smtp.connections == 4
        # Each connection carried one contiguous run of the batch, in order.
        runs: dict[int, list[int]] = {}
        for received in smtp.messages:
            runs.setdefault(received.connection, []).append(index_of(received.rcpt_tos[0]))
        assert sorted(len(run) for run in runs.values()) == [30, 30, 30, 30]
        for run in runs.values():
            assert run == list(range(run[0], run[0] + len(run)))
    # The connections' SENT events, written here (in this test's transaction), once each.
    sent = EmailEvent.objects.filter(event_type="SENT")
    assert Counter(sent.values_list("email", flat=True)) == Counter(f"m{n}@example.com" for n in range(120))
    assert set(journal_outcomes([m.journal_key for m in batch]).values()) == {"sent"}


def test_a_small_send_stays_on_one_connection_in_order(parallel):
    batch = messages(fanout.LANE_MINIMUM * 2 - 1, tag="s")
    with SmtpServer() as smtp:
        smtp.use_for_django(parallel)
        result = deliver(batch)
        assert result.sent == list(range(len(batch)))
        assert smtp.connections == 1
        assert [index_of(m.rcpt_tos[0]) for m in smtp.messages] == list(range(len(batch)))


def test_one_broken_connection_stops_its_run_only_and_a_retry_sends_each_once(parallel):
    """The server drops the connection on the 51st message: that run's message is in
    doubt and the rest of that run unsent; the other runs go on. Sending the unsent ones
    again reaches everyone but the one in doubt, nobody twice."""
    batch = messages(120, tag="d")
    with SmtpServer(drop_after=50) as smtp:
        smtp.use_for_django(parallel)
        result = deliver(batch)

        assert result.error is not None and len(result.in_doubt) == 1
        assert sorted(result.sent + result.in_doubt + result.unsent) == list(range(120))
        assert smtp.received_by() == Counter(f"d{i}@example.com" for i in result.sent)
        broken_run = (result.in_doubt[0] // 30) * 30
        assert result.unsent == list(range(result.in_doubt[0] + 1, broken_run + 30))
        outcomes = journal_outcomes([batch[i].journal_key for i in result.sent + result.in_doubt + result.unsent])
        expected = {"sent": len(result.sent), "in_doubt": 1, "unattempted": len(result.unsent)}
        assert Counter(outcomes.values()) == expected

        retry = deliver([batch[i] for i in result.unsent])
        assert retry.error is None and len(retry.sent) == len(result.unsent)
        received = smtp.received_by()
        assert max(received.values()) == 1 and sum(received.values()) == 119
        assert f"d{result.in_doubt[0]}@example.com" not in received


def test_a_row_and_the_messages_that_follow_it_share_a_connection(parallel):
    rows = list(range(60))

    def messages_of(row: int) -> list[EmailMessage]:
        return [
            EmailMessage("Notice", "Hi.", "news@yesgoddess.test", [f"lead{row}@example.com"]),
            EmailMessage("Notice (copy)", "Hi.", "news@yesgoddess.test", [f"copy{row}@example.com"]),
        ]

    with SmtpServer() as smtp:
        smtp.use_for_django(parallel)
        result = deliver_rows(rows, messages_of)
        assert sorted(result.sent) == rows and sorted(result.also_sent) == rows
        assert smtp.connections == 4
        connection_of = {m.rcpt_tos[0]: m.connection for m in smtp.messages}
        assert all(connection_of[f"lead{r}@example.com"] == connection_of[f"copy{r}@example.com"] for r in rows)


def test_the_runs_are_cut_only_before_a_message_that_follows_none(parallel):
    pending = list(range(100))
    follows = [None if n % 3 == 0 else n - n % 3 for n in pending]  # groups of three
    lanes = fanout._lanes(pending, follows)
    assert len(lanes) == 4 and [n for lane in lanes for n in lane] == pending
    assert all(follows[lane[0]] is None for lane in lanes)
    assert fanout._lanes(pending[:49], None) == [pending[:49]]  # fewer than 2 x LANE_MINIMUM
    parallel.EMAIL_SEND_CONNECTIONS = 1
    assert fanout._lanes(pending, None) == [pending]
