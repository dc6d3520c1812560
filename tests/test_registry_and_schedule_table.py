"""The job table and the cron table agree with each other and with the code."""

from __future__ import annotations

import inspect
from collections import Counter

import crontab
import pytest
from django.utils.module_loading import import_string

from jobs.api import check_arguments, reserved_argument_clashes
from jobs.registry import JOBS, QUEUES, UnknownJobError, get_spec
from jobs.schedule import ENTRY_PREFIX, SCHEDULE


def test_every_registered_path_imports_and_is_a_function():
    for spec in JOBS.values():
        assert inspect.isfunction(import_string(spec.path)), spec.name
        if spec.on_failure:
            assert callable(import_string(spec.on_failure)), spec.name


def test_every_job_uses_a_known_queue_and_keyword_only_arguments():
    for spec in JOBS.values():
        assert spec.queue in QUEUES
        kinds = {p.kind for p in inspect.signature(spec.function).parameters.values()}
        assert kinds <= {inspect.Parameter.KEYWORD_ONLY}, f"{spec.name} must take keyword-only arguments"


def test_no_job_argument_shadows_an_enqueue_option():
    assert reserved_argument_clashes() == []


def test_every_cron_entry_names_a_registered_job():
    for entry in SCHEDULE:
        assert entry.job in JOBS, entry.id


def test_cron_entry_ids_are_unique_and_valid_rq_job_ids():
    counts = Counter(entry.id for entry in SCHEDULE)
    assert [i for i, n in counts.items() if n > 1] == []
    for entry in SCHEDULE:
        scheduler_id = ENTRY_PREFIX + entry.id
        # rq >= 2.8: letters, digits, '_' and '-' only
        assert scheduler_id.replace("-", "").replace("_", "").isalnum(), scheduler_id


def test_every_cron_string_parses_with_five_fields():
    for entry in SCHEDULE:
        assert len(entry.cron.split()) == 5, entry.id
        crontab.CronTab(entry.cron)  # raises on a bad expression


def test_scheduled_jobs_are_callable_with_their_table_arguments_only():
    for entry in SCHEDULE:
        spec = get_spec(entry.job)
        check_arguments(spec, entry.kwargs)
        assert spec.required_arguments() == [], f"{entry.job} has required arguments but is scheduled"


def test_every_seed_system_job_is_scheduled_as_the_seed_says():
    crons = {entry.job: entry.cron for entry in SCHEDULE}
    assert crons["idempotency-cleanup"] == "0 */6 * * *"
    assert crons["notification-cleanup"] == "0 3 * * *"


def test_an_unknown_job_name_is_a_clear_error():
    with pytest.raises(UnknownJobError, match="Unknown job 'no-such-job'"):
        get_spec("no-such-job")
