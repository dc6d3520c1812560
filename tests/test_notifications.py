"""Notifications: the one service (preferences route each email), the batched
notification-delivery flush (one job for many, at most once each, poison rows, crashes),
the per-item job, the daily/weekly digests ("since the last one sent", once per period,
crash and retry), the API and the templates."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rq import Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from jobs.api import enqueue, get_queue, redis_connection
from jobs.handlers.notifications import deliver_notifications, send_notification_digest_batch, send_notification_digests
from jobs.registry import get_spec
from jobs.rq_classes import JSONJob
from jobs.schedule import SCHEDULE
from yesgoddess.core.errors import InvalidInput
from yesgoddess.emailing.models import SuppressionReason
from yesgoddess.emailing.services import opt_out, suppress
from yesgoddess.notifications import delivery, digest
from yesgoddess.notifications.models import (
    DigestStatus,
    EmailStatus,
    Notification,
    NotificationDigest,
    NotificationPreference,
)
from yesgoddess.notifications.services import alert_admins, notify, render_email

from .conftest import wait_until
from .license_factories import make_user

pytestmark = pytest.mark.django_db

T = Notification.Type
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def prefer(user, **frequencies: str) -> None:
    for type_, frequency in frequencies.items():
        NotificationPreference.objects.update_or_create(user=user, type=type_, defaults={"email_frequency": frequency})


def tell(user, type_: str = T.LICENSE, title: str = "Hello", **fields) -> Notification:
    notify([user.pk], type=type_, title=title, message=fields.pop("message", f"About {title}."), **fields)
    return Notification.objects.filter(user=user).latest("pk")


def statuses(*notifications: Notification) -> list[str]:
    return [Notification.objects.get(pk=n.pk).email_status for n in notifications]


def run_digest(frequency: str) -> dict[str, int]:
    """The cron job's work inline: prepare the period, then each batch job."""
    now = datetime.now(UTC)
    key, prepared = digest.prepare_digests(frequency, now)
    totals = {"prepared": prepared, "sent": 0}
    for first, last in digest.batch_ranges(frequency, key, 500):
        totals["sent"] += send_notification_digest_batch(
            frequency=frequency, period_key=key, first_id=first, last_id=last
        )["sent"]
    return totals


class FlakyBackend(LocmemBackend):
    """locmem, except that the connection breaks while message number `fail_at` is sent."""

    fail_at: int | None = None
    handed = 0

    def send_messages(self, messages):
        for _ in messages:
            FlakyBackend.handed += 1
            if FlakyBackend.handed == FlakyBackend.fail_at:
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = "yesgoddess.emailing.backends.RateLimitedBackend"  # the real wrapper
    settings.EMAIL_DELIVERY_BACKEND = "tests.test_notifications.FlakyBackend"
    FlakyBackend.handed = 0
    FlakyBackend.fail_at = None
    yield FlakyBackend
    FlakyBackend.fail_at = None


class NotifyingBackend(LocmemBackend):
    """Runs in a worker: records each recipient in Redis, and while sending the first
    message creates a notification for the user whose id is in Redis."""

    def send_messages(self, messages):
        conn = redis_connection()
        for message in messages:
            conn.rpush("test:sent", message.to[0])
            if conn.incr("test:first-send") == 1:
                notify([int(conn.get("test:late-user"))], type=T.SYSTEM, title="Late", message="Created mid-flush.")
        return super().send_messages(messages)


# --- the service: preferences route each email ------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "route"),
    [
        (None, EmailStatus.PENDING),  # no preference row: immediate
        ("IMMEDIATE", EmailStatus.PENDING),
        ("DAILY", EmailStatus.DIGEST),
        ("WEEKLY", EmailStatus.DIGEST),
        ("OFF", EmailStatus.NONE),
    ],
)
def test_preference_decides_the_email_route_and_in_app_is_always_created(frequency, route):
    user = make_user()
    if frequency:
        prefer(user, PAYOUT=frequency)
    prefer(user, LICENSE="OFF")  # another type's preference does not matter
    n = tell(user, T.PAYOUT)
    assert n.email_status == route and not n.read


