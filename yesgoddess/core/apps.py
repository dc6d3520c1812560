from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "yesgoddess.core"
    label = "core"
