from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "yesgoddess.licensing"
    label = "licensing"
