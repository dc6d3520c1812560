from django.apps import AppConfig


class AssetsConfig(AppConfig):
    name = "yesgoddess.assets"
    label = "assets"
