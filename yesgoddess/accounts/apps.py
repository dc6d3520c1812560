from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "yesgoddess.accounts"
    label = "accounts"
