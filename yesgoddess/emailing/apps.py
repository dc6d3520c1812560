from django.apps import AppConfig


class EmailingConfig(AppConfig):
    name = "yesgoddess.emailing"
    label = "emailing"

    def ready(self) -> None:
        # Provider webhooks -> EmailEvent rows (and suppressions). Connected here, not
        # at import, so that importing a module installs no handler.
        from anymail.signals import tracking

        from .events import record_tracking_event

        tracking.connect(record_tracking_event, dispatch_uid="yesgoddess.emailing.record_tracking_event")