def test_preferences_matrix_immediate_daily_weekly_off(flaky):
    user = make_user()
    prefer(user, PAYOUT="DAILY", ROYALTY="WEEKLY", PROJECT="OFF")  # LICENSE: no row = IMMEDIATE
    with at(MONDAY_9 - timedelta(hours=5)):
        made = {t: tell(user, t, title=f"{t.lower()} news") for t in (T.LICENSE, T.PAYOUT, T.ROYALTY, T.PROJECT)}
    assert Notification.objects.filter(user=user).count() == 4  # in-app: always
    assert statuses(*made.values()) == ["PENDING", "DIGEST", "DIGEST", "NONE"]

    deliver_notifications()
    assert [m.subject for m in mail.outbox] == ["license news"]
    mail.outbox.clear()

    with at(MONDAY_9):
        assert run_digest("DAILY")["sent"] == 1
        assert run_digest("WEEKLY")["sent"] == 1
    daily, weekly = mail.outbox
    assert "payout news" in daily.body and "royalty news" not in daily.body and "project news" not in daily.body
    assert "royalty news" in weekly.body and "payout news" not in weekly.body
    assert "license news" not in daily.body + weekly.body  # sent immediately, not digested


def test_message_notifications_are_left_to_the_message_digest():
    user = make_user()
    prefer(user, MESSAGE="DAILY")
    assert tell(user, T.MESSAGE).email_status == EmailStatus.NONE
    assert tell(make_user(), T.MESSAGE).email_status == EmailStatus.NONE  # even IMMEDIATE


def test_email_false_stores_in_app_only_and_admin_alerts_are_not_emailed_twice(settings):
    settings.ADMIN_EMAILS = ["ops@example.com"]
    admin = make_user(is_staff=True)
    user = make_user()
    n = tell(user, email=False)
    assert n.email_status == EmailStatus.NONE
    alert_admins(title="Scan failed", message="m", email_template="asset_scan_failed", context={"asset_id": 1})
    assert Notification.objects.get(user=admin).email_status == EmailStatus.NONE
    assert [m.to for m in mail.outbox] == [["ops@example.com"]]  # the dedicated email only


def test_rows_created_directly_are_never_emailed():
    user = make_user()
    Notification.objects.bulk_create([Notification(user=user, type=T.ROYALTY, title="t", message="m")])
    assert Notification.objects.get().email_status == EmailStatus.NONE
    deliver_notifications()
    assert mail.outbox == []


# --- notification-delivery: the flush ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_many_notifications_queue_one_flush_not_one_job_each():
    users = [make_user() for _ in range(30)]
    notify([u.pk for u in users], type=T.SYSTEM, title="Maintenance", message="Tonight.")
    for user in users[:10]:  # separate calls too
        tell(user, T.LICENSE)
    queue = get_queue("critical")
    assert queue.count == 1
    job = queue.jobs[0]
    assert list(job.args) == ["notification-delivery"] and job.kwargs == {}
    assert Notification.objects.filter(email_status=EmailStatus.PENDING).count() == 40


@pytest.mark.django_db(transaction=True)
def test_nothing_is_queued_when_the_transaction_rolls_back():
    from django.db import transaction

    user = make_user()
    with pytest.raises(RuntimeError), transaction.atomic():
        tell(user)
        raise RuntimeError("rolled back")
    assert get_queue("critical").count == 0 and not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_flush_takes_a_batch_and_requeues_itself_while_items_remain(run_worker, monkeypatch):
    monkeypatch.setenv("NOTIFICATION_DELIVERY_BATCH", "3")
    users = [make_user() for _ in range(7)]
    notify([u.pk for u in users], type=T.SYSTEM, title="Hi", message="m")
    assert get_queue("critical").count == 1

    run_worker("critical")
    assert Notification.objects.filter(email_status=EmailStatus.SENT).count() == 7
    finished = FinishedJobRegistry("critical", connection=redis_connection()).get_job_ids()
    results = sorted(
        (JSONJob.fetch(i, connection=redis_connection()).return_value() for i in finished),
        key=lambda r: -r["sent"],
    )
    assert [(r["sent"], r["requeued"]) for r in results] == [(3, True), (3, True), (1, False)]


