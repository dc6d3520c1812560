from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "yesgoddess.analytics"
    label = "analytics"
