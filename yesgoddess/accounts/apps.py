from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "yesgoddess.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from .signals import record_failed_login, record_login

        user_logged_in.connect(record_login, dispatch_uid="accounts.record_login")
        user_login_failed.connect(record_failed_login, dispatch_uid="accounts.record_failed_login")