def test_flush_requeue_flag_inline(settings):
    settings.NOTIFICATION_DELIVERY_BATCH = 2
    users = [make_user() for _ in range(3)]
    notify([u.pk for u in users], type=T.SYSTEM, title="Hi", message="m")
    first = deliver_notifications()
    assert first["sent"] == 2 and first["requeued"] is True
    second = deliver_notifications()
    assert second["sent"] == 1 and second["requeued"] is False
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in users)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_items_created_during_a_flush_are_taken_by_the_next(run_worker, monkeypatch):
    monkeypatch.setenv("EMAIL_BACKEND", "tests.test_notifications.NotifyingBackend")
    early = [make_user() for _ in range(2)]
    late = make_user()
    redis_connection().set("test:late-user", late.pk)
    notify([u.pk for u in early], type=T.SYSTEM, title="Early", message="m")

    run_worker("critical")
    sent = [b.decode() for b in redis_connection().lrange("test:sent", 0, -1)]
    assert sorted(sent) == sorted([u.email for u in early] + [late.email])  # each once
    assert Notification.objects.get(user=late).email_status == EmailStatus.SENT
    assert FinishedJobRegistry("critical", connection=redis_connection()).count == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_notification_is_emailed_within_seconds_when_traffic_is_low(background_worker):
    background_worker("critical")
    wait_until(lambda: Worker.count(connection=redis_connection()) > 0, what="worker up")
    user = make_user()
    started = time.monotonic()
    n = tell(user, T.SYSTEM, title="Quick")
    wait_until(lambda: statuses(n) == ["SENT"], timeout=15, what="email sent")
    assert time.monotonic() - started < 5


def test_poison_rows_fail_with_their_reason_and_the_rest_is_sent(settings, monkeypatch):
    settings.EMAIL_BACKEND = "yesgoddess.emailing.backends.RateLimitedBackend"
    settings.EMAIL_DELIVERY_BACKEND = "tests.email_backends.RefusingBackend"
    ok1, ok2 = make_user(), make_user()
    no_address = make_user(email="")
    gone = make_user()
    gone.is_active = False
    gone.save()
    bounced = make_user()
    suppress(bounced.email.upper(), SuppressionReason.BOUNCE)
    refused = make_user(email="refuse-me@example.com")
    broken = make_user()
    rows = {u: tell(u, T.SYSTEM, title="x") for u in (ok1, no_address, gone, bounced, broken, refused, ok2)}

    real = delivery.email_context

    def context(notification):
        if notification.user_id == broken.pk:
            raise ValueError("template variable missing")
        return real(notification)

    monkeypatch.setattr(delivery, "email_context", context)
    counts = deliver_notifications()

    assert sorted(m.to[0] for m in mail.outbox) == sorted([ok1.email, ok2.email])
    got = {u: Notification.objects.get(pk=n.pk) for u, n in rows.items()}
    assert got[ok1].email_status == got[ok2].email_status == EmailStatus.SENT and got[ok1].emailed_at
    expected = {
        no_address: "no email address",
        gone: "account inactive or deleted",
        bounced: "address suppressed",
        broken: "email not built: ValueError: template variable missing",
        refused: "refused by the mail server",
    }
    for user, reason in expected.items():
        assert got[user].email_status == EmailStatus.FAILED and reason in got[user].email_error, user
    assert counts["sent"] == 2 and counts["failed"] == 5 and counts["requeued"] is False


def test_crash_mid_flush_loses_nothing_unsent_and_never_resends_the_one_in_doubt(flaky):
    users = [make_user() for _ in range(6)]
    notify([u.pk for u in users], type=T.SYSTEM, title="Hi", message="m")
    rows = list(Notification.objects.order_by("pk"))
    flaky.fail_at = 3

    with pytest.raises(smtplib.SMTPServerDisconnected):
        deliver_notifications()
    assert statuses(*rows) == ["SENT", "SENT", "SENDING", "PENDING", "PENDING", "PENDING"]
    assert "in doubt" in Notification.objects.get(pk=rows[2].pk).email_error

    flaky.fail_at = None
    assert deliver_notifications()["sent"] == 3  # RQ's retry, or the next flush
    assert deliver_notifications()["sent"] == 0
    sent_to = [m.to[0] for m in mail.outbox]
    assert sorted(sent_to) == sorted(u.email for i, u in enumerate(users) if i != 2)  # each once, in-doubt not re-sent
    assert statuses(*rows) == ["SENT", "SENT", "SENDING", "SENT", "SENT", "SENT"]


