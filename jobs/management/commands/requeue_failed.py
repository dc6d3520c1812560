from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs import api
from jobs.registry import UnknownJobError


class Command(BaseCommand):
    help = "Requeue every failed job of one registered job name, or --list failed jobs by name."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", nargs="?", help="registry name, e.g. asset-virus-scan")
        parser.add_argument("--list", action="store_true", help="failed jobs kept by RQ, counted by job name")

    def handle(self, *args, name: str | None, list: bool, **options) -> None:
        if list or not name:
            for job_name, entry in api.failed_jobs_by_name().items():
                error = entry["latest_error"] or ""
                self.stdout.write(f"{job_name:36} {entry['queue']:10} {entry['count']:6}  {error}")
            return
        try:
            requeued = api.requeue_failed(name)
        except UnknownJobError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"requeued {len(requeued)} failed {name} job(s)")
