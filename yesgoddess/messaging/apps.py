from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "yesgoddess.messaging"
    label = "messaging"
