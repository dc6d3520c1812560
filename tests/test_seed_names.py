"""The seed's job names (issue 21 item 17): every name of `../shared/seed/jobs-README.md`
is runnable by an operator (a registered job, or a group that runs its parts in order),
`run_job --list` shows each with its description and schedule, and every schedule the
seed states is in `jobs/schedule.py` with its cron string."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobs.registry import GROUPS, JOBS, resolve
from jobs.schedule import SCHEDULE

from .conftest import ROOT, manage

SEED = ROOT.parent / "shared" / "seed" / "jobs-README.md"

FILE_LINE = re.compile(r"^- `(?P<name>[a-z0-9-]+?)(?:\.job)?\.ts` - (?P<text>.+)$")
QUEUE_LINE = re.compile(r"^- `(?P<name>[a-z0-9-]+)` - (?P<text>.+)$")

DAYS = {"sundays": 0, "mondays": 1, "tuesdays": 2, "wednesdays": 3, "thursdays": 4, "fridays": 5, "saturdays": 6}
ANY = r"\d+"  # a field the seed leaves open ("daily", without a time)
# Clauses that name a trigger, not a time: the job runs on demand.
TRIGGERS = re.compile(r"on[- ]demand|on upload|after scan|priority|real-time|when |triggered", re.I)


def seed_lines(path: Path = SEED) -> list[tuple[str, str, str]]:
    """(name, text, kind) of every job line of the seed: its job files ("file") and its
    queues ("queue")."""
    if not path.exists():
        pytest.fail(f"the seed job list is missing: {path}")
    lines = []
    for line in path.read_text().splitlines():
        if match := FILE_LINE.match(line):
            lines.append((match["name"], match["text"], "file"))
        elif match := QUEUE_LINE.match(line):
            lines.append((match["name"], match["text"], "queue"))
    return lines


def seed_names() -> set[str]:
    return {name for name, _, _ in seed_lines()}


def hour(number: str, half: str) -> int:
    return int(number) % 12 + (12 if half.upper() == "PM" else 0)


def cron_pattern(clause: str) -> str | None:
    """The cron strings a schedule clause of the seed allows, as a regular expression;
    None for a trigger (on demand, after the scan...). Fails on a clause it cannot read,
    so a new wording in the seed is noticed, not skipped."""
    text = clause.strip().lower()
    at = re.search(r"at (\d+) ?(am|pm)", text)
    time = (r"0", str(hour(*at.groups()))) if at else (ANY, ANY)
    if m := re.fullmatch(r"(?:checks )?every minute", text):
        return r"\* \* \* \* \*"
    if m := re.fullmatch(r"every (\d+) minutes", text):
        return rf"\*/{m[1]} \* \* \* \*"
    if m := re.fullmatch(r"every (\d+) hours", text):
        return rf"0 \*/{m[1]} \* \* \*"
    if text.startswith("hourly"):
        return r"0 \* \* \* \*"
    if m := re.match(r"weekly (?:[a-z ]+ )?on (\w+)", text):
        return rf"{time[0]} {time[1]} \* \* {DAYS[m[1]]}"
    if m := re.match(r"monthly on (\d+)(?:st|nd|rd|th)", text):
        return rf"{time[0]} {time[1]} {m[1]} \* \*"
    if text.startswith("daily"):
        return rf"{time[0]} {time[1]} \* \* \*"
    if TRIGGERS.search(text):
        return None
    raise AssertionError(f"cannot read the seed's schedule {clause!r}: teach cron_pattern")


def schedule_clauses(text: str, kind: str) -> list[str]:
    """The schedule clauses of a seed line, cut at commas and "+": a job file's trailing
    parenthesis ("(daily at 3 AM)"; "(2 AM)" after "Daily ..." is daily at 2 AM), or a
    queue line's whole text ("Daily at 9 AM, weekly on Mondays at 9 AM")."""
    if kind == "file":
        paren = re.search(r"\(([^()]*)\)\s*$", text)
        if paren is None:
            return []
        text = paren[1]
        if re.fullmatch(r"\d+ ?[AP]M", text):
            text = f"{paren.string.split()[0]} at {text}"
    return [clause for clause in re.split(r",(?![^(]*\))|\+", text) if clause.strip()]


def expected_schedules() -> list[tuple[str, str, str]]:
    """(seed name, clause, cron pattern) for every periodic schedule the seed states."""
    found = []
    for name, text, kind in seed_lines():
        for clause in schedule_clauses(text, kind):
            pattern = cron_pattern(clause)
            if pattern is not None:
                found.append((name, clause.strip(), pattern))
    return found


def covered_by(seed_name: str) -> set[str]:
    """The registered jobs a seed name's schedule may be carried by: the job itself, a
    group's parts, or its sub-jobs (`<name>.<part>`, e.g. search-index-update.rebuild)."""
    jobs = {spec.name for spec in resolve(seed_name)}
    return jobs | {name for name in JOBS if name.startswith(seed_name + ".")}


def test_the_seed_list_is_read():
    names = seed_names()
    assert len(names) >= 40 and {"analytics-jobs", "weekly-monthly-metrics-aggregation"} <= names


def test_every_seed_name_resolves_to_registered_jobs():
    unresolved = []
    for name in sorted(seed_names()):
        try:
            assert resolve(name)
        except LookupError:
            unresolved.append(name)
    assert unresolved == []