def test_flush_queries_do_not_grow_with_the_batch():
    def queries_for(count: int) -> int:
        users = [make_user() for _ in range(count)]
        notify([u.pk for u in users], type=T.SYSTEM, title="Hi", message="m")
        with CaptureQueriesContext(connection) as captured:
            assert deliver_notifications()["sent"] == count
        return len(captured)

    assert queries_for(3) == queries_for(40)


# --- notification-delivery: one by id ---------------------------------------------------


def test_deliver_one_by_id_sends_exactly_that_one_once():
    a, b = make_user(), make_user()
    na, nb = tell(a), tell(b)
    result = deliver_notifications(notification_id=na.pk)
    assert result["sent"] == 1 and [m.to for m in mail.outbox] == [[a.email]]
    assert statuses(na, nb) == ["SENT", "PENDING"]
    again = deliver_notifications(notification_id=na.pk)
    assert again == {"notification_id": na.pk, "skipped": "email status is SENT"} and len(mail.outbox) == 1


def test_deliver_one_skips_rows_not_routed_to_email_and_retries_a_failed_one():
    user = make_user(email="")
    failed = tell(user)
    deliver_notifications(notification_id=failed.pk)
    assert statuses(failed) == ["FAILED"]
    user.email = "fixed@example.com"
    user.save()
    assert deliver_notifications(notification_id=failed.pk)["sent"] == 1  # an operator's retry
    quiet = tell(user, email=False)
    assert deliver_notifications(notification_id=quiet.pk)["skipped"] == "email status is NONE"


def test_deliver_one_missing_id_is_bad_input():
    with pytest.raises(InvalidInput, match="Notification 987654 does not exist"):
        deliver_notifications(notification_id=987_654)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_missing_id_fails_once_without_retries_in_a_real_worker(run_worker):
    job_id = enqueue("notification-delivery", notification_id=987_654)
    run_worker("critical")
    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.get_status() == "failed" and job.retries_left == 0
    assert job_id in FailedJobRegistry("critical", connection=redis_connection()).get_job_ids()
    assert "JobInputError: Notification 987654 does not exist." in job.latest_result().exc_string


# --- notification-digest ----------------------------------------------------------------


def test_daily_digest_covers_since_the_last_one_sent_and_a_second_run_sends_nothing():
    user = make_user()
    prefer(user, LICENSE="DAILY")
    with at(MONDAY_9 - timedelta(hours=30)):
        tell(user, title="too old")  # before the first digest's window (one day)
    with at(MONDAY_9 - timedelta(hours=20)):
        tell(user, title="item-one")
    with at(MONDAY_9):
        assert run_digest("DAILY") == {"prepared": 1, "sent": 1}
    with at(MONDAY_9 + timedelta(minutes=30)):
        assert run_digest("DAILY") == {"prepared": 0, "sent": 0}  # once per day
    [first] = mail.outbox
    assert first.subject == "You have 1 notification"
    assert "item-one" in first.body and "too old" not in first.body

    with at(MONDAY_9 + timedelta(hours=3)):
        tell(user, title="two")
    with at(MONDAY_9 + timedelta(hours=4)):
        read = tell(user, title="read already")
        Notification.objects.filter(pk=read.pk).update(read=True, read_at=MONDAY_9 + timedelta(hours=5))
    # No digest on Tuesday (say the scheduler was down): Wednesday's covers since Monday's.
    with at(MONDAY_9 + timedelta(days=1, hours=2)):
        tell(user, title="three")
    with at(MONDAY_9 + timedelta(days=2)):
        assert run_digest("DAILY")["sent"] == 1
    second = mail.outbox[1]
    assert second.subject == "You have 2 notifications"
    assert "two (Mar 2, 12:00 UTC)" in second.body and "three (Mar 3, 11:00 UTC)" in second.body
    assert "item-one" not in second.body and "read already" not in second.body
    rows = NotificationDigest.objects.filter(user=user).order_by("pk")
    assert [(r.period_key, r.status, r.notification_count) for r in rows] == [
        ("2026-03-02", "SENT", 1),
        ("2026-03-04", "SENT", 2),
    ]
    assert rows[1].window_start == rows[0].window_end == MONDAY_9


