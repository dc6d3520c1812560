from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "yesgoddess.core"
    label = "core"

    def ready(self) -> None:
        # Process start-up work lives here, not at import (DESIGN: importing starts nothing).
        from django.core.signals import request_finished

        from .logs import end_request
        from .sentry import init_sentry

        request_finished.connect(end_request, dispatch_uid="yesgoddess.core.logs.end_request")
        init_sentry()
