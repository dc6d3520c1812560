"""enqueue(): argument checks, after-commit semantics, deduplication."""

from __future__ import annotations

import datetime
import decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from jobs.api import JobArgumentError, enqueue, get_queue, redis_connection
from jobs.registry import UnknownJobError
from jobs.rq_classes import JSONJob

pytestmark = pytest.mark.django_db(transaction=True)


def queued_ids(queue: str = "default") -> list[str]:
    return get_queue(queue).get_job_ids()


def test_enqueue_outside_a_transaction_queues_at_once_with_the_registry_policy():
    job_id = enqueue("test-always-fail", user_id=7)
    assert queued_ids() == [job_id]
    job = JSONJob.fetch(job_id, connection=redis_connection())
    assert job.func_name == "jobs.runtime.execute"
    assert job.args == ["test-always-fail"]
    assert job.kwargs == {"user_id": 7}
    assert job.retries_left == 2 and job.retry_intervals == [2, 4]
    assert job.meta["job_name"] == "test-always-fail"
    # stored as JSON, readable without pickle
    raw = redis_connection().hget(f"rq:job:{job_id}", "data")
    assert b'"user_id": 7' in __import__("zlib").decompress(raw)


def test_a_rolled_back_transaction_enqueues_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        job_id = enqueue("ping")
        assert job_id  # the id is known before the commit
        raise RuntimeError("roll back")
    assert queued_ids() == []


def test_inside_a_transaction_the_job_waits_for_the_commit_and_keeps_its_id():
    with transaction.atomic():
        get_user_model().objects.create(username="alice")
        job_id = enqueue("test-count-users")
        assert queued_ids() == []
    assert queued_ids() == [job_id]


@pytest.mark.parametrize(
    "value",
    [datetime.date(2026, 1, 1), decimal.Decimal("1.5"), {1, 2}, (1, 2), float("nan"), b"bytes", {1: "x"}, object()],
)
def test_non_json_arguments_are_refused_with_a_clear_error(value):
    with pytest.raises(JobArgumentError, match="user_id"):
        enqueue("test-always-fail", user_id=value)
    assert queued_ids() == []


def test_nested_json_is_accepted():
    enqueue("test-always-fail", user_id={"ids": [1, 2, {"a": None, "b": 1.5, "c": True}]})
    assert len(queued_ids()) == 1


def test_arguments_that_do_not_fit_the_signature_are_refused():
    with pytest.raises(JobArgumentError, match="missing a required argument: 'user_id'"):
        enqueue("test-always-fail")
    with pytest.raises(JobArgumentError, match="unexpected keyword argument 'colour'"):
        enqueue("ping", colour="red")


def test_an_unknown_job_is_refused():
    with pytest.raises(UnknownJobError):
        enqueue("no-such-job")


def test_same_dedup_key_while_queued_returns_the_queued_job():
    first = enqueue("ping", dedup_key="k1")
    second = enqueue("ping", dedup_key="k1")
    other = enqueue("ping", dedup_key="k2")
    assert first == second != other
    assert queued_ids() == [first, other]


def test_dedup_holds_inside_one_transaction_before_the_commit():
    with transaction.atomic():
        first = enqueue("ping", dedup_key="same")
        second = enqueue("ping", dedup_key="same")
    assert first == second
    assert queued_ids() == [first]


def test_dedup_key_of_a_rolled_back_job_does_not_block_the_next_one():
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("ping", dedup_key="x")
        raise RuntimeError
    job_id = enqueue("ping", dedup_key="x")
    assert queued_ids() == [job_id]


def test_after_the_job_finished_the_same_key_enqueues_again(run_worker):
    first = enqueue("ping", dedup_key="again")
    run_worker("default")
    assert JSONJob.fetch(first, connection=redis_connection()).get_status() == "finished"
    second = enqueue("ping", dedup_key="again")
    assert second != first
    assert queued_ids() == [second]
