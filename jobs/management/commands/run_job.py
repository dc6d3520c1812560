from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs import api
from jobs.registry import GROUPS, JOBS, JobSpec, UnknownJobError, get_spec
from jobs.runtime import execute
from jobs.schedule import SCHEDULE, CronEntry


class Command(BaseCommand):
    help = (
        "Run a registered job (or a group of jobs: its parts in order) in this process and print "
        "its result, or --enqueue it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", nargs="?", help="registry or group name, e.g. idempotency-cleanup, analytics-jobs")
        parser.add_argument("--kwargs", default="{}", help="arguments as a JSON object, e.g. '{\"asset_id\": 3}'")
        parser.add_argument("--enqueue", action="store_true", help="put it on its queue instead of running it here")
        parser.add_argument("--list", action="store_true", help="list every job and group with its schedule")

    def handle(self, *args, name: str | None, kwargs: str, enqueue: bool, list: bool, **options) -> None:
        if list or not name:
            self._list()
            return
        try:
            arguments = json.loads(kwargs)
        except ValueError as exc:
            raise CommandError(f"--kwargs is not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise CommandError("--kwargs must be a JSON object.")
        try:
            runs = self._runs(name, arguments)
        except (UnknownJobError, TypeError) as exc:  # api.JobArgumentError is a TypeError
            raise CommandError(str(exc)) from None
        if name not in GROUPS:
            spec, job_arguments = runs[0]
            if enqueue:
                self.stdout.write(api.enqueue(spec.name, **job_arguments))
            else:
                self.stdout.write(json.dumps(execute(spec.name, **job_arguments), default=str, indent=2))
            return
        if enqueue:
            self._enqueue_group(runs)
        else:
            self._run_group(runs)

    def _runs(self, name: str, arguments: dict[str, Any]) -> list[tuple[JobSpec, dict[str, Any]]]:
        """The jobs `name` stands for, each with its arguments (checked)."""
        runs = GROUPS[name].arguments_for(arguments) if name in GROUPS else [(get_spec(name), arguments)]
        for spec, job_arguments in runs:
            api.check_arguments(spec, job_arguments)
        return runs

    def _run_group(self, runs: list[tuple[JobSpec, dict[str, Any]]]) -> None:
        """Each part in order, in this process; a failing part stops the group (the parts
        after it would work on what it left undone) after printing what already ran."""
        results: dict[str, Any] = {}
        try:
            for spec, job_arguments in runs:
                results[spec.name] = execute(spec.name, **job_arguments)
        finally:
            self.stdout.write(json.dumps(results, default=str, indent=2))

    def _enqueue_group(self, runs: list[tuple[JobSpec, dict[str, Any]]]) -> None:
        """Each part on its queue, each depending on the one before: they run in order."""
        previous: list[str] | None = None
        for spec, job_arguments in runs:
            job_id = api.enqueue(spec.name, depends_on=previous, **job_arguments)
            self.stdout.write(f"{spec.name} {job_id}")
            previous = [job_id]

    def _list(self) -> None:
        self.stdout.write(f"{'name':40} {'queue':10} {'schedule (UTC)':28} description")
        for spec in sorted(JOBS.values(), key=lambda s: s.name):
            self._row(spec.name, spec.queue, schedule_of([spec.name]), spec.description)
        for group in sorted(GROUPS.values(), key=lambda g: g.name):
            description = f"{group.description} Runs, in order: {', '.join(group.parts)}."
            self._row(group.name, "(group)", schedule_of(group.parts), description)

    def _row(self, name: str, queue: str, schedule: str, description: str) -> None:
        self.stdout.write(f"{name:40} {queue:10} {schedule:28} {description}")


def schedule_of(names: tuple[str, ...] | list[str]) -> str:
    """When the cron table runs these jobs: each entry's cron (with its arguments), or
    "on demand" when none of them is scheduled."""
    entries = [entry for entry in SCHEDULE if entry.job in names]
    return "; ".join(_when(entry) for entry in entries) or "on demand"


def _when(entry: CronEntry) -> str:
    arguments = ", ".join(f"{key}={value}" for key, value in entry.kwargs.items())
    return f"{entry.cron} ({arguments})" if arguments else entry.cron
