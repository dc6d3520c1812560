from django.apps import AppConfig


class EmailingConfig(AppConfig):
    name = "yesgoddess.emailing"
    label = "emailing"
