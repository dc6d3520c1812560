from django.apps import AppConfig


class AssetsConfig(AppConfig):
    name = "yesgoddess.assets"
    label = "assets"

    def ready(self) -> None:
        # The read-only admin of forensic watermark issuances (the asset admin is admin.py).
        from . import watermark_admin  # noqa: F401