def test_weekly_digest_first_window_is_seven_days():
    user = make_user()
    prefer(user, ROYALTY="WEEKLY")
    with at(MONDAY_9 - timedelta(days=8)):
        tell(user, T.ROYALTY, title="eight days ago")
    with at(MONDAY_9 - timedelta(days=6)):
        tell(user, T.ROYALTY, title="six days ago")
    with at(MONDAY_9):
        assert run_digest("DAILY")["prepared"] == 0  # not a DAILY user
        assert run_digest("WEEKLY")["sent"] == 1
        assert run_digest("WEEKLY")["prepared"] == 0
    [email] = mail.outbox
    assert "six days ago" in email.body and "eight days ago" not in email.body
    assert NotificationDigest.objects.get().period_key == "2026-W10"


def test_digest_groups_by_type_with_counts_links_and_unsubscribe_headers(settings):
    settings.APP_URL = "https://app.example"
    user = make_user(first_name="Ana")
    prefer(user, LICENSE="DAILY", PAYOUT="DAILY", SYSTEM="WEEKLY")
    with at(MONDAY_9 - timedelta(hours=2)):
        tell(user, T.PAYOUT, title="Payout sent", action_url="/payouts/7")
        for i in range(12):
            tell(user, T.LICENSE, title=f"License note {i}")
        tell(user, T.SYSTEM, title="weekly only")
    with at(MONDAY_9):
        run_digest("DAILY")
    [email] = mail.outbox
    assert email.subject == "You have 13 notifications"
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/api/email/unsubscribe/" in email.extra_headers["List-Unsubscribe"]
    body = email.body
    assert "Hello Ana" in body
    assert body.index("Licenses (12)") < body.index("Payouts (1)")  # the types' declared order
    assert "https://app.example/payouts/7" in body
    assert "License note 11" in body and "License note 1\n" not in body  # the newest 10 listed
    assert "... and 2 more" in body and "weekly only" not in body
    html = email.alternatives[0][0]
    assert "Licenses (12)" in html and 'href="https://app.example/payouts/7"' in html


def test_digest_honours_opt_outs_suppressions_and_missing_addresses():
    users = {name: make_user() for name in ("ok", "opted_out", "all_out", "bounced", "no_address")}
    users["no_address"].email = ""
    users["no_address"].save()
    opt_out(users["opted_out"].email, "digests")
    opt_out(users["all_out"].email, "all")
    suppress(users["bounced"].email, SuppressionReason.COMPLAINT)
    opt_out(users["ok"].email, "campaigns")  # another category: still gets digests
    for user in users.values():
        prefer(user, LICENSE="DAILY")
        with at(MONDAY_9 - timedelta(hours=1)):
            tell(user)
    with at(MONDAY_9):
        assert run_digest("DAILY")["sent"] == 1
    assert [m.to for m in mail.outbox] == [[users["ok"].email]]
    got = {r.user_id: r.status for r in NotificationDigest.objects.all()}
    assert got == {
        users["ok"].pk: DigestStatus.SENT,
        users["opted_out"].pk: DigestStatus.BLOCKED,
        users["all_out"].pk: DigestStatus.BLOCKED,
        users["bounced"].pk: DigestStatus.BLOCKED,
        users["no_address"].pk: DigestStatus.NO_ADDRESS,
    }


