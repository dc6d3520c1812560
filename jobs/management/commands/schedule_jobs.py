from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.registry import get_spec
from jobs.schedule import SCHEDULE
from jobs.scheduling import get_scheduler, next_run, owned_entries, reconcile


class Command(BaseCommand):
    help = "Make rq-scheduler's cron entries match jobs/schedule.py (idempotent, locked)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--list", action="store_true", help="print the table with each entry's next run")
        parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")

    def handle(self, *args, list: bool, dry_run: bool, **options) -> None:
        if list:
            self._list()
            return
        changes = reconcile(dry_run=dry_run, lock_timeout=settings.SCHEDULE_LOCK_TIMEOUT)
        verb = "would " if dry_run else ""
        for change in changes:
            if change.action != "keep" or options["verbosity"] > 1:
                self.stdout.write(f"{verb}{change.action:8} {change.entry_id:32} {change.detail}")
        counts = {a: sum(c.action == a for c in changes) for a in ("create", "replace", "remove", "keep")}
        self.stdout.write(f"{verb}" + ", ".join(f"{a} {n}" for a, n in counts.items()))

    def _list(self) -> None:
        scheduled = owned_entries(get_scheduler())
        self.stdout.write(f"{'id':30} {'cron (UTC)':14} {'job':30} {'queue':10} next run (UTC)")
        for entry in SCHEDULE:
            found = scheduled.get(entry.scheduler_id)
            when = f"{found[1]:%Y-%m-%d %H:%M}" if found else f"{next_run(entry.cron):%Y-%m-%d %H:%M} (not scheduled)"
            spec = get_spec(entry.job)
            self.stdout.write(f"{entry.id:30} {entry.cron:14} {entry.job:30} {spec.queue:10} {when}")
            self.stdout.write(f"{'':30} {spec.description}")
