import warnings

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Background jobs"

    def ready(self) -> None:
        # crontab warns on every next-run computation that a future release will read
        # naive times as UTC. rq-scheduler passes local time, and this process's local
        # time is UTC (settings.TIME_ZONE), so both readings agree: the warning is noise.
        warnings.filterwarnings("ignore", message="Version 0.22.0", category=FutureWarning)