def test_crash_mid_digest_then_retry_sends_nothing_twice(flaky):
    users = [make_user() for _ in range(5)]
    for user in users:
        prefer(user, LICENSE="DAILY")
        with at(MONDAY_9 - timedelta(hours=1)):
            tell(user, title=f"for {user.pk}")
    flaky.fail_at = 3
    with at(MONDAY_9):
        key, _ = digest.prepare_digests("DAILY", MONDAY_9)
        [(first, last)] = digest.batch_ranges("DAILY", key, 500)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send_notification_digest_batch(frequency="DAILY", period_key=key, first_id=first, last_id=last)
        order = list(NotificationDigest.objects.order_by("pk").values_list("status", flat=True))
        assert order == ["SENT", "SENT", "SENDING", "PENDING", "PENDING"]

        flaky.fail_at = None
        retry = send_notification_digest_batch(frequency="DAILY", period_key=key, first_id=first, last_id=last)
        assert retry["sent"] == 2
        assert (
            send_notification_digest_batch(frequency="DAILY", period_key=key, first_id=first, last_id=last)["sent"] == 0
        )
    recipients = [m.to[0] for m in mail.outbox]
    assert len(recipients) == len(set(recipients)) == 4  # the one in doubt is not re-sent
    assert users[2].email not in recipients
    # The one in doubt counts as delivered: tomorrow's window starts after it.
    with at(MONDAY_9 + timedelta(days=1)):
        assert run_digest("DAILY") == {"prepared": 0, "sent": 0}


def test_a_stale_pending_digest_is_superseded_by_the_next_period():
    user = make_user()
    prefer(user, LICENSE="DAILY")
    with at(MONDAY_9 - timedelta(hours=1)):
        tell(user, title="monday")
    digest.prepare_digests("DAILY", MONDAY_9)  # its batch job never ran
    with at(MONDAY_9 + timedelta(days=1)):
        assert run_digest("DAILY")["sent"] == 1
    assert "monday" in mail.outbox[0].body  # the window starts at the last one delivered
    assert list(NotificationDigest.objects.order_by("pk").values_list("status", flat=True)) == [
        "SUPERSEDED",
        "SENT",
    ]


def test_digest_batch_queries_do_not_grow_with_users_or_notifications():
    def queries_for(count: int, per_user: int) -> int:
        NotificationDigest.objects.all().delete()
        Notification.objects.all().delete()
        users = [make_user() for _ in range(count)]
        for user in users:
            prefer(user, LICENSE="DAILY", PAYOUT="DAILY")
        with at(MONDAY_9 - timedelta(hours=1)):
            for _ in range(per_user):
                notify([u.pk for u in users], type=T.LICENSE, title="l", message="m")
                notify([u.pk for u in users], type=T.PAYOUT, title="p", message="m")
        with at(MONDAY_9):
            key, _ = digest.prepare_digests("DAILY", MONDAY_9)
            ranges = digest.batch_ranges("DAILY", key, 500)
            with CaptureQueriesContext(connection) as captured:
                result = send_notification_digest_batch(
                    frequency="DAILY", period_key=key, first_id=ranges[0][0], last_id=ranges[-1][1]
                )
        assert result["sent"] == count
        return len(captured)

    assert queries_for(3, 1) == queries_for(40, 5)


def test_digest_job_fans_out_one_batch_job_per_n_users(settings):
    settings.NOTIFICATION_DIGEST_BATCH = 2
    for _ in range(5):
        user = make_user()
        prefer(user, LICENSE="DAILY")
        with at(MONDAY_9 - timedelta(hours=1)):
            tell(user)
    with at(MONDAY_9):
        result = send_notification_digests(frequency="DAILY")
    assert result == {"frequency": "DAILY", "period": "2026-03-02", "prepared": 5, "batches": 3}


def test_digest_bad_frequency_is_bad_input():
    with pytest.raises(InvalidInput, match="frequency must be one of DAILY, WEEKLY"):
        send_notification_digests(frequency="HOURLY")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_digest_through_real_workers_one_job_per_batch(run_worker, monkeypatch):
    monkeypatch.setenv("NOTIFICATION_DIGEST_BATCH", "2")
    users = [make_user() for _ in range(5)]
    for user in users:
        prefer(user, LICENSE="DAILY")
        Notification.objects.create(user=user, type=T.LICENSE, title="t", message="m", email_status="DIGEST")
    job_id = enqueue("notification-digest", frequency="DAILY")
    run_worker("scheduled")
    assert JSONJob.fetch(job_id, connection=redis_connection()).return_value()["batches"] == 3
    assert FinishedJobRegistry("scheduled", connection=redis_connection()).count == 4
    assert NotificationDigest.objects.filter(status=DigestStatus.SENT).count() == 5
    enqueue("notification-digest", frequency="DAILY")  # the same day again: nothing
    run_worker("scheduled")
    assert NotificationDigest.objects.count() == 5


