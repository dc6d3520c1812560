from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "yesgoddess.notifications"
    label = "notifications"
