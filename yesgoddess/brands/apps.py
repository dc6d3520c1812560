from django.apps import AppConfig


class BrandsConfig(AppConfig):
    name = "yesgoddess.brands"
    label = "brands"