# --- registry and cron ------------------------------------------------------------------


def test_seed_names_are_registered_and_scheduled_daily_and_weekly():
    assert get_spec("notification-delivery").queue == "critical"
    digests = {(e.cron, e.kwargs.get("frequency")) for e in SCHEDULE if e.job == "notification-digest"}
    assert digests == {("0 9 * * *", "DAILY"), ("0 9 * * 1", "WEEKLY")}


# --- API --------------------------------------------------------------------------------


def test_list_is_own_newest_first_with_unread_filter_cursor_and_unread_count(client):
    user, other = make_user(), make_user()
    with at(MONDAY_9):  # same created_at for all: the id breaks ties
        rows = [tell(user, title=f"n{i}") for i in range(5)]
        tell(other, title="not yours")
    Notification.objects.filter(pk=rows[1].pk).update(read=True)
    client.force_login(user)

    page1 = client.get("/api/notifications/?limit=2").json()
    assert [r["title"] for r in page1["results"]] == ["n4", "n3"] and page1["unread_count"] == 4
    page2 = client.get(f"/api/notifications/?limit=2&cursor={page1['next_cursor']}").json()
    page3 = client.get(f"/api/notifications/?limit=2&cursor={page2['next_cursor']}").json()
    assert [r["title"] for r in page2["results"] + page3["results"]] == ["n2", "n1", "n0"]
    assert page3["next_cursor"] is None

    unread = client.get("/api/notifications/?unread=1").json()
    assert [r["title"] for r in unread["results"]] == ["n4", "n3", "n2", "n0"]
    assert client.get("/api/notifications/?cursor=garbage").status_code == 400
    assert client.get("/api/notifications/?limit=0").status_code == 400


def test_mark_read_own_only_and_idempotent(client):
    user, other = make_user(), make_user()
    mine, theirs = tell(user), tell(other)
    client.force_login(user)
    first = client.post(f"/api/notifications/{mine.pk}/read")
    assert first.status_code == 200 and first.json()["read"] is True
    again = client.post(f"/api/notifications/{mine.pk}/read")
    assert again.status_code == 200 and again.json()["read_at"] == first.json()["read_at"]
    assert client.post(f"/api/notifications/{theirs.pk}/read").status_code == 404
    assert client.post("/api/notifications/987654/read").status_code == 404
    assert not Notification.objects.get(pk=theirs.pk).read
    assert client.get(f"/api/notifications/{mine.pk}/read").status_code == 405


def test_preferences_endpoint(client):
    user = make_user()
    assert client.get("/api/notifications/preferences").status_code == 401
    client.force_login(user)
    prefs = client.get("/api/notifications/preferences").json()["preferences"]
    assert prefs["LICENSE"] == "IMMEDIATE" and set(prefs) == set(T.values)
    put = client.put(
        "/api/notifications/preferences",
        {"preferences": {"LICENSE": "DAILY", "PAYOUT": "OFF"}},
        content_type="application/json",
    )
    assert put.status_code == 200 and put.json()["preferences"]["LICENSE"] == "DAILY"
    weekly = {"preferences": {"LICENSE": "WEEKLY"}}
    client.put("/api/notifications/preferences", weekly, content_type="application/json")
    assert dict(NotificationPreference.objects.filter(user=user).values_list("type", "email_frequency")) == {
        "LICENSE": "WEEKLY",
        "PAYOUT": "OFF",
    }
    bad = client.put(
        "/api/notifications/preferences", {"preferences": {"NOPE": "DAILY"}}, content_type="application/json"
    )
    assert bad.status_code == 400
    bad = client.put(
        "/api/notifications/preferences", {"preferences": {"LICENSE": "HOURLY"}}, content_type="application/json"
    )
    assert bad.status_code == 400
    assert tell(user, T.LICENSE).email_status == EmailStatus.DIGEST  # the service reads what was saved


# --- templates --------------------------------------------------------------------------


