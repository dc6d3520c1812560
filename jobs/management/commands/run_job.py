from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from jobs import api
from jobs.registry import JOBS, UnknownJobError, get_spec
from jobs.runtime import execute


class Command(BaseCommand):
    help = "Run a registered job in this process and print its result, or --enqueue it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", nargs="?", help="registry name, e.g. idempotency-cleanup")
        parser.add_argument("--kwargs", default="{}", help="arguments as a JSON object, e.g. '{\"asset_id\": 3}'")
        parser.add_argument("--enqueue", action="store_true", help="put it on its queue instead of running it here")
        parser.add_argument("--list", action="store_true", help="list registered jobs")

    def handle(self, *args, name: str | None, kwargs: str, enqueue: bool, list: bool, **options) -> None:
        if list or not name:
            for spec in sorted(JOBS.values(), key=lambda s: s.name):
                self.stdout.write(f"{spec.name:32} {spec.queue:10} {spec.description}")
            return
        try:
            arguments = json.loads(kwargs)
        except ValueError as exc:
            raise CommandError(f"--kwargs is not valid JSON: {exc}") from None
        if not isinstance(arguments, dict):
            raise CommandError("--kwargs must be a JSON object.")
        try:
            api.check_arguments(get_spec(name), arguments)
        except (UnknownJobError, api.JobArgumentError) as exc:
            raise CommandError(str(exc)) from None
        if enqueue:
            self.stdout.write(api.enqueue(name, **arguments))
        else:
            self.stdout.write(json.dumps(execute(name, **arguments), default=str, indent=2))
