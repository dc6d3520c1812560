"""`python manage.py backfill_metrics --from 2026-01-01 --to 2026-01-31`

Re-aggregates every day of the range (daily metrics and post daily metrics), then every
ISO week and calendar month that overlaps the range and has ended, in the order the
nightly jobs run them, so the tables end up as the nightly runs would have left them.
Each period is one statement in its own transaction with its MetricsAggregationLog row;
running it twice changes nothing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from yesgoddess.analytics.aggregation import PeriodError, backfill, parse_day


class Command(BaseCommand):
    help = "Re-aggregate daily, post daily, weekly and monthly metrics for a date range (UTC days)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from", dest="first", required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="last", required=True, help="last day (included), YYYY-MM-DD")
        parser.add_argument("--skip-posts", action="store_true", help="leave post daily metrics alone")

    def handle(self, *args, first: str, last: str, skip_posts: bool, **options) -> None:
        try:
            results = backfill(parse_day(first, "--from"), parse_day(last, "--to"), posts=not skip_posts)
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            counts = result.as_counts()
            self.stdout.write(
                f"{result.job_type:10} {counts['period']:22} groups={counts['groups']} created={counts['created']} "
                f"updated={counts['updated']} unchanged={counts['unchanged']} deleted={counts['deleted']}"
            )
        self.stdout.write(f"{len(results)} period(s) re-aggregated.")