def test_notification_email_renders_with_what_the_job_passes(settings):
    settings.APP_URL = "https://app.example"
    user = make_user(first_name="Bo")
    n = tell(user, T.LICENSE, title="License renewal awaiting <approval>", action_url="/licenses/9")
    subject, text, html = render_email("notification_email", delivery.email_context(n))
    assert subject == "License renewal awaiting <approval>"
    assert "Hello Bo" in text and "https://app.example/licenses/9" in text and "About License" in text
    assert "&lt;approval&gt;" in html and 'href="https://app.example/licenses/9"' in html
    assert "https://app.example/settings/notifications" in text
    without_link = tell(user, T.SYSTEM, title="No link")
    subject, text, html = render_email("notification_email", delivery.email_context(without_link))
    assert "Open it" not in text and "Open it" not in html


def test_digest_email_renders_with_what_the_job_passes():
    user = make_user()
    prefer(user, LICENSE="DAILY")
    with at(MONDAY_9 - timedelta(hours=1)):
        tell(user, title="Only one")
    digest.prepare_digests("DAILY", MONDAY_9)
    row = NotificationDigest.objects.select_related("user").get()
    sections = digest.digest_sections([row.pk])[row.pk]
    subject, text, html = render_email("notification_digest", digest.digest_context(row, sections))
    assert subject == "You have 1 notification"
    assert "Licenses (1)" in text and "Only one" in text and "Stop receiving digests" in text
    assert "Licenses (1)" in html and "Only one" in html and "more" not in text


def test_sweep_queues_a_flush_only_when_emails_are_pending():
    from jobs.handlers.notifications import sweep_notification_deliveries

    nothing = {"stranded_sent": 0, "stranded_in_doubt": 0, "stranded_unattempted": 0}
    assert sweep_notification_deliveries() == {"pending": False, "flush_job": None, **nothing}
    tell(make_user())
    swept = sweep_notification_deliveries()
    assert swept["pending"] is True and swept["flush_job"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_killed_mid_flush_loses_nothing_and_sends_nothing_twice(background_worker, settings, tmp_path):
    """SIGKILL the worker while it is sending a batch: the rows stay claimed (SENDING);
    the sweep settles them from the send journal and the next flush sends only the ones
    never attempted. Each address gets its email once (the one being sent at the kill
    may be lost, never doubled)."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    env = {
        "EMAIL_BACKEND": "tests.email_backends.SlowFileBackend",
        "TEST_MAIL_DIR": str(outbox),
        "TEST_MAIL_DELAY": "0.05",
    }
    users = [make_user(email=f"k{i}@example.com") for i in range(40)]
    worker = background_worker("critical", env=env)
    notify([u.pk for u in users], type=T.SYSTEM, title="Hello", message="Hi.")
    wait_until(lambda: len(list(outbox.iterdir())) >= 8, timeout=60, what="some emails out")
    worker.kill(signal.SIGKILL)
    sent_before = {p.name.split("-")[0] for p in outbox.iterdir()}
    assert 8 <= len(sent_before) < 40
    assert (
        Notification.objects.filter(email_status=EmailStatus.SENDING).count()
        == 40 - Notification.objects.filter(email_status=EmailStatus.SENT).count()
    )

    later = datetime.now(UTC) + delivery.STRANDED_AFTER + timedelta(seconds=1)
    recovered = delivery.recover_stranded(now=later)
    assert recovered["stranded_sent"] + recovered["stranded_in_doubt"] + recovered["stranded_unattempted"] > 0
    assert recovered["stranded_in_doubt"] <= 1
    settings.EMAIL_BACKEND = "tests.email_backends.SlowFileBackend"
    os.environ["TEST_MAIL_DIR"] = str(outbox)
    try:
        delivery.flush()
    finally:
        del os.environ["TEST_MAIL_DIR"]
    names = [p.name.split("-")[0] for p in outbox.iterdir()]
    assert len(names) == len(set(names))  # nobody twice
    in_doubt = Notification.objects.filter(email_status=EmailStatus.SENDING).exclude(email_error="")
    assert len(set(names)) + in_doubt.count() >= 40 - 1 and len(set(names)) >= 39
    assert Notification.objects.filter(email_status=EmailStatus.SENT).count() == len(set(names))
