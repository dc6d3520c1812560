from django.apps import AppConfig


class CreatorsConfig(AppConfig):
    name = "yesgoddess.creators"
    label = "creators"