def test_every_seed_schedule_is_in_the_cron_table_with_its_cron_string():
    expected = expected_schedules()
    assert ("idempotency-cleanup", "every 6 hours", r"0 \*/6 \* \* \*") in expected  # the reading works
    missing = [
        f"{name}: {clause!r} ({pattern})"
        for name, clause, pattern in expected
        if not any(e.job in covered_by(name) and re.fullmatch(pattern, e.cron) for e in SCHEDULE)
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("clause", "pattern"),
    [
        ("every 6 hours", r"0 \*/6 \* \* \*"),
        ("Daily at 3 AM", r"0 3 \* \* \*"),
        ("weekly on Mondays at 4 AM", r"0 4 \* \* 1"),
        ("Weekly on Mondays", r"\d+ \d+ \* \* 1"),
        ("monthly on 2nd at 5 AM", r"0 5 2 \* \*"),
        ("weekly full reindex on Sundays at 3 AM", r"0 3 \* \* 0"),
        ("Checks every minute", r"\* \* \* \* \*"),
        ("daily metrics aggregation", r"\d+ \d+ \* \* \*"),
        ("On-demand (when notifications are created)", None),
    ],
)
def test_the_seed_schedule_reading(clause, pattern):
    assert cron_pattern(clause) == pattern


def test_an_unreadable_seed_schedule_fails_the_check():
    with pytest.raises(AssertionError, match="teach cron_pattern"):
        cron_pattern("fortnightly on full moons")


def test_groups_name_their_parts_in_order():
    assert [s.name for s in resolve("metrics-aggregation")] == [
        "metrics-aggregation.weekly",
        "metrics-aggregation.monthly",
    ]
    assert resolve("weekly-monthly-metrics-aggregation") == resolve("metrics-aggregation")
    assert resolve("license-usage-tracking")[0].name == "license-usage-tracking.aggregate"
    with pytest.raises(TypeError, match="no part takes 'colour'"):
        GROUPS["analytics-jobs"].arguments_for({"colour": "red"})
    split = GROUPS["analytics-jobs"].arguments_for({"date": "2027-03-01"})
    assert [(spec.name, args) for spec, args in split] == [
        ("analytics-jobs.enrich-events", {}),
        ("analytics-jobs.daily-metrics", {"date": "2027-03-01"}),
        ("analytics-jobs.post-daily-metrics", {"date": "2027-03-01"}),
    ]


# --- through the command --------------------------------------------------------------------


def test_run_job_list_prints_every_name_with_its_description_and_schedule():
    result = manage("run_job", "--list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert set(JOBS) | set(GROUPS) <= set(rows)  # the test suite's own jobs too: any entry is listed
    for spec in JOBS.values():
        assert spec.description in rows[spec.name] and f" {spec.queue} " in rows[spec.name]
    for entry in SCHEDULE:
        assert entry.cron in rows[entry.job], entry.id
    assert "0 9 * * * (frequency=DAILY); 0 9 * * 1 (frequency=WEEKLY)" in rows["notification-digest"]
    assert "on demand" in rows["royalty-calculation"]
    assert "0 4 * * 1; 0 5 2 * *" in rows["weekly-monthly-metrics-aggregation"]
    assert "metrics-aggregation.weekly, metrics-aggregation.monthly" in rows["metrics-aggregation"]
    assert seed_names() <= set(rows)


pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
@pytest.mark.parametrize("name", ["metrics-aggregation", "weekly-monthly-metrics-aggregation"])
def test_a_group_name_runs_its_parts_in_order(name):
    from yesgoddess.analytics.models import MetricsAggregationLog

    today = timezone.now().date()
    week_start = today - timedelta(days=today.weekday() + 14)  # a Monday two weeks back
    month_start = (today.replace(day=1) - timedelta(days=1)).replace(day=1)  # last month
    arguments = {"week_start": week_start.isoformat(), "month": f"{month_start:%Y-%m}"}
    result = manage("run_job", name, "--kwargs", json.dumps(arguments))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert list(out) == ["metrics-aggregation.weekly", "metrics-aggregation.monthly"]
    log_lines = result.stderr
    assert log_lines.index("job=metrics-aggregation.weekly") < log_lines.index("job=metrics-aggregation.monthly")
    logs = MetricsAggregationLog.objects.order_by("pk")
    assert [log.period_start_date for log in logs] == [week_start, month_start]


@pytestmark_db
@pytest.mark.parametrize("name", ["analytics-jobs", "license-usage-tracking"])
def test_every_other_group_runs_with_no_arguments(name):
    result = manage("run_job", name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(json.loads(result.stdout)) == [spec.name for spec in resolve(name)]


@pytestmark_db
def test_a_group_refuses_an_argument_none_of_its_parts_takes():
    result = manage("run_job", "analytics-jobs", "--kwargs", '{"colour": "red"}')
    assert result.returncode != 0 and "no part takes 'colour'" in result.stderr


@pytestmark_db
def test_a_group_is_enqueued_as_a_chain_of_its_parts():
    from jobs.api import get_queue
    from jobs.rq_classes import JSONJob
    from yesgoddess.core.redis import redis_connection

    result = manage("run_job", "metrics-aggregation", "--enqueue")
    assert result.returncode == 0, result.stderr
    (weekly, weekly_id), (monthly, monthly_id) = (line.split() for line in result.stdout.splitlines())
    assert (weekly, monthly) == ("metrics-aggregation.weekly", "metrics-aggregation.monthly")
    assert get_queue("scheduled").get_job_ids() == [weekly_id]  # the monthly one waits for it
    deferred = JSONJob.fetch(monthly_id, connection=redis_connection())
    assert deferred.dependency_ids == [weekly_id]
