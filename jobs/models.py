"""What the framework remembers in PostgreSQL: the last run of each cron entry.

Kept in the database rather than Redis so that it survives a Redis wipe: the cron page,
the cron metric and the dead-man's switch read it."""

from __future__ import annotations

from django.db import models


class CronRun(models.Model):
    """The latest run of one cron entry of `jobs/schedule.py` (one row per entry id)."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        REJECTED = "rejected"  # bad input: failed once, no retry
        FAILED_WILL_RETRY = "failed-will-retry"
        FAILED = "failed"

    entry_id = models.CharField(max_length=100, primary_key=True)
    job_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # The dead-man's switch (jobs/alerts.py): when it first saw the entry (the baseline of
    # an entry that never succeeded), and the due run it reported missing (None: fine).
    watched_since = models.DateTimeField(null=True, blank=True)
    overdue_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "jobs_cron_runs"
        ordering = ["entry_id"]

    def __str__(self) -> str:
        return f"{self.entry_id}: {self.outcome or 'never ran'}"


class Cron(models.Model):
    """No table: the cron table's entry in the admin (/admin/jobs/cron/, `jobs/admin.py`),
    as django-rq's `Dashboard` is the panel's."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "cron table"
        verbose_name_plural = "cron table"
